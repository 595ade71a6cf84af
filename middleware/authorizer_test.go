package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

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

// pathAuthorizer refuses requests to /deny and calls to methods ending in Deny.
type pathAuthorizer struct{}

func (pathAuthorizer) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/deny" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (pathAuthorizer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return nil, status.Error(codes.PermissionDenied, "no")
	}
}

func (pathAuthorizer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return status.Error(codes.PermissionDenied, "no")
	}
}

// The authorizer runs before the rate limits: refused requests spend no quota.
func TestAuthorizerRunsBeforeRateLimits(t *testing.T) {
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1.0 / 3600, Burst: 1}})
	require.NoError(t, err)
	h, err := middleware.NewHandler(okHandler, middleware.WithAuthorizer(pathAuthorizer{}),
		middleware.WithServerRateLimit(lim, middleware.KeyByHeader("X-Key")))
	require.NoError(t, err)
	serve := func(path string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("X-Key", "k")
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for range 3 {
		assert.Equal(t, http.StatusForbidden, serve("/deny"))
	}
	assert.Equal(t, http.StatusOK, serve("/ok"), "the refused requests took none of the one token")
	assert.Equal(t, http.StatusTooManyRequests, serve("/ok"))

	// Over gRPC too: the call is refused before the limit and the handler.
	glim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1.0 / 3600, Burst: 1}})
	require.NoError(t, err)
	a := newGRPCBackend(t, "a", serverOptions(t, middleware.WithAuthorizer(pathAuthorizer{}), middleware.WithServerRateLimit(glim, clientIP(t)))...)
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	for range 2 {
		_, err = testgrpc.NewTestServiceClient(conn).UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
		assert.Equal(t, codes.PermissionDenied, status.Code(err))
	}
	assert.Zero(t, a.calls.Load(), "the handler did not run")
}
