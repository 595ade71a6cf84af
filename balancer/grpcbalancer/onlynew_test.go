package grpcbalancer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/grpcresolver"
)

// An Attempt with OnlyNew goes to an endpoint its call has not tried while there is one; once
// every endpoint was tried, the picker refuses it with ErrOnlyTried (status Unavailable), and
// nothing reaches a server. Without OnlyNew, the same attempt goes back to a tried endpoint.
func TestOnlyNewRefusesTriedEndpoints(t *testing.T) {
	a, ea := start(t, "a")
	b, eb := start(t, "b")
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {ea, eb}})
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, grpcbalancer.PolicyName(balancer.PolicyRoundRobin))
	conn, err := grpc.NewClient("proxyless:///svc", grpc.WithResolvers(grpcresolver.NewBuilder(static)),
		grpc.WithDefaultServiceConfig(sc), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for a.calls.Load() == 0 || b.calls.Load() == 0 { // both READY
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		require.NoError(t, err)
	}
	call := grpcbalancer.NewCall(false)
	seen := map[string]bool{}
	for range 2 {
		att := call.NewAttempt()
		att.OnlyNew = true
		resp, err := client.UnaryCall(grpcbalancer.NewContext(ctx, att), &testgrpc.SimpleRequest{})
		require.NoError(t, err)
		seen[resp.GetUsername()] = true
	}
	assert.Len(t, seen, 2, "each went to an endpoint not tried yet")
	calls := a.calls.Load() + b.calls.Load()

	att := call.NewAttempt()
	att.OnlyNew = true
	_, err = client.UnaryCall(grpcbalancer.NewContext(ctx, att), &testgrpc.SimpleRequest{})
	require.Error(t, err)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.ErrorIs(t, att.PickError(), grpcbalancer.ErrOnlyTried)
	assert.Empty(t, att.Endpoint())
	assert.Equal(t, calls, a.calls.Load()+b.calls.Load(), "nothing was sent")

	att = call.NewAttempt()
	_, err = client.UnaryCall(grpcbalancer.NewContext(ctx, att), &testgrpc.SimpleRequest{})
	require.NoError(t, err)
	assert.NoError(t, att.PickError())
	assert.Equal(t, calls+1, a.calls.Load()+b.calls.Load())
}
