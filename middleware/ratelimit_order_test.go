package middleware_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
)

// forgedToken is a well-formed token for the test issuer, with the known key ID, signed by
// another key: only a signature check can refuse it.
func forgedToken(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tok, err := signJWT(key, jose.ES256, map[string]any{"iss": testIssuer, "aud": testAudience, "sub": "mallory", "exp": time.Now().Add(time.Hour).Unix()})
	require.NoError(t, err)
	return tok
}

// A flood of forged tokens from one client IP is answered 429 past the per-IP limit, over
// HTTP and gRPC, and costs a signature check only for the requests the limit admits.
func TestForgedTokenFloodLimitedBeforeSignatureChecks(t *testing.T) {
	const burst, flood = 5, 60
	forged := forgedToken(t)
	limits := func(t *testing.T) []middleware.ServerOption {
		lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 0.001, Burst: burst}})
		require.NoError(t, err)
		byIP, err := middleware.KeyByClientIP(ratelimit.ClientIPConfig{})
		require.NoError(t, err)
		subj, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 0.001, Burst: 1}})
		require.NoError(t, err)
		return []middleware.ServerOption{
			middleware.WithServerRateLimit(lim, byIP),
			middleware.WithServerRateLimit(subj, middleware.KeyBySubject()),
		}
	}

	t.Run("http", func(t *testing.T) {
		idp := newIDP(t)
		opts := []middleware.HandlerOption{middleware.WithJWT(idp.v)}
		for _, o := range limits(t) {
			opts = append(opts, o)
		}
		srv := startHTTP(t, whoami, opts...)
		codes := map[int]int{}
		for range flood {
			code, _, _ := do(t, srv.Client(), srv.URL, "Authorization", "Bearer "+forged)
			codes[code]++
		}
		assert.Equal(t, map[int]int{http.StatusUnauthorized: burst, http.StatusTooManyRequests: flood - burst}, codes)
		assert.EqualValues(t, burst, idp.v.Stats().SignatureChecks, "a signature check only for the requests the per-IP limit admitted")
	})

	t.Run("grpc", func(t *testing.T) {
		idp := newIDP(t)
		opts := []middleware.GRPCServerOption{middleware.WithJWT(idp.v)}
		for _, o := range limits(t) {
			opts = append(opts, o)
		}
		addr := startGRPC(t, serverOptions(t, opts...)...)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		client := testgrpc.NewTestServiceClient(conn)
		got := map[codes.Code]int{}
		for range flood {
			_, err := unary(t, client, bearer(forged))
			got[status.Code(err)]++
		}
		assert.Equal(t, map[codes.Code]int{codes.Unauthenticated: burst, codes.ResourceExhausted: flood - burst}, got)
		assert.EqualValues(t, burst, idp.v.Stats().SignatureChecks)
	})
}

// A per-subject limit runs after the token check: it sees the verified subject, and each
// subject has its own bucket.
func TestSubjectLimitAfterTokenCheck(t *testing.T) {
	idp := newIDP(t)
	subj, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 0.001, Burst: 1}})
	require.NoError(t, err)
	srv := startHTTP(t, whoami, middleware.WithJWT(idp.v), middleware.WithServerRateLimit(subj, middleware.KeyBySubject()))
	get := func(sub string) int {
		code, _, _ := do(t, srv.Client(), srv.URL, "Authorization", "Bearer "+idp.token(t, sub, ""))
		return code
	}
	assert.Equal(t, http.StatusOK, get("alice"))
	assert.Equal(t, http.StatusTooManyRequests, get("alice"))
	assert.Equal(t, http.StatusOK, get("bob"), "bob's bucket is his own: the key is the verified subject, not \"\"")
}
