package middleware

import (
	"regexp"
	"strings"
	"testing"
)

// FuzzOriginPattern checks the CORS origin parser and matcher against a reference: a pattern
// "scheme://*.suffix[:port]" must match exactly the origins of the regular expression
// ^scheme://([a-z0-9-]+\.)+suffix(:port)?$ (within the length bound), an exact entry exactly
// its serialized self, and neither may panic or admit an origin with characters outside a
// serialized origin's.
func FuzzOriginPattern(f *testing.F) {
	for _, seed := range [][2]string{
		{"https://*.example.com", "https://a.example.com"},
		{"https://*.example.com", "https://example.com"},
		{"https://*.example.com", "https://a.b.example.com"},
		{"https://*.example.com", "https://a..example.com"},
		{"https://*.example.com", "https://.example.com"},
		{"https://*.example.com", "https://evil.com/.example.com"},
		{"https://*.example.com", "https://a.example.com.evil.net"},
		{"https://*.example.com:8443", "https://a.example.com:8443"},
		{"https://*.example.com:443", "https://a.example.com"},
		{"http://*.example.com", "https://a.example.com"},
		{"HTTPS://App.Example.com", "https://app.example.com"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{"https://*.com", "https://a.com"},
		{"null", "null"},
		{"https://a*.example.com", "https://ab.example.com"},
		{"https://*.ex-ample.co.uk", "https://a-b.ex-ample.co.uk"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, entry, origin string) {
		exact, pat, err := parseOriginPattern(entry)
		if err != nil {
			return
		}
		if pat == nil {
			_, hostPort, ok := strings.Cut(exact, "://")
			if !ok || hostPort == "" || exact != strings.ToLower(exact) || strings.ContainsAny(hostPort, "*/?#@ \t\r\n\x00") {
				t.Fatalf("exact entry %q serialized as %q", entry, exact)
			}
			return
		}
		scheme := strings.TrimSuffix(pat.prefix, "://")
		host, port, _ := strings.Cut(strings.TrimPrefix(pat.suffix, "."), ":")
		expr := "^" + regexp.QuoteMeta(scheme) + `://([a-z0-9-]+\.)+` + regexp.QuoteMeta(host)
		if port != "" {
			expr += ":" + regexp.QuoteMeta(port)
		}
		want := regexp.MustCompile(expr+"$").MatchString(origin) && len(origin) <= maxOriginLen
		if got := pat.match(origin); got != want {
			t.Fatalf("pattern %q (prefix %q suffix %q) on %q: match %v, reference %v", entry, pat.prefix, pat.suffix, origin, got, want)
		}
		p := &corsPolicy{patterns: []originPattern{*pat}}
		if allow := p.allowOrigin(origin); allow != "" && (allow != origin || strings.ContainsAny(allow, "\r\n\x00 ,")) {
			t.Fatalf("pattern %q reflects %q for %q", entry, allow, origin)
		}
	})
}

// FuzzCORSRequestHeaders checks the Access-Control-Request-Headers parser: whatever the lines,
// an admitted preflight names at most maxRequestHeaderNames headers, each a valid, lower-case
// name the policy allows, and what the answer repeats is exactly those names.
func FuzzCORSRequestHeaders(f *testing.F) {
	for _, s := range []string{"", "x-token", "X-Token, content-type", " , ,x-token,,", "x-token,x-admin", "bad name", strings.Repeat("x-token,", 70)} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, line string, anyHeader bool) {
		p, err := compileCORS(CORSConfig{AllowedOrigins: []string{"https://a.example"}, AllowedHeaders: []string{"X-Token", "Content-Type"}})
		if err != nil {
			t.Fatal(err)
		}
		p.anyHeader = anyHeader
		h := &corsHandler{p: p}
		asked, ok := h.requestedHeaders([]string{line})
		if !ok {
			return
		}
		if asked == "" {
			return
		}
		names := strings.Split(asked, ", ")
		if len(names) > maxRequestHeaderNames {
			t.Fatalf("%d names admitted", len(names))
		}
		for _, n := range names {
			_, listed := p.headers[n]
			if n == "" || n != strings.ToLower(n) || strings.ContainsAny(n, " ,\t\r\n") || (!anyHeader && !listed) {
				t.Fatalf("line %q admitted name %q", line, n)
			}
		}
	})
}
