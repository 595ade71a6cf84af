package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
)

// corsServer serves a counting backend behind NewHandler with opts, on loopback.
func corsServer(t *testing.T, opts ...middleware.HandlerOption) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	backend := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("X-Request-Id", "r1")
		_, _ = w.Write([]byte("ok"))
	})
	h, err := middleware.NewHandler(backend, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, &hits
}

func corsDo(t *testing.T, srv *httptest.Server, method string, hdr map[string]string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, srv.URL+"/api", nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp
}

var corsPolicy = middleware.CORSConfig{
	AllowedOrigins:   []string{"https://app.example.com", "https://*.tenants.example.com", "HTTP://127.0.0.1:8080"},
	AllowedMethods:   []string{"put", "PATCH"},
	AllowedHeaders:   []string{"X-Token", "Content-Type"},
	ExposedHeaders:   []string{"X-Request-Id"},
	AllowCredentials: true,
	MaxAge:           600,
}

// TestCORSPreflight checks preflights against the Fetch standard's CORS protocol: an allowed
// one is answered 204 with the headers a browser checks (the origin reflected, never "*"
// with credentials), a refused one 403 without any of them, and neither reaches the handler.
func TestCORSPreflight(t *testing.T) {
	srv, hits := corsServer(t, middleware.WithCORS(corsPolicy))
	for _, tc := range []struct {
		name, origin, method, headers string
		ok                            bool
	}{
		{"exact origin, listed method and headers", "https://app.example.com", "PUT", "content-type,x-token", true},
		{"subdomain pattern", "https://a.b.tenants.example.com", "PATCH", "", true},
		{"safelisted method needs no listing", "https://app.example.com", "GET", "x-token", true},
		{"config upper case normalized", "http://127.0.0.1:8080", "PUT", "", true},
		{"pattern does not match its apex", "https://tenants.example.com", "PUT", "", false},
		{"pattern does not match a longer domain", "https://a.tenants.example.com.evil.net", "PUT", "", false},
		{"pattern scheme is part of it", "http://a.tenants.example.com", "PUT", "", false},
		{"pattern port is part of it", "https://a.tenants.example.com:444", "PUT", "", false},
		{"pattern label characters", "https://a_b.tenants.example.com", "PUT", "", false},
		{"unlisted origin", "https://evil.example.net", "PUT", "", false},
		{"origin compared byte for byte", "https://APP.example.com", "PUT", "", false},
		{"null origin", "null", "PUT", "", false},
		{"unlisted method", "https://app.example.com", "DELETE", "", false},
		{"method is case-sensitive", "https://app.example.com", "patch", "", false},
		{"unlisted header", "https://app.example.com", "PUT", "x-token,x-admin", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			hdr := map[string]string{"Origin": tc.origin, "Access-Control-Request-Method": tc.method}
			if tc.headers != "" {
				hdr["Access-Control-Request-Headers"] = tc.headers
			}
			resp := corsDo(t, srv, http.MethodOptions, hdr)
			if hits.Load() != before {
				t.Error("the preflight reached the handler")
			}
			if !strings.Contains(resp.Header.Get("Vary"), "Origin") {
				t.Errorf("Vary = %q, want Origin in it", resp.Header.Get("Vary"))
			}
			if !tc.ok {
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("status %d, want 403", resp.StatusCode)
				}
				for k := range resp.Header {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("refused preflight carries %s: %q", k, resp.Header.Get(k))
					}
				}
				return
			}
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d, want 204", resp.StatusCode)
			}
			want := map[string]string{
				"Access-Control-Allow-Origin":      tc.origin,
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Methods":     "GET, HEAD, POST, PUT, PATCH",
				"Access-Control-Max-Age":           "600",
			}
			if tc.headers != "" {
				want["Access-Control-Allow-Headers"] = "content-type, x-token"
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestCORSSimpleRequests checks requests that are not preflights: an allowed origin gets its
// CORS headers, a refused one none (and is still served), a request without Origin none; and
// a refusal of a later stage (429) carries them too, so a page can read it.
func TestCORSSimpleRequests(t *testing.T) {
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 0.001, Burst: 1}})
	if err != nil {
		t.Fatal(err)
	}
	srv, hits := corsServer(t, middleware.WithCORS(corsPolicy), middleware.WithServerRateLimit(lim, middleware.KeyByHeader("X-Client")))
	for _, tc := range []struct {
		name, origin string
		allowed      bool
	}{
		{"allowed", "https://app.example.com", true},
		{"pattern", "https://x.tenants.example.com", true},
		{"refused", "https://evil.example.net", false},
		{"no origin", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			hdr := map[string]string{"X-Client": tc.name}
			if tc.origin != "" {
				hdr["Origin"] = tc.origin
			}
			resp := corsDo(t, srv, http.MethodGet, hdr)
			if resp.StatusCode != http.StatusOK || hits.Load() != before+1 {
				t.Fatalf("status %d, handler hits %d: want 200 served", resp.StatusCode, hits.Load()-before)
			}
			if got := resp.Header.Values("Vary"); len(got) != 1 || got[0] != "Origin" {
				t.Errorf("Vary = %q, want [Origin]", got)
			}
			wantOrigin, wantCreds, wantExpose := "", "", ""
			if tc.allowed {
				wantOrigin, wantCreds, wantExpose = tc.origin, "true", "X-Request-Id"
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != wantOrigin {
				t.Errorf("Allow-Origin = %q, want %q", got, wantOrigin)
			}
			if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != wantCreds {
				t.Errorf("Allow-Credentials = %q, want %q", got, wantCreds)
			}
			if got := resp.Header.Get("Access-Control-Expose-Headers"); got != wantExpose {
				t.Errorf("Expose-Headers = %q, want %q", got, wantExpose)
			}
			if tc.allowed { // the second request of this client is over its quota
				resp := corsDo(t, srv, http.MethodGet, hdr)
				if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Access-Control-Allow-Origin") != tc.origin {
					t.Errorf("over quota: status %d, Allow-Origin %q: want 429 with the CORS headers", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
				}
			}
		})
	}
}

// TestCORSWildcard checks the "*" entry without credentials: "*" answered, never the origin,
// and never Allow-Credentials; "*" headers and methods reflect what the preflight asked.
func TestCORSWildcard(t *testing.T) {
	srv, _ := corsServer(t, middleware.WithCORS(middleware.CORSConfig{
		AllowedOrigins: []string{"*"}, AllowedMethods: []string{"*"}, AllowedHeaders: []string{"*"}, ExposedHeaders: []string{"*"},
	}))
	resp := corsDo(t, srv, http.MethodOptions, map[string]string{
		"Origin": "https://anyone.example", "Access-Control-Request-Method": "PURGE", "Access-Control-Request-Headers": "X-A, x-b",
	})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d, want 204", resp.StatusCode)
	}
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "PURGE",
		"Access-Control-Allow-Headers": "x-a, x-b", "Access-Control-Allow-Credentials": "",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	resp = corsDo(t, srv, http.MethodGet, map[string]string{"Origin": "null"})
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" || resp.Header.Get("Access-Control-Expose-Headers") != "*" {
		t.Errorf("simple request: Allow-Origin %q, Expose %q: want * and *", got, resp.Header.Get("Access-Control-Expose-Headers"))
	}
	// OPTIONS without Access-Control-Request-Method is not a preflight: the handler answers.
	if resp := corsDo(t, srv, http.MethodOptions, map[string]string{"Origin": "https://a.example"}); resp.StatusCode != http.StatusOK {
		t.Errorf("plain OPTIONS: status %d, want the handler's 200", resp.StatusCode)
	}
}

// TestCORSConfigErrors checks that a bad policy is refused with the field named.
func TestCORSConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg   middleware.CORSConfig
		field string
	}{
		{middleware.CORSConfig{}, "allowedOrigins"},
		{middleware.CORSConfig{AllowedOrigins: []string{"*"}, AllowCredentials: true}, "allowedOrigins[0]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://a.example", "null"}}, "allowedOrigins[1]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://*.com"}}, "allowedOrigins[0]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://a*.example.com"}}, "allowedOrigins[0]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://*.*.example.com"}}, "allowedOrigins[0]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://a.example/path"}}, "allowedOrigins[0]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://a.example:0"}}, "allowedOrigins[0]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"a.example"}}, "allowedOrigins[0]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://a.example"}, AllowedMethods: []string{"GE T"}}, "allowedMethods[0]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://a.example"}, AllowedHeaders: []string{"ok", "bad:name"}}, "allowedHeaders[1]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://a.example"}, ExposedHeaders: []string{"*"}, AllowCredentials: true}, "exposedHeaders[0]"},
		{middleware.CORSConfig{AllowedOrigins: []string{"https://a.example"}, MaxAge: -1}, "maxAge"},
		{middleware.CORSConfig{AllowedOrigins: make([]string, 257)}, "allowedOrigins"},
	} {
		_, err := middleware.NewHandler(http.NotFoundHandler(), middleware.WithCORS(tc.cfg))
		if err == nil || !strings.Contains(err.Error(), "WithCORS: "+tc.field+":") {
			t.Errorf("%+v: error %v, want one naming %s", tc.cfg, err, tc.field)
		}
	}
}
