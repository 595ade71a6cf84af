package auth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/proxyless/proxyless/auth"
)

// FuzzValidate drives the server entry path, extraction then validation, with arbitrary
// header values. It must never panic, and nothing but a genuinely signed token may pass.
func FuzzValidate(f *testing.F) {
	testKeys(f)
	v, err := auth.NewValidator([]auth.Issuer{
		{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"ES256", "RS256"}, Keys: []auth.Key{{ID: "ec-1", Key: ecKey1.Public()}, {ID: "rsa-1", Key: &rsaKey1.PublicKey}}},
		{Issuer: issB, Audiences: []string{aud}, Algorithms: []string{"HS256"}, Keys: []auth.Key{{ID: "hs", Key: []byte("0123456789abcdef0123456789abcdef")}}},
	}, auth.WithMaxTokenBytes(2048))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = v.Close() })
	good := sign(f, jose.ES256, ecKey1, "ec-1", claimsFor(issA, aud), nil)
	f.Add("Bearer " + good)
	f.Add("Bearer " + sign(f, jose.RS256, rsaKey1, "rsa-1", claimsFor(issA, aud), nil))
	f.Add("Bearer " + sign(f, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "hs", claimsFor(issB, aud), nil))
	f.Add("Bearer " + rawToken(`{"alg":"none"}`, `{"iss":"`+issA+`"}`, nil))
	f.Add("Bearer " + strings.Repeat(".", 100))
	f.Add("bearer a.b.c")
	f.Add("Basic Zm9vOmJhcg==")
	f.Add("")
	parts := strings.Split(good, ".")
	f.Add("Bearer " + parts[0] + "." + parts[1])
	f.Add("Bearer " + parts[0] + ".e30." + parts[2])

	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Authorization"] = []string{header}
		tok, err := auth.TokenSource{}.FromRequest(r, 2048)
		if err != nil {
			return
		}
		c, err := v.Validate(t.Context(), tok)
		if err != nil {
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			return
		}
		if c == nil || (c.Issuer != issA && c.Issuer != issB) || c.Expiry.IsZero() {
			t.Fatalf("accepted token with bad claims: %+v", c)
		}
	})
}

// FuzzPeerMatch checks SPIFFE ID parsing and prefix matching: no panic, and a prefix entry
// only ever admits IDs below it.
func FuzzPeerMatch(f *testing.F) {
	for _, s := range []string{"spiffe://example.org/ns/prod/sa/api", "spiffe://example.org/ns/production", "spiffe://example.org", "spiffe://EXAMPLE.org/x", "spiffe://example.org/ns/prod/../x", "spiffe://example.org//x", "urn:x", ""} {
		f.Add(s)
	}
	authz, err := auth.NewPeerAuthorizer(auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://example.org/ns/prod/*"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id string) {
		td, err := auth.ParseSPIFFEID(id)
		if err == nil && (td == "" || !strings.HasPrefix(id, "spiffe://"+td)) {
			t.Fatalf("bad trust domain %q for %q", td, id)
		}
		cert := certWithURI(id)
		if cert == nil {
			return
		}
		if _, err := authz.Authorize(cert); err == nil {
			if !strings.HasPrefix(id, "spiffe://example.org/ns/prod/") || strings.Contains(id[len("spiffe://example.org/ns/prod/"):], "..") {
				t.Fatalf("admitted %q", id)
			}
		}
	})
}
