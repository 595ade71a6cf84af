package grpcbalancer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/grpcresolver"
)

// TestBreakerRefusalStatus opens the breaker of the only endpoint and checks the picker's
// refusal: gRPC hands the caller status Unavailable, and the Attempt's error, wrapped or not,
// is Unavailable too and matches breaker.ErrOpen.
func TestBreakerRefusalStatus(t *testing.T) {
	s, ep := start(t, "a")
	s.fail.Store(true)
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {ep}})
	lb, err := grpcbalancer.Config{
		Balancer: balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}},
		Breaker:  breaker.Config{MinimumVolume: 1, OpenDelay: time.Minute},
	}.JSON(grpcbalancer.Name)
	require.NoError(t, err)
	conn, err := grpc.NewClient("proxyless:///svc",
		grpc.WithResolvers(grpcresolver.NewBuilder(static)),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[`+lb+`]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
	require.Equal(t, codes.Unavailable, status.Code(err), "the server's own failure")
	require.EqualValues(t, 1, s.calls.Load())

	att := grpcbalancer.NewCall(false).NewAttempt()
	_, err = client.UnaryCall(grpcbalancer.NewContext(ctx, att), &testgrpc.SimpleRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "breaker: circuit open")
	require.EqualValues(t, 1, s.calls.Load(), "refused locally")

	pe := att.PickError()
	require.Error(t, pe)
	for _, e := range []error{pe, fmt.Errorf("pick: %w", pe)} {
		require.Equal(t, codes.Unavailable, status.Code(e))
		require.ErrorIs(t, e, breaker.ErrOpen)
		var open *breaker.OpenError
		require.ErrorAs(t, e, &open)
		st, ok := status.FromError(e)
		require.True(t, ok)
		require.Contains(t, st.Message(), "breaker: circuit open")
	}
	require.False(t, errors.Is(breaker.ErrOpen, context.Canceled))
	require.NotErrorIs(t, pe, context.Canceled, "a refusal is not a cancellation")
}

func TestBreakerOutcome(t *testing.T) {
	live := context.Background()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	st := func(c codes.Code) error { return status.Error(c, "x") }

	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want breaker.Outcome
	}{
		{"ok", live, nil, breaker.Success},
		{"unavailable", live, st(codes.Unavailable), breaker.Failure},
		{"attempt deadline", live, st(codes.DeadlineExceeded), breaker.Failure},
		{"internal", live, st(codes.Internal), breaker.Failure},
		{"unknown", live, st(codes.Unknown), breaker.Failure},
		{"data loss", live, st(codes.DataLoss), breaker.Failure},
		{"not found", live, st(codes.NotFound), breaker.Success},
		{"invalid argument", live, st(codes.InvalidArgument), breaker.Success},
		{"permission denied", live, st(codes.PermissionDenied), breaker.Success},
		{"resource exhausted", live, st(codes.ResourceExhausted), breaker.Ignore},
		{"canceled status", live, st(codes.Canceled), breaker.Ignore},
		{"caller cancelled", canceled, st(codes.Canceled), breaker.Ignore},
		{"caller cancelled, unavailable", canceled, st(codes.Unavailable), breaker.Ignore},
		{"context canceled error", live, fmt.Errorf("x: %w", context.Canceled), breaker.Ignore},
		{"context deadline error", live, context.DeadlineExceeded, breaker.Failure},
		{"refused locally", live, &breaker.OpenError{}, breaker.Ignore},
		{"plain error", live, errors.New("connection refused"), breaker.Failure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, grpcbalancer.BreakerOutcome(tt.ctx, tt.err))
		})
	}
}
