package middleware_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// hashCall makes a unary call in ctx, edited by edit, and returns the name of the backend
// that answered.
func (f *grpcFixture) hashCall(t *testing.T, edit func(context.Context) context.Context) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.client.UnaryCall(edit(ctx), &testgrpc.SimpleRequest{})
	require.NoError(t, err)
	return resp.GetUsername()
}

func withMD(kv ...string) func(context.Context) context.Context {
	return func(ctx context.Context) context.Context { return metadata.AppendToOutgoingContext(ctx, kv...) }
}

// grpcEndpoints waits until the client's channel balances over n READY endpoints.
func grpcEndpoints(t *testing.T, f *grpcFixture, n int) {
	t.Helper()
	eventually(t, func() bool {
		f.conn.Connect()
		ds := f.gc.Destinations()
		return len(ds) == 1 && len(ds[0].Endpoints) == n
	}, fmt.Sprintf("%d READY endpoints", n))
}

func newHashBackends(t *testing.T, n int) []*grpcBackend {
	bs := make([]*grpcBackend, n)
	for i := range bs {
		bs[i] = newGRPCBackend(t, fmt.Sprintf("s%d", i))
	}
	return bs
}

func TestGRPCHashingStickyAndMinimalMove(t *testing.T) {
	for _, pol := range hashingPolicies {
		t.Run(string(pol), func(t *testing.T) {
			bs := newHashBackends(t, 4)
			f := newGRPCFixture(t, bs[:3], hashing(pol, balancer.HashPolicy{Metadata: "x-user"}))
			f.waitReady(t)
			grpcEndpoints(t, f, 3)
			join := func() {
				f.static.Set("svc", []discovery.Endpoint{bs[0].endpoint(), bs[1].endpoint(), bs[2].endpoint(), bs[3].endpoint()})
				grpcEndpoints(t, f, 4)
			}
			send := func(k int) string { return f.hashCall(t, withMD("x-user", fmt.Sprint("user-", k))) }
			moved, toNew := stickyThenJoin(t, join, send, 200, 10, 1000)
			assertMoveBounds(t, pol, moved, toNew)
		})
	}
}

// TestGRPCHashPolicies checks the gRPC hash policies on real calls: metadata (gRFC A60's
// request hash header), a header policy read as metadata, the context key and the source IP
// of the call being served (the peer a gRPC server puts in its handler's context).
func TestGRPCHashPolicies(t *testing.T) {
	cases := []struct {
		name   string
		policy balancer.HashPolicy
		set    func(ctx context.Context, key string) context.Context
	}{
		{"metadata", balancer.HashPolicy{Metadata: "x-user"}, func(ctx context.Context, k string) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "x-user", k)
		}},
		{"header", balancer.HashPolicy{Header: "X-User"}, func(ctx context.Context, k string) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "x-user", k)
		}},
		{"context key", balancer.HashPolicy{ContextKey: true}, func(ctx context.Context, k string) context.Context {
			return balancer.WithHashKey(ctx, k)
		}},
		{"source IP", balancer.HashPolicy{SourceIP: true}, func(ctx context.Context, k string) context.Context {
			ip := net.ParseIP("10.9.0.0").To4()
			ip[3] = byte(len(k)*7 + int(k[len(k)-1]))
			return peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: ip, Port: 1000 + int(k[0])}})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newGRPCFixture(t, newHashBackends(t, 3), hashing(balancer.PolicyMaglev, c.policy))
			f.waitReady(t)
			grpcEndpoints(t, f, 3)
			owners := map[string]bool{}
			for k := range 30 {
				key := fmt.Sprint("k", k)
				first := ""
				for i := range 3 {
					got := f.hashCall(t, func(ctx context.Context) context.Context {
						if i == 1 {
							ctx = metadata.AppendToOutgoingContext(ctx, "x-noise", "1")
						}
						return c.set(ctx, key)
					})
					if i == 0 {
						first = got
					}
					assert.Equal(t, first, got, "key %s", key)
				}
				owners[first] = true
			}
			assert.Greater(t, len(owners), 1, "30 keys all on one endpoint")
			unkeyed := map[string]bool{}
			for range 30 {
				unkeyed[f.hashCall(t, func(ctx context.Context) context.Context { return ctx })] = true
			}
			assert.Greater(t, len(unkeyed), 1, "calls without a key are spread at random")
		})
	}
}

// TestGRPCRouteHashPolicyOverridesDestination: a route's hashPolicy replaces the
// destination's for the calls it matches (set on the call by the interceptor); the other
// calls keep the destination's (made by the channel's picker).
func TestGRPCRouteHashPolicyOverridesDestination(t *testing.T) {
	r := grpcRouter(t, route.RouteConfig{
		Name:       "by-b",
		Match:      route.Match{Headers: []route.HeaderMatch{{Name: "x-route", Present: true}}},
		HashPolicy: []balancer.HashPolicy{{Metadata: "x-b"}},
	})
	f := newGRPCFixture(t, newHashBackends(t, 4), hashing(balancer.PolicyMaglev, balancer.HashPolicy{Metadata: "x-a"}), middleware.WithRoutes(r))
	f.waitReady(t)
	grpcEndpoints(t, f, 4)
	spread := func(routed bool, vary func(i int) (a, b string)) int {
		seen := map[string]bool{}
		for i := range 40 {
			a, b := vary(i)
			kv := []string{"x-a", a, "x-b", b}
			if routed {
				kv = append(kv, "x-route", "1")
			}
			seen[f.hashCall(t, withMD(kv...))] = true
		}
		return len(seen)
	}
	fixedB := func(i int) (string, string) { return fmt.Sprint("a", i), "b" }
	fixedA := func(i int) (string, string) { return "a", fmt.Sprint("b", i) }
	assert.Equal(t, 1, spread(true, fixedB), "the route hashes on x-b only")
	assert.Greater(t, spread(true, fixedA), 1, "the route ignores x-a")
	assert.Equal(t, 1, spread(false, fixedA), "unrouted calls hash on the destination's x-a")
	assert.Greater(t, spread(false, fixedB), 1, "unrouted calls ignore x-b")

	// Streams alike.
	streamSpread := func(routed bool, vary func(i int) (a, b string)) int {
		seen := map[string]bool{}
		for i := range 20 {
			a, b := vary(i)
			kv := []string{"x-a", a, "x-b", b}
			if routed {
				kv = append(kv, "x-route", "1")
			}
			seen[f.streamFrom(t, withMD(kv...))] = true
		}
		return len(seen)
	}
	assert.Equal(t, 1, streamSpread(true, fixedB), "a routed stream hashes on x-b only")
	assert.Greater(t, streamSpread(true, fixedA), 1, "a routed stream ignores x-a")
	assert.Equal(t, 1, streamSpread(false, fixedA), "an unrouted stream hashes on x-a")
}

// streamFrom opens a server stream in ctx, edited by edit, and returns the name of the
// backend that sent its first message.
func (f *grpcFixture) streamFrom(t *testing.T, edit func(context.Context) context.Context) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := f.client.StreamingOutputCall(edit(ctx), &testgrpc.StreamingOutputCallRequest{})
	require.NoError(t, err)
	msg, err := st.Recv()
	require.NoError(t, err)
	for {
		if _, err := st.Recv(); err != nil {
			break
		}
	}
	return string(msg.GetPayload().GetBody())
}

func TestGRPCClientRefusesHTTPHashPolicies(t *testing.T) {
	r := discovery.MustNewStatic(nil)
	for _, hp := range []balancer.HashPolicy{{Cookie: "session"}, {QueryParameter: "tenant"}} {
		_, err := middleware.NewGRPCClient(r, hashing(balancer.PolicyMaglev, hp))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Balancer.HashPolicy[0]")
	}
	_, err := middleware.NewGRPCClient(r, hashing(balancer.PolicyRoundRobin, balancer.HashPolicy{Metadata: "x-user"}))
	require.ErrorContains(t, err, "HashPolicy needs Policy maglev or ring_hash")
	_, err = middleware.NewTransport(nil, hashing(balancer.PolicyRoundRobin, balancer.HashPolicy{Header: "x-user"}))
	require.ErrorContains(t, err, "middleware: WithBalancer: balancer: HashPolicy needs Policy maglev or ring_hash")
}
