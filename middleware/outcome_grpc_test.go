package middleware_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/middleware"
)

// TestOutcomeTableGRPC is TestOutcomeTable's gRPC side: one call per kind of result through a
// GRPCClient over two real loopback servers, the first of which answers it, with consumers
// set to react to a single result (one retry, ejection after one gateway failure, a breaker
// that opens on one failure), and what each consumer did.
func TestOutcomeTableGRPC(t *testing.T) {
	cases := []struct {
		name        string
		mode        grpcMode
		code        codes.Code
		pushback    int64 // ms; -2: none
		opts        []middleware.GRPCClientOption
		timeout     time.Duration // the caller's deadline; 0: 5 s
		wantCode    codes.Code
		retried     bool
		ejected     bool
		breakerOpen bool
	}{
		{name: "OK", mode: modeOK, pushback: -2, wantCode: codes.OK},
		{name: "UNAVAILABLE", mode: modeUnavailable, pushback: -2, wantCode: codes.OK, retried: true, ejected: true, breakerOpen: true},
		{name: "RESOURCE_EXHAUSTED with pushback", mode: modeExhausted, pushback: 10, wantCode: codes.ResourceExhausted},
		{name: "RESOURCE_EXHAUSTED retried when listed", mode: modeExhausted, pushback: 10,
			opts:     []middleware.GRPCClientOption{middleware.WithGRPCRetryCodes(codes.Unavailable, codes.ResourceExhausted)},
			wantCode: codes.OK, retried: true},
		{name: "pushback forbids the retry", mode: modeUnavailable, pushback: -1, wantCode: codes.Unavailable, ejected: true, breakerOpen: true},
		{name: "DEADLINE_EXCEEDED from the server", mode: modeCode, code: codes.DeadlineExceeded, pushback: -2,
			wantCode: codes.DeadlineExceeded, ejected: true, breakerOpen: true},
		{name: "INTERNAL", mode: modeCode, code: codes.Internal, pushback: -2, wantCode: codes.Internal, breakerOpen: true},
		{name: "NOT_FOUND", mode: modeCode, code: codes.NotFound, pushback: -2, wantCode: codes.NotFound},
		{name: "attempt timeout", mode: modeHang, pushback: -2,
			opts:     []middleware.GRPCClientOption{middleware.WithAttemptTimeout(50 * time.Millisecond), middleware.WithGRPCRetryCodes(codes.Unavailable, codes.DeadlineExceeded)},
			wantCode: codes.OK, retried: true, ejected: true, breakerOpen: true},
		{name: "caller deadline", mode: modeHang, pushback: -2, timeout: 50 * time.Millisecond, wantCode: codes.DeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			first, second := newGRPCBackend(t, "first"), newGRPCBackend(t, "second")
			opts := append([]middleware.GRPCClientOption{
				middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin,
					Outlier: balancer.OutlierConfig{ConsecutiveGatewayFailure: 1, MaxEjectionPercent: 50}}),
				middleware.WithBreaker(breaker.Config{MinimumVolume: 1, FailureRateThreshold: 100, OpenDelay: time.Minute}),
				middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}),
			}, tc.opts...)
			f := newGRPCFixture(t, []*grpcBackend{first, second}, opts...)
			f.waitReady(t)
			before := f.gc.Stats()
			// Round robin: find which backend the next call goes to, and make it answer.
			target := first
			probe, err := f.client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
			require.NoError(t, err)
			if probe.GetUsername() == "first" {
				target = second
			}
			target.code.Store(int64(tc.code))
			target.pushback.Store(tc.pushback)
			target.set(tc.mode)
			before = f.gc.Stats()

			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			_, err = f.call(t, timeout)
			assert.Equal(t, tc.wantCode, status.Code(err), "%v", err)
			d := statsSince(f.gc, before)
			assert.Equal(t, tc.retried, d.Retries > 0, "retried (%+v)", d)
			assert.Equal(t, tc.ejected, d.Ejections > 0, "ejected (%+v)", d)
			assert.Equal(t, tc.breakerOpen, d.BreakerOpens > 0, "breaker opened (%+v)", d)
		})
	}
}
