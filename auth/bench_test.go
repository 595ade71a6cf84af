package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/proxyless/proxyless/auth"
)

// BenchmarkValidate compares, in one run, validating a cached-key token through Validate and
// through the HTTP middleware against calling the JOSE library directly (parse with an
// allow-list, verify, decode and check the registered claims).
func BenchmarkValidate(b *testing.B) {
	testKeys(b)
	for _, tc := range []struct {
		name string
		alg  jose.SignatureAlgorithm
		priv any
		pub  any
	}{
		{"RS256", jose.RS256, rsaKey1, &rsaKey1.PublicKey},
		{"ES256", jose.ES256, ecKey1, ecKey1.Public()},
	} {
		srv := newJWKSServer(b, jwks(b, jose.JSONWebKey{Key: tc.pub, KeyID: "k", Algorithm: string(tc.alg), Use: "sig"}))
		v, err := auth.NewValidator([]auth.Issuer{{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{string(tc.alg)}, JWKSURL: srv.srv.URL}})
		if err != nil {
			b.Fatal(err)
		}
		tok := sign(b, tc.alg, tc.priv, "k", claimsFor(issA, aud), nil)
		ctx := context.Background()
		if _, err := v.Validate(ctx, tok); err != nil { // warm the cache
			b.Fatal(err)
		}
		b.Run(tc.name+"/jose-direct", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				t, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{tc.alg})
				if err != nil {
					b.Fatal(err)
				}
				var std jwt.Claims
				var all map[string]any
				if err := t.Claims(tc.pub, &std, &all); err != nil {
					b.Fatal(err)
				}
				if err := std.ValidateWithLeeway(jwt.Expected{Issuer: issA, AnyAudience: jwt.Audience{aud}, Time: time.Now()}, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/validator", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Validate(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/middleware", func(b *testing.B) {
			g, err := auth.NewGuard(v)
			if err != nil {
				b.Fatal(err)
			}
			h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
		_ = v.Close()
		srv.srv.Close()
	}
}
