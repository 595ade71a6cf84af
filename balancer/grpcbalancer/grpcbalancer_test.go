package grpcbalancer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	grpcbal "google.golang.org/grpc/balancer"
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

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func parse(t *testing.T, name, cfg string) error {
	t.Helper()
	p, ok := grpcbal.Get(name).(grpcbal.ConfigParser)
	require.True(t, ok, "%s is registered with a config parser", name)
	_, err := p.ParseConfig(json.RawMessage(cfg))
	return err
}

func TestParseConfig(t *testing.T) {
	for _, p := range []balancer.Policy{balancer.PolicyPeakEWMA, balancer.PolicyRoundRobin, balancer.PolicyMaglev} {
		assert.NoError(t, parse(t, grpcbalancer.PolicyName(p), `{}`))
	}
	assert.NoError(t, parse(t, grpcbalancer.Name, `{"balancer":{"policy":"least_request"},"breaker":{"minimumVolume":5}}`))
	for _, bad := range []string{
		`{"balancer":{"policy":"nope"}}`,
		`{"balancer":{"panicThreshold":101}}`,
		`{"breaker":{"failureRateThreshold":200}}`,
		`{"balancer":{"healthCheck":{}}}`,
		`{"steer":-1}`,
		`{"unknownField":1}`,
		`[`,
	} {
		assert.Error(t, parse(t, grpcbalancer.Name, bad), bad)
	}
	// A broken breaker config is fine when breakers are off.
	assert.NoError(t, parse(t, grpcbalancer.Name, `{"breaker":{"failureRateThreshold":200},"disableBreaker":true}`))
}

func TestConfigJSONRoundTrips(t *testing.T) {
	c := grpcbalancer.Config{Balancer: balancer.Config{Policy: balancer.PolicyRandom}, Breaker: breaker.Config{MinimumVolume: 7}}
	s, err := c.JSON(grpcbalancer.Name)
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(s), &m))
	assert.NoError(t, parse(t, grpcbalancer.Name, string(m[grpcbalancer.Name])))
}

func TestClassify(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(live)
	cancel()
	timedOut, cancel2 := context.WithDeadline(live, time.Now().Add(-time.Second))
	defer cancel2()
	own := grpcbalancer.NewCall(false).NewAttempt()
	own.OwnDeadline = true
	for _, tc := range []struct {
		name string
		ctx  context.Context
		att  *grpcbalancer.Attempt
		err  error
		bal  balancer.Outcome
		brk  breaker.Outcome
	}{
		{"ok", live, nil, nil, balancer.OutcomeSuccess, breaker.Success},
		{"unavailable", live, nil, status.Error(codes.Unavailable, ""), balancer.OutcomeGatewayFailure, breaker.Failure},
		{"server deadline", live, nil, status.Error(codes.DeadlineExceeded, ""), balancer.OutcomeGatewayFailure, breaker.Failure},
		{"internal", live, nil, status.Error(codes.Internal, ""), balancer.OutcomeFailure, breaker.Failure},
		{"no status", live, nil, errors.New("x"), balancer.OutcomeFailure, breaker.Failure},
		{"exhausted", live, nil, status.Error(codes.ResourceExhausted, ""), balancer.OutcomeIgnore, breaker.Ignore},
		{"not found", live, nil, status.Error(codes.NotFound, ""), balancer.OutcomeSuccess, breaker.Success},
		{"invalid argument", live, nil, status.Error(codes.InvalidArgument, ""), balancer.OutcomeSuccess, breaker.Success},
		{"caller cancelled", cancelled, nil, status.Error(codes.Canceled, ""), balancer.OutcomeIgnore, breaker.Ignore},
		{"caller deadline", timedOut, nil, status.Error(codes.DeadlineExceeded, ""), balancer.OutcomeIgnore, breaker.Ignore},
		// An attempt timeout is a local timeout, which the balancer counts as a gateway failure
		// (as Envoy does), so that an endpoint that hangs gets ejected.
		{"attempt timeout", timedOut, own, status.Error(codes.DeadlineExceeded, ""), balancer.OutcomeGatewayFailure, breaker.Failure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bal, brk := grpcbalancer.Classify(tc.ctx, tc.att, tc.err)
			assert.Equal(t, tc.bal, bal)
			assert.Equal(t, tc.brk, brk)
		})
	}
}

type server struct {
	testgrpc.UnimplementedTestServiceServer
	name  string
	calls atomic.Int64
	fail  atomic.Bool
}

func (s *server) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return nil, status.Error(codes.Unavailable, "down")
	}
	return &testgrpc.SimpleResponse{Username: s.name}, nil
}

func start(t *testing.T, name string) (*server, discovery.Endpoint) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &server{name: name}
	g := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(g, s)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return s, discovery.Endpoint{Addr: lis.Addr().String()}
}

// TestChannelWithoutInterceptors runs the policy in a plain gRPC channel: it spreads calls over
// the endpoints, ejects one that fails, and avoids the endpoints an Attempt already tried.
func TestChannelWithoutInterceptors(t *testing.T) {
	a, ea := start(t, "a")
	b, eb := start(t, "b")
	c, ec := start(t, "c")
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {ea, eb, ec}})
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{%q:{"balancer":{"outlier":{"consecutiveGatewayFailure":3}}}}]}`, grpcbalancer.PolicyName(balancer.PolicyRoundRobin))
	conn, err := grpc.NewClient("proxyless:///svc",
		grpc.WithResolvers(grpcresolver.NewBuilder(static)),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for a.calls.Load() == 0 || b.calls.Load() == 0 || c.calls.Load() == 0 {
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		require.NoError(t, err)
	}

	// Attempts of one call go to three different endpoints.
	call := grpcbalancer.NewCall(false)
	seen := map[string]bool{}
	for range 3 {
		att := call.NewAttempt()
		resp, err := client.UnaryCall(grpcbalancer.NewContext(ctx, att), &testgrpc.SimpleRequest{})
		require.NoError(t, err)
		seen[resp.GetUsername()] = true
		assert.NotEmpty(t, att.Endpoint())
	}
	assert.Len(t, seen, 3)
	assert.Equal(t, 3, call.Tried())

	// A failing endpoint is ejected after 3 gateway failures in a row. (How many calls it got
	// before depends on when its connection became ready, so count from here.)
	base := a.calls.Load()
	a.fail.Store(true)
	for range 30 {
		_, _ = client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	}
	assert.EqualValues(t, 3, a.calls.Load()-base, "ejected on its third failure in a row")
	before := a.calls.Load()
	for range 20 {
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		require.NoError(t, err)
	}
	assert.Equal(t, before, a.calls.Load())
}
