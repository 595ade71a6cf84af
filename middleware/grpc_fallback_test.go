package middleware_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// A gRPC client's unary call whose canary side refuses it (the one canary server answers
// UNAVAILABLE, its breaker opens) goes to the stable side instead.
func TestGRPCBrokenCanaryFallsBack(t *testing.T) {
	stable, canary := newGRPCBackend(t, "stable"), newGRPCBackend(t, "canary")
	canary.mode.Store(int64(modeUnavailable))
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {
		{Addr: stable.addr, Meta: map[string]string{"version": "v1"}},
		{Addr: canary.addr, Meta: map[string]string{"version": "v2"}},
	}})
	r := grpcRouter(t, route.RouteConfig{
		Name:  "canary",
		Match: route.Match{GRPC: &route.GRPCMatch{Service: testService}},
		Canary: &route.Canary{
			Stable: route.Destination{Service: "svc", Subset: route.Subset{Meta: map[string]string{"version": "v1"}}},
			Canary: route.Destination{Service: "svc", Subset: route.Subset{Meta: map[string]string{"version": "v2"}}},
			Weight: 30,
		},
	})
	gc := newGRPCClient(t, static, middleware.WithRoutes(r),
		middleware.WithBreaker(breaker.Config{MinimumVolume: 5, OpenDelay: time.Hour}))
	conn, err := gc.NewClient("svc", grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	const n = 400
	ok := 0
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		if err == nil {
			ok++
		} else if ok == 0 {
			t.Log(err)
		}
	}
	st := gc.Stats()
	t.Logf("ok %d/%d; stable %d, canary %d; %+v", ok, n, stable.calls.Load(), canary.calls.Load(), st)
	assert.GreaterOrEqual(t, ok, n*99/100)
	assert.Greater(t, st.Fallbacks, int64(n*30/100/2))
	assert.EqualValues(t, n, st.Requests, "a fallen-back call is one call")
	assert.LessOrEqual(t, canary.calls.Load(), int64(20), "the open breaker keeps calls off the canary")
	assert.EqualValues(t, ok, stable.handled.Load(), "every success came from stable")
}
