package middleware

import (
	"net/url"
	"strings"
	"testing"

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
	if v, ok := joinHeader(nil); ok || v != "" {
		t.Errorf("no values: %q, %v", v, ok)
	}
	if v, _ := joinHeader([]string{"a", "b"}); v != "a,b" {
		t.Errorf("got %q", v)
	}
	long := strings.Repeat("x", 200)
	v, _ := joinHeader([]string{long, long, long})
	if len(v) != balancer.MaxHashKeyBytes || !strings.HasPrefix(v, long+",") {
		t.Errorf("joined %d bytes, want the first %d", len(v), balancer.MaxHashKeyBytes)
	}
}
