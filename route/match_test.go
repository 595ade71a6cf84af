package route_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/proxyless/proxyless/route"
)

const matchYAML = `
routes:
  - name: grpc-say
    match: {grpc: {service: helloworld.Greeter, method: SayHello}}
  - name: grpc-any
    match: {grpc: {service: helloworld.Greeter}}
  - name: exact-host
    match: {hosts: [API.example.com], path: {exact: /exact}}
  - name: wildcard-host
    match: {hosts: ["*.example.org"], path: {prefix: /}}
  - name: regex-path
    match: {path: {regex: "/users/[0-9]+"}}
  - name: method
    match: {path: {prefix: /m/}, methods: [PUT, DELETE]}
  - name: h-exact
    match: {headers: [{name: x-env, exact: staging}]}
  - name: h-prefix
    match: {headers: [{name: X-Client, prefix: mobile-}]}
  - name: h-regex
    match: {headers: [{name: x-tenant, regex: "t[0-9]{2}"}]}
  - name: h-present-and-absent
    match: {headers: [{name: x-debug, present: true}, {name: x-skip, absent: true}]}
  - name: q-exact
    match: {query: [{name: beta, exact: "on"}]}
  - name: q-escaped
    match: {query: [{name: "a b", regex: "x y"}]}
  - name: q-present
    match: {query: [{name: flag, present: true}], path: {prefix: /q}}
  - name: q-absent
    match: {query: [{name: nope, absent: true}], path: {prefix: /absent}}
default: {}
`

func TestMatch(t *testing.T) {
	tbl := mustCompile(t, matchYAML)
	h := func(kv ...string) http.Header {
		hd := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			hd.Add(kv[i], kv[i+1])
		}
		return hd
	}
	tests := []struct {
		name string
		req  route.Request
		want string
	}{
		{"grpc exact method", route.Request{Method: "POST", Path: "/helloworld.Greeter/SayHello"}, "grpc-say"},
		{"grpc field wins over path", route.Request{Method: "POST", Path: "/x", GRPCMethod: "/helloworld.Greeter/SayHello"}, "grpc-say"},
		{"grpc other method", route.Request{Method: "POST", Path: "/helloworld.Greeter/Other"}, "grpc-any"},
		{"grpc other service", route.Request{Method: "POST", Path: "/helloworld.GreeterX/SayHello"}, "default"},
		{"host case and port", route.Request{Host: "api.EXAMPLE.com:8443", Path: "/exact"}, "exact-host"},
		{"host mismatch", route.Request{Host: "api.example.net", Path: "/exact"}, "default"},
		{"exact path only exact", route.Request{Host: "api.example.com", Path: "/exact/more"}, "default"},
		{"wildcard", route.Request{Host: "a.b.Example.org", Path: "/anything"}, "wildcard-host"},
		{"wildcard needs subdomain", route.Request{Host: "example.org", Path: "/anything"}, "default"},
		{"regex anchored", route.Request{Path: "/users/42"}, "regex-path"},
		{"regex anchored no tail", route.Request{Path: "/users/42/x"}, "default"},
		{"method yes", route.Request{Method: "DELETE", Path: "/m/1"}, "method"},
		{"method no", route.Request{Method: "GET", Path: "/m/1"}, "default"},
		{"header exact", route.Request{Header: h("X-Env", "staging")}, "h-exact"},
		{"header exact any value", route.Request{Header: h("X-Env", "prod", "X-Env", "staging")}, "h-exact"},
		{"header exact no", route.Request{Header: h("X-Env", "Staging")}, "default"},
		{"header prefix", route.Request{Header: h("x-client", "mobile-ios")}, "h-prefix"},
		{"header regex", route.Request{Header: h("X-Tenant", "t42")}, "h-regex"},
		{"header regex anchored", route.Request{Header: h("X-Tenant", "t421")}, "default"},
		{"present and absent", route.Request{Header: h("X-Debug", "")}, "h-present-and-absent"},
		{"absent fails", route.Request{Header: h("X-Debug", "1", "X-Skip", "1")}, "default"},
		{"grpc metadata", route.Request{Metadata: map[string][]string{"x-env": {"staging"}}}, "h-exact"},
		{"query exact", route.Request{RawQuery: "a=1&beta=on"}, "q-exact"},
		{"query exact no", route.Request{RawQuery: "beta=off"}, "default"},
		{"query escaped", route.Request{RawQuery: "a+b=x%20y"}, "q-escaped"},
		{"query present empty", route.Request{Path: "/q", RawQuery: "flag"}, "q-present"},
		{"query absent", route.Request{Path: "/absent", RawQuery: "x=1"}, "q-absent"},
		{"query absent fails", route.Request{Path: "/absent", RawQuery: "nope=1"}, "default"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := tbl.Lookup(&tc.req)
			if !ok {
				t.Fatal("no match")
			}
			if d.Route.Name() != tc.want {
				t.Errorf("matched %q, want %q", d.Route.Name(), tc.want)
			}
		})
	}
}

func TestFirstMatchWins(t *testing.T) {
	tbl := mustCompile(t, `
routes:
  - {name: first, match: {path: {prefix: /a}}}
  - {name: second, match: {path: {prefix: /a/b}}}
  - {name: host, match: {hosts: [h.example], path: {prefix: /a/b/c}}}
`)
	for path, want := range map[string]string{"/a/b/c": "first", "/a": "first"} {
		rq := route.Request{Host: "h.example", Path: path}
		if d, _ := tbl.Lookup(&rq); d.Route == nil || d.Route.Name() != want {
			t.Errorf("%s: got %v, want %s", path, d.Route, want)
		}
	}
	rq := route.Request{Host: "h.example", Path: "/z"}
	if _, ok := tbl.Lookup(&rq); ok {
		t.Error("matched without a default")
	}
}

func TestFromHTTPAndCookies(t *testing.T) {
	tbl := mustCompile(t, `
routes:
  - name: c
    match: {path: {prefix: /}}
    canary:
      stable: {service: s}
      canary: {service: c}
      override: {cookie: lane}
`, route.WithTrust(func(*route.Request) bool { return true }))
	r := httptest.NewRequest("GET", "http://svc/x?y=1", nil)
	r.Header.Add("Cookie", `a=b; lane="canary"; z=1`)
	rq := route.FromHTTP(r)
	d, ok := tbl.Lookup(&rq)
	if !ok || !d.Canary || !d.Pinned || d.Destination.Service != "c" {
		t.Fatalf("got %+v", d)
	}
}

func TestRewrite(t *testing.T) {
	tbl := mustCompile(t, `
routes:
  - name: p
    match: {path: {prefix: /api/v2/}}
    rewrite: {prefix: /v2/}
    requestHeaders: {set: {X-Route: p}, add: {x-multi: b}, remove: [x-internal]}
    responseHeaders: {set: {x-served-by: p}}
  - name: r
    match: {path: {prefix: /users/}}
    rewrite: {regex: "^/users/([0-9]+)$", substitution: "/u?id=$1"}
`)
	req := httptest.NewRequest("GET", "http://svc/api/v2/items", nil)
	req.Header.Set("X-Internal", "secret")
	req.Header.Set("X-Multi", "a")
	rq := route.FromHTTP(req)
	d, _ := tbl.Lookup(&rq)
	if !d.Route.RewritesRequest() {
		t.Fatal("RewritesRequest false")
	}
	d.Route.RewriteRequest(req)
	if req.URL.Path != "/v2/items" || req.Header.Get("X-Route") != "p" || req.Header.Get("X-Internal") != "" ||
		strings.Join(req.Header.Values("X-Multi"), ",") != "a,b" {
		t.Errorf("got path %q headers %v", req.URL.Path, req.Header)
	}
	h := http.Header{}
	d.Route.RewriteResponse(h)
	if h.Get("X-Served-By") != "p" {
		t.Errorf("response headers %v", h)
	}
	rq = route.Request{Path: "/users/7"}
	d, _ = tbl.Lookup(&rq)
	if p, ok := d.Route.RewritePath("/users/7"); !ok || p != "/u?id=7" {
		t.Errorf("regex rewrite = %q, %v", p, ok)
	}
}

// FuzzHeaderMatch checks that compiling any header condition never panics, and that a valid
// one agrees with a straightforward reference on any header value.
func FuzzHeaderMatch(f *testing.F) {
	f.Add("x-env", "staging", "", "", uint8(0), "staging")
	f.Add("X-Client", "", "mobile-", "", uint8(0), "mobile-ios")
	f.Add("x-tenant", "", "", "t[0-9]+", uint8(0), "t42")
	f.Add("x-a", "", "", "(", uint8(1), "")
	f.Add("bad name", "", "", "", uint8(2), "v")
	f.Fuzz(func(t *testing.T, name, exact, prefix, regex string, flags uint8, value string) {
		hm := route.HeaderMatch{Name: name, Exact: exact, Prefix: prefix, Regex: regex, Present: flags&1 != 0, Absent: flags&2 != 0}
		m, err := route.NewHeaderMatcher(hm)
		if err != nil {
			return
		}
		h := http.Header{}
		has := flags&4 != 0
		if has {
			h.Add(name, value)
		}
		got := m.Match(h)
		var want bool
		switch {
		case hm.Present:
			want = has
		case hm.Absent:
			want = !has
		case !has:
			want = false
		case exact != "":
			want = value == exact
		case prefix != "":
			want = strings.HasPrefix(value, prefix)
		default:
			want = regexp.MustCompile("^(?:" + regex + ")$").MatchString(value)
		}
		if got != want {
			t.Fatalf("%+v on %q (present %v): got %v, want %v", hm, value, has, got, want)
		}
		// The same condition inside a table, on gRPC metadata, agrees too.
		cfg := route.Config{Routes: []route.RouteConfig{{Match: route.Match{Headers: []route.HeaderMatch{hm}}}}}
		tbl, err := route.Compile(cfg)
		if err != nil {
			t.Fatalf("NewHeaderMatcher accepted what Compile refuses: %v", err)
		}
		md := map[string][]string{}
		if has {
			md[strings.ToLower(name)] = []string{value}
		}
		rq := route.Request{Metadata: md}
		if _, ok := tbl.Lookup(&rq); ok != want {
			t.Fatalf("metadata match %v, want %v", ok, want)
		}
	})
}
