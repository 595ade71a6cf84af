package middleware

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/peer"

	"github.com/proxyless/proxyless/balancer"
)

func TestQueryValue(t *testing.T) {
	cases := []struct {
		raw, name, want string
		ok              bool
	}{
		{"tenant=acme", "tenant", "acme", true},
		{"a=1&tenant=acme&tenant=globex", "tenant", "acme", true},
		{"a=1&ten%61nt=x%20y+z", "tenant", "x y z", true},
		{"tenant", "tenant", "", true},
		{"tenant=%zz&tenant=ok", "tenant", "ok", true},
		{"a;tenant=x&tenant=y", "tenant", "y", true},
		{"Tenant=x", "tenant", "", false},
		{"", "tenant", "", false},
		{"&&", "tenant", "", false},
	}
	for _, c := range cases {
		got, ok := queryValue(c.raw, c.name)
		if got != c.want || ok != c.ok {
			t.Errorf("queryValue(%q, %q) = %q, %v; want %q, %v", c.raw, c.name, got, ok, c.want, c.ok)
		}
	}
}

// FuzzQueryValue checks queryValue against url.ParseQuery: the first value of the parameter,
// or none, for any query within the scan bound.
func FuzzQueryValue(f *testing.F) {
	for _, s := range [][2]string{
		{"tenant=acme", "tenant"}, {"a=1&tenant=acme&tenant=b", "tenant"}, {"ten%61nt=x%20y+z", "tenant"},
		{"=x&a", ""}, {"a;b=c&b=d", "b"}, {"%zz=1&%7a%7a=2", "zz"}, {"a=%", "a"}, {"a=b=c", "a"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, raw, name string) {
		got, ok := queryValue(raw, name)
		if len(raw) > maxQueryScan {
			return
		}
		m, _ := url.ParseQuery(raw)
		want, wantOK := "", len(m[name]) > 0
		if wantOK {
			want = m[name][0]
		}
		if got != want || ok != wantOK {
			t.Fatalf("queryValue(%q, %q) = %q, %v; url.ParseQuery gives %q, %v", raw, name, got, ok, want, wantOK)
		}
	})
}

func TestJoinHeaderBounded(t *testing.T) {
	if v, ok := balancer.JoinHashValues(nil); ok || v != "" {
		t.Errorf("no values: %q, %v", v, ok)
	}
	if v, _ := balancer.JoinHashValues([]string{"a", "b"}); v != "a,b" {
		t.Errorf("got %q", v)
	}
	long := strings.Repeat("x", 200)
	v, _ := balancer.JoinHashValues([]string{long, long, long})
	if len(v) != balancer.MaxHashKeyBytes || !strings.HasPrefix(v, long+",") {
		t.Errorf("joined %d bytes, want the first %d", len(v), balancer.MaxHashKeyBytes)
	}
}

func TestHTTPHashKeySources(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "http://svc/p?q=1", nil)
	req.Host = "svc.example"
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	req.AddCookie(&http.Cookie{Name: "s", Value: "c1"})
	h := balancer.HashString
	cases := []struct {
		name string
		p    balancer.HashPolicy
		edit func(*http.Request)
		want uint64
	}{
		{"host", balancer.HashPolicy{Header: "Host"}, nil, h("svc.example")},
		{"values joined", balancer.HashPolicy{Header: "x-multi"}, nil, h("a,b")},
		{"cookie", balancer.HashPolicy{Cookie: "s"}, nil, h("c1")},
		{"no such cookie", balancer.HashPolicy{Cookie: "t"}, nil, 0},
		{"query", balancer.HashPolicy{QueryParameter: "q"}, nil, h("1")},
		{"bare IP", balancer.HashPolicy{SourceIP: true}, func(r *http.Request) { r.RemoteAddr = "10.0.0.1" }, h("10.0.0.1")},
		{"IPv6 with port", balancer.HashPolicy{SourceIP: true}, func(r *http.Request) { r.RemoteAddr = "[::1]:80" }, h("::1")},
		{"IPv4-mapped", balancer.HashPolicy{SourceIP: true}, func(r *http.Request) { r.RemoteAddr = "[::ffff:10.0.0.1]:80" }, h("10.0.0.1")},
		{"not an IP", balancer.HashPolicy{SourceIP: true}, func(r *http.Request) { r.RemoteAddr = "@/tmp/sock" }, 0},
		{"no source", balancer.HashPolicy{SourceIP: true}, nil, 0},
		{"gRPC peer in context", balancer.HashPolicy{SourceIP: true}, func(r *http.Request) {
			*r = *r.WithContext(peer.NewContext(r.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5}}))
		}, h("10.0.0.2")},
	}
	for _, c := range cases {
		r := req.Clone(req.Context())
		if c.edit != nil {
			c.edit(r)
		}
		if got := httpHashKey(r, []balancer.HashPolicy{c.p}); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
}
