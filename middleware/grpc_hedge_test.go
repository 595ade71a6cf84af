package middleware_test

import (
	"context"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxyless/proxyless/middleware"
)

// After Invoke returns, the caller owns its request message again: a losing hedge that
// started late must not still be marshalling it (the race detector fails this test when it
// does; found by review). 300 hedged calls of 2 ms.
func TestGRPCHedgeDoesNotReadRequestAfterReturn(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	a.set(modeSlow)
	b.set(modeSlow)
	a.delay.Store(int64(2 * time.Millisecond))
	b.delay.Store(int64(2 * time.Millisecond))
	f := newGRPCFixture(t, []*grpcBackend{a, b}, rr, middleware.WithoutBreaker(),
		middleware.WithHedge(middleware.HedgePolicy{Delay: 2 * time.Millisecond, MaxHedges: 1}),
		middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: 1, MinRetriesPerSecond: 100000}))
	f.waitReady(t)
	for i := range 300 {
		req := &testgrpc.SimpleRequest{ResponseSize: 1}
		resp := &testgrpc.SimpleResponse{}
		err := f.conn.Invoke(context.Background(), "/grpc.testing.TestService/UnaryCall", req, resp)
		if err != nil {
			t.Fatal(err)
		}
		req.ResponseSize = int32(i) // the caller reuses its message
		req.Payload = &testgrpc.Payload{Body: []byte("x")}
	}
	if f.gc.Stats().Hedges == 0 {
		t.Fatal("no call was hedged: the test shows nothing")
	}
}
