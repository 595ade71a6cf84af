package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/breaker"
)

func TestOpenErrorGRPCStatus(t *testing.T) {
	b := newBreaker(t, breaker.Config{MinimumVolume: 1})
	record(t, b, breaker.Failure)
	_, err := b.Allow()
	require.Error(t, err)

	for _, e := range []error{err, fmt.Errorf("pick: %w", err)} {
		require.Equal(t, codes.Unavailable, status.Code(e))
		require.ErrorIs(t, e, breaker.ErrOpen)
		s, ok := status.FromError(e)
		require.True(t, ok)
		require.Contains(t, s.Message(), "breaker: circuit open")
	}
	require.False(t, errors.Is(breaker.ErrOpen, context.Canceled))
	require.NotErrorIs(t, err, context.Canceled, "a refusal is not a cancellation")
}

func TestClassifyGRPC(t *testing.T) {
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
			require.Equal(t, tt.want, breaker.ClassifyGRPC(tt.ctx, tt.err))
		})
	}
}
