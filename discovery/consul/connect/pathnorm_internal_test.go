package connect

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/": "/", "//": "/", "/admin": "/admin", "//admin": "/admin", "///admin//x": "/admin/x",
		"/./admin": "/admin", "/x/../admin": "/admin", "/../admin": "/admin", "/a/b/..": "/a/",
		"/a/b/.": "/a/b/", "/a/": "/a/", "/a//": "/a/", "/..": "/", "/.": "/", "admin": "/admin",
		"/a/./b/../../c/": "/c/", "/a/.../b": "/a/.../b", "/a/..b": "/a/..b",
	} {
		assert.Equal(t, want, normalizePath(in), "%q", in)
	}
}

func TestAmbiguousPath(t *testing.T) {
	for in, want := range map[string]bool{
		"/admin": false, "/admin%2Fx": true, "/admin%2fx": true, "/a%5Cb": true, "/a%5cb": true,
		"/a\\b": true, "/a%252Fb": false, "/a?x=%2F": false, "/a%41%2F": true, "/a%": false,
		"/a%2": false, "/%%2F": true, "http://h/a%2Fb?q": true,
	} {
		assert.Equal(t, want, ambiguousPath(in), "%q", in)
	}
}

// The normalized path starts with one slash and holds no empty, "." or ".." segment; it is
// its own normal form. ambiguousPath never panics and finds every encoded slash before a '?'.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"", "/", "//admin", "/./a", "/x/../admin", "/a/b/..", "/..", "a/./../b//", "/admin%2Fx", "/a\\b?c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if len(p) > 4096 {
			return
		}
		n := normalizePath(p)
		if !strings.HasPrefix(n, "/") || strings.Contains(n, "//") {
			t.Fatalf("normalizePath(%q) = %q", p, n)
		}
		for _, s := range strings.Split(strings.TrimSuffix(n[1:], "/"), "/") {
			if s == "." || s == ".." {
				t.Fatalf("normalizePath(%q) = %q keeps a dot segment", p, n)
			}
		}
		if again := normalizePath(n); again != n {
			t.Fatalf("normalizePath not idempotent: %q -> %q -> %q", p, n, again)
		}
		path, _, _ := strings.Cut(p, "?")
		up := strings.ToUpper(path)
		want := strings.Contains(up, "%2F") || strings.Contains(up, "%5C") || strings.Contains(path, "\\")
		if got := ambiguousPath(p); got != want {
			t.Fatalf("ambiguousPath(%q) = %v, want %v", p, got, want)
		}
	})
}
