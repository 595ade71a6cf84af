package route_test

import (
	"errors"
	"testing"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/route"
)

func TestHashPolicyConfig(t *testing.T) {
	yamlDoc := `
routes:
  - name: sticky-users
    match: {path: {prefix: /cart}}
    hashPolicy:
      - {header: x-user-id, terminal: true}
      - {cookie: session}
      - {queryParameter: tenant}
      - {sourceIP: true}
`
	jsonDoc := `{"routes": [{"name": "sticky-users", "match": {"path": {"prefix": "/cart"}}, "hashPolicy": [
		{"header": "x-user-id", "terminal": true}, {"cookie": "session"}, {"queryParameter": "tenant"}, {"sourceIP": true}]}]}`
	want := []balancer.HashPolicy{{Header: "x-user-id", Terminal: true}, {Cookie: "session"}, {QueryParameter: "tenant"}, {SourceIP: true}}
	for name, doc := range map[string]string{"yaml": yamlDoc, "json": jsonDoc} {
		cfg, err := route.ParseConfig([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tbl, err := route.Compile(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		dec, ok := tbl.Lookup(&route.Request{Host: "svc", Path: "/cart/1", Method: "GET"})
		if !ok {
			t.Fatalf("%s: no match", name)
		}
		got := dec.Route.HashPolicy()
		if len(got) != len(want) {
			t.Fatalf("%s: hash policy %+v, want %+v", name, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: hashPolicy[%d] = %+v, want %+v", name, i, got[i], want[i])
			}
		}
	}
	// A route without hashPolicy keeps the destination's: nil.
	tbl, err := route.Compile(route.Config{Routes: []route.RouteConfig{{Name: "plain"}}})
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := tbl.Lookup(&route.Request{Host: "svc", Path: "/", Method: "GET"})
	if dec.Route.HashPolicy() != nil {
		t.Errorf("HashPolicy() = %v, want nil", dec.Route.HashPolicy())
	}
}

func TestHashPolicyConfigErrors(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"routes: [{hashPolicy: [{header: x-a}, {}]}]", "route: routes[0].hashPolicy[1]: set exactly one of header, metadata, cookie, queryParameter, sourceIP and contextKey"},
		{"routes: [{}, {hashPolicy: [{header: x-a, cookie: c}]}]", "route: routes[1].hashPolicy[0]: set exactly one of"},
		{"routes: [{hashPolicy: [{header: \"x a\"}]}]", `route: routes[0].hashPolicy[0]: header: "x a" is not a valid name`},
		{"routes: [{hashPolicy: [{metadata: x-bin}]}]", `route: routes[0].hashPolicy[0]: metadata: "x-bin" must be lower case and not a binary (-bin) key`},
		{"routes: [{hashPolicy: [{queryParameter: \"a&b\"}]}]", `route: routes[0].hashPolicy[0]: queryParameter: "a&b" is not a valid name`},
		{"default: {hashPolicy: [{sourceIP: true}, {sourceIP: true}, {sourceIP: true}, {sourceIP: true}, {sourceIP: true}, {sourceIP: true}, {sourceIP: true}, {sourceIP: true}, {sourceIP: true}]}", "route: default.hashPolicy: 9 policies is over the limit of 8"},
		{"routes: [{hashPolicy: [{headers: x}]}]", `route: routes[0].hashPolicy[0].headers: unknown field "headers" (line 1, column 25)`},
	}
	for _, c := range cases {
		_, err := route.ParseConfig([]byte(c.doc))
		if err == nil {
			t.Errorf("%s: accepted", c.doc)
			continue
		}
		if !errors.Is(err, route.ErrInvalidConfig) {
			t.Errorf("%s: %v does not match ErrInvalidConfig", c.doc, err)
		}
		if got := err.Error(); !contains(got, c.want) {
			t.Errorf("%s:\n got %s\nwant %s", c.doc, got, c.want)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
