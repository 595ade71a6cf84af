package auth_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/proxyless/proxyless/auth"
)

// exampleToken signs claims with an Ed25519 key made from a fixed seed.
func exampleToken(key ed25519.PrivateKey, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		panic(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		panic(err)
	}
	s, _ := obj.CompactSerialize()
	return s
}

func ExampleNewValidator() {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	v, err := auth.NewValidator([]auth.Issuer{{
		Issuer:     "https://idp.example",
		Audiences:  []string{"payments"},
		Algorithms: []string{"EdDSA"},
		Keys:       []auth.Key{{ID: "k1", Key: key.Public()}},
	}}, auth.WithLeeway(30*time.Second))
	if err != nil {
		panic(err)
	}
	defer v.Close()

	tok := exampleToken(key, map[string]any{
		"iss": "https://idp.example", "aud": "payments", "sub": "alice",
		"scope": "charges:read charges:write", "exp": time.Now().Add(time.Hour).Unix(),
	})
	claims, err := v.Validate(context.Background(), tok)
	fmt.Println(claims.Subject, claims.Scopes(), err)

	_, err = v.Validate(context.Background(), tok+"x")
	fmt.Println(err)
	// Output:
	// alice [charges:read charges:write] <nil>
	// auth: invalid token: bad signature
}

func ExampleNewGuard() {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	v, _ := auth.NewValidator([]auth.Issuer{{
		Issuer: "https://idp.example", Audiences: []string{"payments"}, Algorithms: []string{"EdDSA"},
		Keys: []auth.Key{{ID: "k1", Key: key.Public()}},
	}})
	defer v.Close()
	g, _ := auth.NewGuard(v, auth.WithRule(auth.Rule{Scopes: []string{"charges:write"}}))
	h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello", auth.SubjectFromContext(r.Context()))
	}))

	send := func(tok string) {
		req := httptest.NewRequest(http.MethodPost, "/charges", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Printf("%d %q %q\n", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body.String())
	}
	exp := time.Now().Add(time.Hour).Unix()
	send("")
	send("not.a.token")
	send(exampleToken(key, map[string]any{"iss": "https://idp.example", "aud": "payments", "sub": "bob", "scope": "charges:read", "exp": exp}))
	send(exampleToken(key, map[string]any{"iss": "https://idp.example", "aud": "payments", "sub": "alice", "scope": "charges:write", "exp": exp}))
	// Output:
	// 401 "Bearer" "Unauthorized\n"
	// 401 "Bearer error=\"invalid_token\"" "Unauthorized\n"
	// 403 "Bearer error=\"insufficient_scope\"" "Forbidden\n"
	// 200 "" "hello alice\n"
}

func ExampleRule_Check() {
	c := &auth.Claims{Raw: map[string]any{"groups": []any{"dev", "ops"}, "tenant": "acme"}}
	r := auth.Rule{Claims: map[string][]string{"groups": {"ops"}, "tenant": {"acme", "initech"}}}
	fmt.Println(r.Check(c))
	r.Claims["tenant"] = []string{"initech"}
	fmt.Println(r.Check(c))
	// Output:
	// <nil>
	// auth: forbidden
}

func ExampleNewPeerAuthorizer() {
	authz, err := auth.NewPeerAuthorizer(auth.PeerPolicy{
		SPIFFEIDs: []string{"spiffe://example.org/ns/payments/*"},
		DNSNames:  []string{"*.internal.example.org"},
	})
	fmt.Println(err)
	for _, id := range []string{"spiffe://example.org/ns/payments/sa/api", "spiffe://example.org/ns/other/sa/api"} {
		_, err := authz.Authorize(certWithURI(id))
		fmt.Println(id, err)
	}
	// Output:
	// <nil>
	// spiffe://example.org/ns/payments/sa/api <nil>
	// spiffe://example.org/ns/other/sa/api auth: peer not allowed
}
