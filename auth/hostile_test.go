package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/auth"
)

// signRaw makes an ES256 compact JWS of the header and payload exactly as given.
func signRaw(t *testing.T, key *ecdsa.PrivateKey, header, payload string) string {
	t.Helper()
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	require.NoError(t, err)
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestDuplicateKeysRefused(t *testing.T) {
	testKeys(t)
	v, err := auth.NewValidator([]auth.Issuer{{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"ES256"},
		Keys: []auth.Key{{ID: "ec-1", Key: &ecKey1.PublicKey}}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	exp := time.Now().Add(time.Hour).Unix()
	claims := func(extra string) string {
		return `{"iss":"` + issA + `","aud":"` + aud + `","exp":` + strconv.FormatInt(exp, 10) + `,"sub":"alice"` + extra + `}`
	}
	hdr := `{"alg":"ES256","kid":"ec-1","typ":"JWT"}`

	c, err := v.Validate(ctxT(t), signRaw(t, ecKey1, hdr, claims("")))
	require.NoError(t, err, "the well-formed token is valid")
	assert.Equal(t, "alice", c.Subject)

	for name, tok := range map[string]string{
		"payload sub twice":        signRaw(t, ecKey1, hdr, claims(`,"sub":"admin"`)),
		"payload nested twice":     signRaw(t, ecKey1, hdr, claims(`,"x":{"a":1,"b":[{"r":1,"r":2}]}`)),
		"header alg twice":         signRaw(t, ecKey1, `{"alg":"ES256","kid":"ec-1","typ":"JWT","alg":"ES256"}`, claims("")),
		"header kid twice":         signRaw(t, ecKey1, `{"alg":"ES256","kid":"other","kid":"ec-1"}`, claims("")),
		"payload nested too deep":  signRaw(t, ecKey1, hdr, claims(`,"x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100))),
		"payload escaped same key": signRaw(t, ecKey1, hdr, claims(`,"s\u0075b":"admin"`)),
	} {
		_, err := v.Validate(ctxT(t), tok)
		assert.ErrorIs(t, err, auth.ErrInvalidToken, name)
	}
	// Same names in different objects, and a name equal to a string value, are fine.
	_, err = v.Validate(ctxT(t), signRaw(t, ecKey1, hdr, claims(`,"x":{"sub":"x","a":"sub"},"y":[{"a":1},{"a":2}]`)))
	assert.NoError(t, err)
}

func TestJWKSRedirectToAnotherHostRefused(t *testing.T) {
	testKeys(t)
	keys := newJWKSServer(t, jwks(t, pubJWK(ecKey1, "ec-1", "ES256")))
	var redirects atomic.Int64
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirects.Add(1)
		if r.URL.Path == "/same" { // to the same origin: followed
			http.Redirect(w, r, "/jwks.json", http.StatusFound)
			return
		}
		if r.URL.Path == "/jwks.json" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(jwks(t, pubJWK(ecKey1, "ec-1", "ES256")))
			return
		}
		http.Redirect(w, r, keys.srv.URL+"/jwks.json", http.StatusFound) // another host (port)
	}))
	t.Cleanup(redirector.Close)
	tok := sign(t, jose.ES256, ecKey1, "ec-1", claimsFor(issA, aud), nil)

	for _, withClient := range []bool{false, true} {
		var opts []auth.ValidatorOption
		if withClient {
			opts = append(opts, auth.WithHTTPClient(redirector.Client()))
		}
		v, err := auth.NewValidator([]auth.Issuer{{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"ES256"}, JWKSURL: redirector.URL + "/off"}}, opts...)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err = v.Validate(ctx, tok)
		cancel()
		assert.Error(t, err, "no keys: the redirect to another host was not followed")
		require.NoError(t, v.Close())
	}
	assert.Positive(t, redirects.Load(), "the redirector was asked")
	assert.Zero(t, keys.hits.Load(), "the other host never saw a fetch")

	v, err := auth.NewValidator([]auth.Issuer{{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"ES256"}, JWKSURL: redirector.URL + "/same"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	_, err = v.Validate(ctxT(t), tok)
	assert.NoError(t, err, "a redirect within the same scheme and host is followed")
}
