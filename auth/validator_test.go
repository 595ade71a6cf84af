package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/auth"
)

const (
	issA = "https://issuer-a.test"
	issB = "https://issuer-b.test"
	aud  = "payments"
)

// twoIssuers builds a validator over issuer A (RS256 + ES256 from a live JWKS server) and
// issuer B (static ES256 key, a different audience).
func twoIssuers(t *testing.T, refresh auth.Refresh, opts ...auth.ValidatorOption) (*auth.Validator, *jwksServer) {
	t.Helper()
	testKeys(t)
	srv := newJWKSServer(t, jwks(t, pubJWK(rsaKey1, "rsa-1", "RS256"), pubJWK(ecKey1, "ec-1", "")))
	v, err := auth.NewValidator([]auth.Issuer{
		{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"RS256", "ES256"}, JWKSURL: srv.srv.URL + "/jwks.json", Refresh: refresh},
		{Issuer: issB, Audiences: []string{"ledger"}, Algorithms: []string{"ES256"}, Keys: []auth.Key{{ID: "b-1", Key: ecKey2.Public()}}},
	}, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return v, srv
}

func TestValidateTwoIssuers(t *testing.T) {
	v, _ := twoIssuers(t, auth.Refresh{})
	ctx := ctxT(t)

	c, err := v.Validate(ctx, sign(t, jose.RS256, rsaKey1, "rsa-1", claimsFor(issA, aud), nil))
	require.NoError(t, err)
	assert.Equal(t, issA, c.Issuer)
	assert.Equal(t, "user-1", c.Subject)
	assert.Equal(t, []string{"read", "write"}, c.Scopes())
	assert.True(t, c.HasScope("write"))

	_, err = v.Validate(ctx, sign(t, jose.ES256, ecKey1, "ec-1", claimsFor(issA, aud), nil))
	require.NoError(t, err)

	cl := claimsFor(issB, "ledger")
	cl["aud"] = []string{"other", "ledger"}
	delete(cl, "scope")
	cl["scp"] = []string{"admin"}
	c, err = v.Validate(ctx, sign(t, jose.ES256, ecKey2, "b-1", cl, nil))
	require.NoError(t, err)
	assert.Equal(t, []string{"admin"}, c.Scopes())
	assert.Equal(t, []string{"other", "ledger"}, c.Audience)

	// Issuer B's key does not sign for issuer A, nor A's audience for B.
	_, err = v.Validate(ctx, sign(t, jose.ES256, ecKey2, "b-1", claimsFor(issA, aud), nil))
	assert.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = v.Validate(ctx, sign(t, jose.ES256, ecKey2, "b-1", claimsFor(issB, aud), nil))
	assert.ErrorIs(t, err, auth.ErrInvalidToken)
}

// rawToken assembles a token from raw parts, for shapes no JOSE library would produce.
func rawToken(header, payload string, sig []byte) string {
	e := base64.RawURLEncoding.EncodeToString
	return e([]byte(header)) + "." + e([]byte(payload)) + "." + e(sig)
}

// corpusLeeway is the clock leeway of the validator TestBadTokenCorpus attacks.
const corpusLeeway = 30 * time.Second

// newCorpusValidator returns the validator TestBadTokenCorpus attacks, closed when the test
// ends. Issuer A: remote keys from jwksURL. Issuer C: static RSA key and HS256 also allowed:
// the classic algorithm-confusion setup, where an RSA public key must never act as an HMAC
// secret.
func newCorpusValidator(t *testing.T, jwksURL string) *auth.Validator {
	t.Helper()
	v, err := auth.NewValidator([]auth.Issuer{
		{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"RS256"}, JWKSURL: jwksURL,
			Refresh: auth.Refresh{MinInterval: time.Hour}},
		{Issuer: "https://issuer-c.test", Audiences: []string{aud}, Algorithms: []string{"RS256", "HS256"},
			Keys: []auth.Key{{ID: "c-1", Key: &rsaKey2.PublicKey}}},
	}, auth.WithLeeway(corpusLeeway), auth.WithMaxTokenBytes(4096))
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// claimsWith returns issuer A's valid claims for aud, changed by mod.
func claimsWith(mod func(map[string]any)) map[string]any {
	c := claimsFor(issA, aud)
	mod(c)
	return c
}

// badTokens returns the corpus of tokens the validator must refuse, by name: algorithm
// confusion and algorithms outside the allow-list, wrong claims, times outside the leeway
// from now, keys the validator does not hold or that the token names itself (a jku or x5u
// at jkuURL, an embedded jwk), malformed shapes built from good, and alg "none" in any case.
func badTokens(t *testing.T, good, jkuURL string, now time.Time) map[string]string {
	t.Helper()
	pemPub, err := x509.MarshalPKIXPublicKey(&rsaKey2.PublicKey)
	require.NoError(t, err)
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pemPub})
	payloadA, _ := json.Marshal(claimsFor(issA, aud))
	goodParts := strings.Split(good, ".")

	attackerJWK := jose.JSONWebKey{Key: attackerRSA.Public(), KeyID: "evil", Algorithm: "RS256"}

	cases := map[string]string{
		"hmac with RSA public key PEM": sign(t, jose.HS256, rsaPubPEM, "c-1", claimsWith(func(c map[string]any) { c["iss"] = "https://issuer-c.test" }), nil),
		"hmac with RSA public key DER": sign(t, jose.HS256, append(pemPub, make([]byte, 0)...), "c-1", claimsWith(func(c map[string]any) { c["iss"] = "https://issuer-c.test" }), nil),
		"hs256 outside allow-list":     sign(t, jose.HS256, make([]byte, 32), "rsa-1", claimsFor(issA, aud), nil),
		"es384 outside allow-list":     sign(t, jose.ES384, ecKey384, "rsa-1", claimsFor(issA, aud), nil),
		"ps256 outside allow-list":     sign(t, jose.PS256, rsaKey1, "rsa-1", claimsFor(issA, aud), nil),
		"wrong iss":                    sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { c["iss"] = "https://evil.test" }), nil),
		"iss of other issuer":          sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { c["iss"] = "https://issuer-c.test" }), nil),
		"wrong aud":                    sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { c["aud"] = "ledger" }), nil),
		"no aud":                       sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { delete(c, "aud") }), nil),
		"aud of wrong type":            sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { c["aud"] = 7 }), nil),
		"expired":                      sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { c["exp"] = now.Add(-corpusLeeway - 5*time.Second).Unix() }), nil),
		"missing exp":                  sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { delete(c, "exp") }), nil),
		"exp as string":                sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { c["exp"] = fmt.Sprint(now.Add(time.Hour).Unix()) }), nil),
		"nbf outside leeway":           sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { c["nbf"] = now.Add(corpusLeeway + 5*time.Second).Unix() }), nil),
		"iat in the future":            sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(func(c map[string]any) { c["iat"] = now.Add(corpusLeeway + 5*time.Second).Unix() }), nil),
		"signed by another key":        sign(t, jose.RS256, rsaKey2, "rsa-1", claimsFor(issA, aud), nil),
		"unknown kid":                  sign(t, jose.RS256, rsaKey1, "nope", claimsFor(issA, aud), nil),
		"kid with path characters":     sign(t, jose.RS256, rsaKey1, "../../etc/passwd?x=/jwks#", claimsFor(issA, aud), nil),
		"jku to attacker":              sign(t, jose.RS256, attackerRSA, "evil", claimsFor(issA, aud), map[jose.HeaderKey]any{"jku": jkuURL + "/jwks"}),
		"x5u to attacker":              sign(t, jose.RS256, attackerRSA, "evil", claimsFor(issA, aud), map[jose.HeaderKey]any{"x5u": jkuURL + "/cert.pem"}),
		"embedded jwk":                 sign(t, jose.RS256, attackerRSA, "evil", claimsFor(issA, aud), map[jose.HeaderKey]any{"jwk": attackerJWK}),
		"embedded jwk with real kid":   sign(t, jose.RS256, attackerRSA, "rsa-1", claimsFor(issA, aud), map[jose.HeaderKey]any{"jwk": attackerJWK}),
		"two segments":                 goodParts[0] + "." + goodParts[1],
		"four segments":                good + "." + goodParts[2],
		"five segments (JWE shape)":    good + ".a.b",
		"bad base64":                   goodParts[0] + ".%%%." + goodParts[2],
		"padding in base64":            goodParts[0] + "==." + goodParts[1] + "." + goodParts[2],
		"empty signature":              goodParts[0] + "." + goodParts[1] + ".",
		"many dots":                    strings.Repeat(".", 3000),
		"huge token":                   good + strings.Repeat("A", 5000),
		"json serialization":           `{"payload":"` + goodParts[1] + `","protected":"` + goodParts[0] + `","signature":"` + goodParts[2] + `"}`,
		"payload not an object":        sign(t, jose.RS256, rsaKey1, "rsa-1", nil, nil),
		"garbage":                      "not a token",
	}
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		hdr := `{"alg":"` + alg + `","typ":"JWT","kid":"rsa-1"}`
		cases["alg "+alg] = rawToken(hdr, string(payloadA), nil)
		cases["alg "+alg+" with signature"] = rawToken(hdr, string(payloadA), []byte("sig"))
	}
	return cases
}

// assertTokenRefused checks that v refuses tok as an invalid token without echoing it, and
// that handler answers a bare 401 with the invalid_token challenge.
func assertTokenRefused(ctx context.Context, t *testing.T, v *auth.Validator, handler http.Handler, tok string) {
	t.Helper()
	_, err := v.Validate(ctx, tok)
	require.Error(t, err)
	assert.ErrorIs(t, err, auth.ErrInvalidToken)
	assert.NotContains(t, err.Error(), tok, "errors never echo the token")

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	handler.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Equal(t, `Bearer error="invalid_token"`, rec.Header().Get("WWW-Authenticate"))
	assert.Equal(t, "Unauthorized\n", rec.Body.String(), "no internal detail")
}

func TestBadTokenCorpus(t *testing.T) {
	testKeys(t)
	jkuSrv, jkuHits := countingServer(t)
	srv := newJWKSServer(t, jwks(t, pubJWK(rsaKey1, "rsa-1", "RS256")))
	v := newCorpusValidator(t, srv.srv.URL)

	ctx := ctxT(t)
	good := sign(t, jose.RS256, rsaKey1, "rsa-1", claimsFor(issA, aud), nil)
	_, err := v.Validate(ctx, good)
	require.NoError(t, err, "the valid token must pass first: keys are loaded")
	hitsAfterLoad := srv.hits.Load()
	now := time.Now()
	cases := badTokens(t, good, jkuSrv.URL, now)

	h, err := auth.NewGuard(v)
	require.NoError(t, err)
	reached := 0
	handler := h.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }))
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			assertTokenRefused(ctx, t, v, handler, tok)
		})
	}
	assert.Zero(t, reached)
	assert.Zero(t, jkuHits.Load(), "jku/x5u must never cause a fetch")
	assert.LessOrEqual(t, srv.hits.Load()-hitsAfterLoad, int64(0), "MinInterval 1h: unknown kids cause no fetch")

	t.Run("specific sentinels", func(t *testing.T) {
		_, err := v.Validate(ctx, cases["expired"])
		assert.ErrorIs(t, err, auth.ErrExpired)
		_, err = v.Validate(ctx, cases["nbf outside leeway"])
		assert.ErrorIs(t, err, auth.ErrNotYetValid)
		_, err = v.Validate(ctx, cases["huge token"])
		assert.ErrorIs(t, err, auth.ErrTokenTooLarge)
		_, err = v.Validate(ctx, cases["unknown kid"])
		assert.ErrorIs(t, err, auth.ErrUnknownKey)
		_, err = v.Validate(ctx, "")
		assert.ErrorIs(t, err, auth.ErrMissingToken)
	})

	t.Run("leeway edges pass", func(t *testing.T) {
		for name, mod := range map[string]func(map[string]any){
			"nbf just inside leeway": func(c map[string]any) { c["nbf"] = now.Add(corpusLeeway - 5*time.Second).Unix() },
			"exp just inside leeway": func(c map[string]any) { c["exp"] = now.Add(-corpusLeeway + 5*time.Second).Unix() },
			"iat just inside leeway": func(c map[string]any) { c["iat"] = now.Add(corpusLeeway - 5*time.Second).Unix() },
		} {
			_, err := v.Validate(ctx, sign(t, jose.RS256, rsaKey1, "rsa-1", claimsWith(mod), nil))
			assert.NoError(t, err, name)
		}
	})
}

// 10,000 requests with random kids as fast as they come, with a short MinInterval so that
// the rule is exercised many times over.
func TestKidFloodBoundedFetches(t *testing.T) {
	kidFlood(t, 250*time.Millisecond, 0)
}

// The scenario as stated: 10,000 requests with random kids spread over 10 s, with the
// default MinInterval (30 s): at most a couple of fetches, never two at once.
func TestKidFloodOverTenSeconds(t *testing.T) {
	t.Parallel()
	kidFlood(t, 0, 10*time.Second)
}

// kidFlood sends 10,000 requests, most with a random kid, from 8 workers, spread over spread
// (0: as fast as they go), against a validator with the given MinInterval (0: the default).
func kidFlood(t *testing.T, minInterval, spread time.Duration) {
	testKeys(t)
	srv := newJWKSServer(t, jwks(t, pubJWK(rsaKey1, "rsa-1", "RS256")))
	srv.delay.Store(int64(20 * time.Millisecond)) // make overlapping fetches likely if they were possible
	v, err := auth.NewValidator([]auth.Issuer{{
		Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"RS256"}, JWKSURL: srv.srv.URL,
		Refresh: auth.Refresh{MinInterval: minInterval, Interval: time.Hour},
	}})
	if minInterval == 0 {
		minInterval = 30 * time.Second // Refresh.MinInterval's default
	}
	require.NoError(t, err)
	defer v.Close()
	ctx := ctxT(t)
	good := sign(t, jose.RS256, rsaKey1, "rsa-1", claimsFor(issA, aud), nil)
	_, err = v.Validate(ctx, good)
	require.NoError(t, err)

	// Pre-sign a few tokens with random kids; the kid, not the signature, is what matters.
	var bad []string
	for i := 0; i < 16; i++ {
		bad = append(bad, rawToken(fmt.Sprintf(`{"alg":"RS256","kid":"k%d"}`, rand.Int64()), `{"iss":"`+issA+`"}`, []byte("x")))
	}
	start := time.Now()
	const requests, workers = 10000, 8
	var wg sync.WaitGroup
	var goodFail, badPass int64
	var mu sync.Mutex
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < requests; i += workers {
				if spread > 0 { // request i is due at start + i/requests × spread
					time.Sleep(time.Until(start.Add(spread * time.Duration(i) / requests)))
				}
				if i%100 == 0 {
					if _, err := v.Validate(ctx, good); err != nil {
						mu.Lock()
						goodFail++
						mu.Unlock()
					}
					continue
				}
				// A fresh random kid every request.
				tok := rawToken(fmt.Sprintf(`{"alg":"RS256","kid":"%x"}`, rand.Uint64()), `{"iss":"`+issA+`"}`, []byte("x"))
				if i%7 == 0 {
					tok = bad[i%len(bad)]
				}
				if _, err := v.Validate(ctx, tok); err == nil {
					mu.Lock()
					badPass++
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	fetches := srv.hits.Load()
	t.Logf("%d requests in %v: %d JWKS fetches, max concurrent %d", requests, elapsed, fetches, srv.maxIn.Load())
	assert.Zero(t, goodFail, "valid tokens keep passing")
	assert.Zero(t, badPass)
	assert.LessOrEqual(t, fetches, int64(2+elapsed/minInterval), "at most one fetch per MinInterval")
	assert.LessOrEqual(t, srv.maxIn.Load(), int64(1), "never two fetches at once")
}

func TestJWKSRotation(t *testing.T) {
	v, srv := twoIssuers(t, auth.Refresh{MinInterval: 50 * time.Millisecond, Interval: time.Hour})
	ctx := ctxT(t)
	_, err := v.Validate(ctx, sign(t, jose.RS256, rsaKey1, "rsa-1", claimsFor(issA, aud), nil))
	require.NoError(t, err)

	// Rotate: rsa-2 is added, rsa-1 withdrawn.
	srv.set(jwks(t, pubJWK(rsaKey2, "rsa-2", "RS256")))
	newTok := sign(t, jose.RS256, rsaKey2, "rsa-2", claimsFor(issA, aud), nil)
	eventually(t, 5*time.Second, func() bool {
		_, err := v.Validate(ctx, newTok)
		return err == nil
	}, "the new kid is fetched on demand")
	_, err = v.Validate(ctx, sign(t, jose.RS256, rsaKey1, "rsa-1", claimsFor(issA, aud), nil))
	assert.ErrorIs(t, err, auth.ErrUnknownKey, "the withdrawn key is gone")
}

func TestJWKSDownKeepsKeysUntilStale(t *testing.T) {
	const stale = 600 * time.Millisecond
	v, srv := twoIssuers(t, auth.Refresh{Interval: 40 * time.Millisecond, MinInterval: 20 * time.Millisecond, MaxStaleness: stale})
	ctx := ctxT(t)
	tok := sign(t, jose.RS256, rsaKey1, "rsa-1", claimsFor(issA, aud), nil)
	_, err := v.Validate(ctx, tok)
	require.NoError(t, err)

	srv.down.Store(true)
	downAt := time.Now()
	before := srv.hits.Load()
	eventually(t, 5*time.Second, func() bool { return srv.hits.Load() > before+1 }, "refreshes keep trying")
	if time.Since(downAt) < stale/2 {
		_, err = v.Validate(ctx, tok)
		assert.NoError(t, err, "last good keys stay while the endpoint is down")
	}
	eventually(t, 5*time.Second, func() bool {
		_, err := v.Validate(ctx, tok)
		return errors.Is(err, auth.ErrKeysUnavailable)
	}, "keys expire after MaxStaleness")
	assert.GreaterOrEqual(t, time.Since(downAt), stale-50*time.Millisecond)

	// Issuer B (static keys) is unaffected.
	_, err = v.Validate(ctx, sign(t, jose.ES256, ecKey2, "b-1", claimsFor(issB, "ledger"), nil))
	assert.NoError(t, err)

	srv.down.Store(false)
	eventually(t, 5*time.Second, func() bool {
		_, err := v.Validate(ctx, tok)
		return err == nil
	}, "keys come back with the endpoint")
}

func TestJWKSFirstFetchWaitsAndCloseIsIdempotent(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwks(t, pubJWK(ecKey1, "ec-1", "ES256")))
	srv.delay.Store(int64(100 * time.Millisecond))
	v, err := auth.NewValidator([]auth.Issuer{{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"ES256"}, JWKSURL: srv.srv.URL}})
	require.NoError(t, err)
	tok := sign(t, jose.ES256, ecKey1, "ec-1", claimsFor(issA, aud), nil)

	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	_, err = v.Validate(short, tok)
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a done context returns ctx.Err()")

	_, err = v.Validate(ctxT(t), tok)
	require.NoError(t, err, "the first token waits for the first fetch")
	require.NoError(t, v.Close())
	require.NoError(t, v.Close())
	_, err = v.Validate(ctxT(t), tok)
	assert.NoError(t, err, "held keys keep working after Close")
}

func TestJWKSFileReload(t *testing.T) {
	testKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, jwks(t, pubJWK(ecKey1, "ec-1", "ES256")))
	v, err := auth.NewValidator([]auth.Issuer{{
		Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"ES256", "HS256"}, JWKSFile: path,
		Refresh: auth.Refresh{Interval: 20 * time.Millisecond},
	}})
	require.NoError(t, err)
	defer v.Close()
	ctx := ctxT(t)
	_, err = v.Validate(ctx, sign(t, jose.ES256, ecKey1, "ec-1", claimsFor(issA, aud), nil))
	require.NoError(t, err)

	secret := []byte("0123456789abcdef0123456789abcdef")
	writeFile(t, path, jwks(t, pubJWK(ecKey2, "ec-2", "ES256"), jose.JSONWebKey{Key: secret, KeyID: "hs", Algorithm: "HS256"}))
	tok2 := sign(t, jose.ES256, ecKey2, "ec-2", claimsFor(issA, aud), nil)
	eventually(t, 5*time.Second, func() bool { _, err := v.Validate(ctx, tok2); return err == nil }, "file reloaded")
	_, err = v.Validate(ctx, sign(t, jose.HS256, secret, "hs", claimsFor(issA, aud), nil))
	assert.NoError(t, err, "a local file may hold HMAC secrets")

	writeFile(t, path, []byte("{not json"))
	time.Sleep(60 * time.Millisecond) // several reload intervals; nothing to poll for: the point is that nothing changes
	_, err = v.Validate(ctx, tok2)
	assert.NoError(t, err, "a broken file keeps the last good keys")
}

func TestNewValidatorNamesBadField(t *testing.T) {
	testKeys(t)
	ok := auth.Issuer{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"ES256"}, Keys: []auth.Key{{Key: ecKey1.Public()}}}
	mod := func(f func(*auth.Issuer)) []auth.Issuer {
		is := ok
		f(&is)
		return []auth.Issuer{is}
	}
	cases := []struct {
		name    string
		issuers []auth.Issuer
		opts    []auth.ValidatorOption
		field   string
	}{
		{"no issuers", nil, nil, "issuers"},
		{"no iss", mod(func(i *auth.Issuer) { i.Issuer = "" }), nil, "Issuers[0].Issuer"},
		{"no audiences", mod(func(i *auth.Issuer) { i.Audiences = nil }), nil, "Issuers[0].Audiences"},
		{"no algorithms", mod(func(i *auth.Issuer) { i.Algorithms = nil }), nil, "Issuers[0].Algorithms"},
		{"alg none", mod(func(i *auth.Issuer) { i.Algorithms = []string{"ES256", "None"} }), nil, "Issuers[0].Algorithms[1]"},
		{"unknown alg", mod(func(i *auth.Issuer) { i.Algorithms = []string{"XS1"} }), nil, "Issuers[0].Algorithms[0]"},
		{"hmac with url", mod(func(i *auth.Issuer) { i.Keys = nil; i.JWKSURL = "https://x.test/j"; i.Algorithms = []string{"HS256"} }), nil, "Issuers[0].Algorithms[0]"},
		{"two sources", mod(func(i *auth.Issuer) { i.JWKSFile = "/x" }), nil, "Issuers[0]"},
		{"no source", mod(func(i *auth.Issuer) { i.Keys = nil }), nil, "Issuers[0]"},
		{"http url off loopback", mod(func(i *auth.Issuer) { i.Keys = nil; i.JWKSURL = "http://example.com/j" }), nil, "Issuers[0].JWKSURL"},
		{"weak rsa", mod(func(i *auth.Issuer) { i.Keys = []auth.Key{{Key: &rsaKey1.PublicKey}}; i.Keys[0].Key = shortRSA(t) }), nil, "Issuers[0].Keys[0].Key"},
		{"private key", mod(func(i *auth.Issuer) { i.Keys = []auth.Key{{Key: ecKey1}} }), nil, "Issuers[0].Keys[0].Key"},
		{"short secret", mod(func(i *auth.Issuer) { i.Keys = []auth.Key{{Key: []byte("short")}} }), nil, "Issuers[0].Keys[0].Key"},
		{"missing file", mod(func(i *auth.Issuer) { i.Keys = nil; i.JWKSFile = filepath.Join(t.TempDir(), "nope") }), nil, "Issuers[0].JWKSFile"},
		{"negative refresh", mod(func(i *auth.Issuer) { i.Refresh.Interval = -1 }), nil, "Issuers[0].Refresh"},
		{"duplicate", append(mod(func(*auth.Issuer) {}), ok), nil, "Issuers[1].Issuer"},
		{"negative leeway", []auth.Issuer{ok}, []auth.ValidatorOption{auth.WithLeeway(-time.Second)}, "leeway"},
		{"zero max bytes", []auth.Issuer{ok}, []auth.ValidatorOption{auth.WithMaxTokenBytes(0)}, "max token bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := auth.NewValidator(tc.issuers, tc.opts...)
			require.Error(t, err)
			assert.Nil(t, v)
			var ce *auth.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.field, ce.Field)
		})
	}
}
