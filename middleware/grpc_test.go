package middleware_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
	"github.com/proxyless/proxyless/route"
)

// rr is a balancer config that makes the order of picks predictable and never ejects.
var rr = middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: balancer.OutlierConfig{Disabled: true}})

func TestGRPCRetryGoesToAnotherEndpoint(t *testing.T) {
	bad, good := newGRPCBackend(t, "bad"), newGRPCBackend(t, "good")
	f := newGRPCFixture(t, []*grpcBackend{bad, good}, rr, middleware.WithoutBreaker())
	f.waitReady(t)
	bad.set(modeUnavailable)
	before := f.gc.Stats()
	const n = 10 // within the budget's floor of 10 retries a second
	for range n {
		resp, err := f.call(t, 5*time.Second)
		require.NoError(t, err)
		assert.Equal(t, "good", resp.GetUsername())
	}
	assert.EqualValues(t, n, good.calls.Load(), "each call reached the good backend exactly once")
	assert.Positive(t, bad.calls.Load(), "round robin sent first attempts to the bad backend")
	assert.LessOrEqual(t, bad.calls.Load(), int64(n), "no call went to the bad backend twice")

	d := statsSince(f.gc, before)
	assert.EqualValues(t, n, d.Requests)
	assert.Equal(t, bad.calls.Load(), d.Retries, "each call that met the bad backend was retried once")
	assert.Equal(t, bad.calls.Load()+good.calls.Load(), d.Attempts)
	assert.Zero(t, d.BudgetRefusals+d.BreakerRefusals+d.Hedges)
}

// statsSince returns what c's counters counted since before.
func statsSince(c *middleware.GRPCClient, before middleware.Stats) middleware.Stats {
	s := c.Stats()
	return middleware.Stats{
		Requests: s.Requests - before.Requests, Attempts: s.Attempts - before.Attempts,
		Retries: s.Retries - before.Retries, Hedges: s.Hedges - before.Hedges,
		HedgeWins: s.HedgeWins - before.HedgeWins, BudgetRefusals: s.BudgetRefusals - before.BudgetRefusals,
		BreakerRefusals: s.BreakerRefusals - before.BreakerRefusals, BreakerOpens: s.BreakerOpens - before.BreakerOpens,
		Ejections: s.Ejections - before.Ejections,
	}
}

func TestGRPCNonRetryableCodes(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.NotFound, codes.Internal, codes.DeadlineExceeded, codes.ResourceExhausted} {
		t.Run(code.String(), func(t *testing.T) {
			a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
			f := newGRPCFixture(t, []*grpcBackend{a, b}, rr, middleware.WithoutBreaker())
			f.waitReady(t)
			for _, be := range f.backends {
				be.code.Store(int64(code))
				be.set(modeCode)
			}
			_, err := f.call(t, 5*time.Second)
			assert.Equal(t, code, status.Code(err))
			assert.EqualValues(t, 1, a.calls.Load()+b.calls.Load(), "not retried")
		})
	}
}

func TestGRPCRetryCodesValidation(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.OK} {
		_, err := middleware.NewGRPCClient(discovery.MustNewStatic(nil), middleware.WithGRPCRetryCodes(codes.Unavailable, code))
		require.Error(t, err, "a config error is the constructor's, not every call's")
		assert.ErrorContains(t, err, "middleware: WithGRPCRetryCodes")
	}
}

func TestGRPCDeadlineExceededRetriedOnlyWhenConfigured(t *testing.T) {
	for _, configured := range []bool{false, true} {
		slow, good := newGRPCBackend(t, "slow"), newGRPCBackend(t, "good")
		opts := []middleware.GRPCClientOption{rr, middleware.WithoutBreaker(), middleware.WithAttemptTimeout(100 * time.Millisecond)}
		if configured {
			opts = append(opts, middleware.WithGRPCRetryCodes(codes.Unavailable, codes.DeadlineExceeded))
		}
		f := newGRPCFixture(t, []*grpcBackend{slow, good}, opts...)
		f.waitReady(t)
		slow.set(modeHang)
		var failures int
		for range 4 {
			if _, err := f.call(t, 5*time.Second); err != nil {
				assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
				failures++
			}
		}
		if configured {
			assert.Zero(t, failures, "attempt timeouts retried on the good backend")
		} else {
			assert.Positive(t, failures, "attempt timeouts not retried")
			assert.EqualValues(t, 4, slow.calls.Load()+good.calls.Load())
		}
	}
}

func TestGRPCNoRetryAfterHeaders(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	f := newGRPCFixture(t, []*grpcBackend{a, b}, rr, middleware.WithoutBreaker())
	f.waitReady(t)
	a.set(modeHeadersThenUnavailable)
	b.set(modeHeadersThenUnavailable)
	_, err := f.call(t, 5*time.Second)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.EqualValues(t, 1, a.calls.Load()+b.calls.Load(), "headers arrived: not retried")
}

func TestGRPCRetryPushback(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	f := newGRPCFixture(t, []*grpcBackend{a, b}, rr, middleware.WithoutBreaker())
	f.waitReady(t)
	for _, be := range f.backends {
		be.set(modeUnavailable)
		be.pushback.Store(150)
	}
	start := time.Now()
	_, err := f.call(t, 5*time.Second)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.EqualValues(t, 3, a.calls.Load()+b.calls.Load(), "2 retries")
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "each retry waited the pushback")

	// A negative pushback forbids the retry.
	a.reset()
	b.reset()
	for _, be := range f.backends {
		be.pushback.Store(-1)
	}
	_, err = f.call(t, 5*time.Second)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.EqualValues(t, 1, a.calls.Load()+b.calls.Load())
}

func TestGRPCOutlierEjection(t *testing.T) {
	backends := []*grpcBackend{newGRPCBackend(t, "a"), newGRPCBackend(t, "b"), newGRPCBackend(t, "c")}
	f := newGRPCFixture(t, backends, middleware.WithoutBreaker(),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin}))
	f.waitReady(t)
	ok := 0
	for i := range 300 {
		if i == 30 {
			backends[0].set(modeUnavailable) // a starts failing mid-load
		}
		if _, err := f.call(t, 5*time.Second); err == nil {
			ok++
		}
	}
	assert.Equal(t, 300, ok, "retries hide the failing backend")
	assert.LessOrEqual(t, backends[0].calls.Load(), int64(10+5+2), "ejected after 5 consecutive failures")
	before := backends[0].calls.Load()
	for range 50 {
		_, err := f.call(t, 5*time.Second)
		require.NoError(t, err)
	}
	assert.Equal(t, before, backends[0].calls.Load(), "the ejected backend gets no calls")
}

func TestGRPCBreakerOpens(t *testing.T) {
	a := newGRPCBackend(t, "a")
	f := newGRPCFixture(t, []*grpcBackend{a},
		middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}),
		middleware.WithBreaker(breaker.Config{MinimumVolume: 5, OpenDelay: time.Minute}),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	f.waitReady(t)
	a.set(modeUnavailable)
	before := f.gc.Stats()
	for range 5 {
		_, err := f.call(t, 5*time.Second)
		require.Equal(t, codes.Unavailable, status.Code(err))
	}
	calls := a.calls.Load()
	_, err := f.call(t, 5*time.Second)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.ErrorIs(t, err, breaker.ErrOpen)
	assert.Equal(t, calls, a.calls.Load(), "refused locally")

	d := statsSince(f.gc, before)
	assert.EqualValues(t, 6, d.Requests)
	assert.Equal(t, calls, d.Attempts, "the refused calls sent nothing")
	assert.EqualValues(t, 1, d.BreakerOpens)
	assert.Equal(t, 6-calls, d.BreakerRefusals, "one per refused call (the warm-up's success counts towards the volume)")
}

// A call refused by the breakers of every endpoint is one breaker refusal, however many
// endpoints the picker skipped.
func TestGRPCBreakerRefusalCountedOncePerAttempt(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	f := newGRPCFixture(t, []*grpcBackend{a, b}, rr,
		middleware.WithBreaker(breaker.Config{MinimumVolume: 3, OpenDelay: time.Minute}),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	f.waitReady(t)
	a.set(modeUnavailable)
	b.set(modeUnavailable)
	before := f.gc.Stats()
	for i := 0; statsSince(f.gc, before).BreakerOpens < 2; i++ {
		require.Less(t, i, 50, "both breakers never opened")
		_, err := f.call(t, 5*time.Second)
		require.Equal(t, codes.Unavailable, status.Code(err))
	}
	mid := f.gc.Stats()
	_, err := f.call(t, 5*time.Second)
	assert.ErrorIs(t, err, breaker.ErrOpen)
	d := statsSince(f.gc, mid)
	assert.EqualValues(t, 1, d.Requests)
	assert.EqualValues(t, 1, d.BreakerRefusals, "two endpoints skipped, one attempt refused")
	assert.Zero(t, d.Attempts)
	var open int
	for _, ds := range f.gc.Destinations() {
		for _, e := range ds.Endpoints {
			if e.HasBreaker && e.Breaker == breaker.StateOpen {
				open++
			}
		}
	}
	assert.Equal(t, 2, open, "Destinations shows both breakers open")
}

func TestGRPCHedgeWinnerAndLoserCancelled(t *testing.T) {
	slow, fast := newGRPCBackend(t, "slow"), newGRPCBackend(t, "fast")
	f := newGRPCFixture(t, []*grpcBackend{slow, fast}, rr, middleware.WithoutBreaker(),
		middleware.WithHedge(middleware.HedgePolicy{Delay: 20 * time.Millisecond}))
	f.waitReady(t)
	slow.set(modeHang)
	for range 6 {
		resp := &testgrpc.SimpleResponse{Hostname: "stale"}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f.conn.Invoke(ctx, "/grpc.testing.TestService/UnaryCall", &testgrpc.SimpleRequest{}, resp)
		cancel()
		require.NoError(t, err)
		assert.Equal(t, "fast", resp.GetUsername(), "the winner's reply")
		assert.Empty(t, resp.GetHostname(), "the caller's reply was reset before the copy")
	}
	require.Positive(t, slow.calls.Load(), "some first attempts went to the slow backend")
	eventually(t, func() bool { return slow.cancelled.Load() == slow.calls.Load() }, "the slow backend saw every loser cancelled")
	s := f.gc.Stats()
	assert.Positive(t, s.Hedges)
	assert.Positive(t, s.HedgeWins, "the hedges to the fast backend won")
	assert.LessOrEqual(t, s.HedgeWins, s.Hedges)
}

func TestGRPCDeadlinePropagates(t *testing.T) {
	a := newGRPCBackend(t, "a")
	f := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithTimeout(2*time.Second))
	f.waitReady(t)
	_, err := f.client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
	require.NoError(t, err)
	left, ok := a.lastDeadline()
	require.True(t, ok, "the server saw a deadline (grpc-timeout)")
	assert.Greater(t, left, time.Second)
	assert.LessOrEqual(t, left, 2*time.Second)

	g := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithTimeout(2*time.Second), middleware.WithAttemptTimeout(300*time.Millisecond))
	g.waitReady(t)
	_, err = g.client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
	require.NoError(t, err)
	left, ok = a.lastDeadline()
	require.True(t, ok)
	assert.LessOrEqual(t, left, 300*time.Millisecond, "the per-attempt deadline")
}

func TestGRPCExpiredCallRefusedLocally(t *testing.T) {
	a := newGRPCBackend(t, "a")
	f := newGRPCFixture(t, []*grpcBackend{a})
	f.waitReady(t)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = f.client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	assert.Zero(t, a.calls.Load(), "no attempt reached the server")
}

func TestGRPCRetryBudgetBoundsOutage(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	f := newGRPCFixture(t, []*grpcBackend{a, b}, rr, middleware.WithoutBreaker(),
		middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: 0.1, MinRetriesPerSecond: -1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}))
	f.waitReady(t)
	a.set(modeUnavailable)
	b.set(modeUnavailable)
	before := f.gc.Stats()
	const n = 200
	for range n {
		_, err := f.call(t, 5*time.Second)
		require.Equal(t, codes.Unavailable, status.Code(err))
	}
	// Every call the client made paid a tenth of a retry into the budget, waitReady's
	// successful warm-up calls included: they are as much traffic as the failing ones. The
	// bound counts them. (It once read n+n/10+1 and failed with 238 attempts: on a loaded
	// machine the second connection took a while, waitReady made some 180 calls to the first
	// backend meanwhile, and their deposits paid for 18 more retries.) With no floor, each
	// retry spends a whole token, so the retries are exactly the whole tokens deposited.
	total := a.calls.Load() + b.calls.Load()
	bound := int64(n + (n+f.warmups)/10)
	assert.LessOrEqual(t, total, bound, "retries stay within 10 %% of calls (%d warm-up calls)", f.warmups)
	assert.Greater(t, total, int64(n), "the budget allowed some retries")
	d := statsSince(f.gc, before)
	assert.Equal(t, total, d.Attempts)
	assert.Equal(t, total-n, d.Retries)
	assert.Positive(t, d.BudgetRefusals, "the budget refused retries")
}

// NewGRPCClient refuses the HTTP-only settings of shared configurations, naming them, rather
// than ignore them.
func TestNewGRPCClientRefusesHTTPSettings(t *testing.T) {
	static := discovery.MustNewStatic(nil)
	_, err := middleware.NewGRPCClient(nil)
	assert.ErrorContains(t, err, "middleware: NewGRPCClient: resolver is nil")
	for _, tc := range []struct {
		opt  middleware.GRPCClientOption
		want string
	}{
		{middleware.WithBalancer(balancer.Config{HealthCheck: &balancer.HealthCheck{Path: "/healthz"}}), "middleware: WithBalancer: HealthCheck"},
		{middleware.WithRetry(middleware.RetryPolicy{Statuses: []int{503}}), "middleware: WithRetry: RetryPolicy.Statuses"},
		{middleware.WithRetry(middleware.RetryPolicy{RetryNonIdempotent: true}), "middleware: WithRetry: RetryPolicy.RetryNonIdempotent"},
		{nil, "middleware: nil GRPCClientOption"},
	} {
		_, err := middleware.NewGRPCClient(static, tc.opt)
		assert.ErrorContains(t, err, tc.want)
		// The same settings are the HTTP transport's to honour.
		if o, ok := tc.opt.(middleware.TransportOption); ok {
			tr, err := middleware.NewTransport(nil, o)
			require.NoError(t, err, tc.want)
			require.NoError(t, tr.Close())
		}
	}
}

// A gRPC channel cannot send a call where its route says when that is another destination:
// the call fails, it does not go to the channel's service instead.
func TestGRPCRouteToAnotherDestinationFails(t *testing.T) {
	a := newGRPCBackend(t, "a")
	r := grpcRouter(t,
		route.RouteConfig{
			Name:        "elsewhere",
			Match:       route.Match{GRPC: &route.GRPCMatch{Service: testService, Method: unaryName}, Headers: []route.HeaderMatch{{Name: "x-elsewhere", Present: true}}},
			Destination: &route.Destination{Service: "other"},
		},
		route.RouteConfig{
			Name:        "here",
			Match:       route.Match{GRPC: &route.GRPCMatch{Service: testService, Method: unaryName}},
			Destination: &route.Destination{Service: "svc"},
		})
	f := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithRoutes(r))
	ctx := metadata.AppendToOutgoingContext(ctxFor(t, 5*time.Second), "x-elsewhere", "1")
	_, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.ErrorContains(t, err, `route "elsewhere" sends the call to other`)
	assert.Zero(t, a.calls.Load())
	_, err = f.call(t, 5*time.Second)
	require.NoError(t, err, "a route to the channel's own service applies")
	assert.EqualValues(t, 1, a.calls.Load())
	assert.Same(t, r, f.gc.Router())
}

func TestGRPCResolverFollowsStatic(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	f := newGRPCFixture(t, []*grpcBackend{a})
	f.waitReady(t)
	f.static.Set("svc", []discovery.Endpoint{b.endpoint()})
	eventually(t, func() bool {
		resp, err := f.call(t, 5*time.Second)
		return err == nil && resp.GetUsername() == "b"
	}, "calls reach the new endpoint")
	a.reset()
	for range 10 {
		resp, err := f.call(t, 5*time.Second)
		require.NoError(t, err)
		assert.Equal(t, "b", resp.GetUsername())
	}
	assert.Zero(t, a.calls.Load(), "the removed endpoint gets no calls")

	// An empty set fails calls at once with ErrNoEndpoints.
	f.static.Set("svc", nil)
	eventually(t, func() bool {
		_, err := f.call(t, 5*time.Second)
		return errors.Is(err, balancer.ErrNoEndpoints) && status.Code(err) == codes.Unavailable
	}, "no endpoints")
}

func TestGRPCResourceExhaustedSteersAway(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	f := newGRPCFixture(t, []*grpcBackend{a, b}, rr, middleware.WithoutBreaker())
	f.waitReady(t)
	a.pushback.Store(10_000)
	a.set(modeExhausted)
	exhausted := 0
	for range 20 {
		if _, err := f.call(t, 5*time.Second); status.Code(err) == codes.ResourceExhausted {
			exhausted++
		}
	}
	assert.Equal(t, 1, exhausted, "one refusal, then the balancer steers away")
	assert.EqualValues(t, 1, a.calls.Load())
}

func TestGRPCStreamRetry(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	f := newGRPCFixture(t, []*grpcBackend{a, b}, rr, middleware.WithoutBreaker())
	f.waitReady(t)

	recvAll := func() ([]string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := f.client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: make([]*testgrpc.ResponseParameters, 3)})
		if err != nil {
			return nil, err
		}
		var got []string
		for {
			m, err := st.Recv()
			if err == io.EOF {
				return got, nil
			}
			if err != nil {
				return got, err
			}
			got = append(got, string(m.GetPayload().GetBody()))
		}
	}

	// Failing before the first message: retried on the other backend.
	a.set(modeUnavailable)
	for range 4 {
		got, err := recvAll()
		require.NoError(t, err)
		assert.Equal(t, []string{"b", "b", "b"}, got)
	}
	assert.EqualValues(t, 4, b.calls.Load())

	// Failing after the first message: not retried.
	a.reset()
	b.reset()
	a.set(modeStreamFailAfterFirstMsg)
	b.set(modeStreamFailAfterFirstMsg)
	got, err := recvAll()
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Len(t, got, 1)
	assert.EqualValues(t, 1, a.calls.Load()+b.calls.Load(), "not retried after a message")
}

func TestGRPCOutboundLimits(t *testing.T) {
	a := newGRPCBackend(t, "a")
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 0.001, Burst: 2}})
	require.NoError(t, err)
	f := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithRateLimiter(lim))
	var limited int
	for range 4 {
		_, err := f.call(t, 5*time.Second)
		if err != nil {
			assert.Equal(t, codes.ResourceExhausted, status.Code(err))
			assert.ErrorIs(t, err, ratelimit.ErrLimited)
			limited++
		}
	}
	assert.Equal(t, 2, limited)
	assert.EqualValues(t, 2, a.calls.Load())

	bh, err := overload.NewBulkhead(1, 0)
	require.NoError(t, err)
	a.reset()
	a.set(modeHang)
	g := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithConcurrencyLimit(bh))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := g.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		done <- err
	}()
	eventually(t, func() bool { return a.calls.Load() == 1 }, "the first call is in flight")
	_, err = g.call(t, 5*time.Second)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.ErrorIs(t, err, ratelimit.ErrLimited)
	cancel()
	<-done
}

func TestGRPCServerRateLimit(t *testing.T) {
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1, Burst: 2}})
	require.NoError(t, err)
	a := newGRPCBackend(t, "a", serverOptions(t, middleware.WithServerRateLimit(lim, clientIP(t)))...)
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	for range 2 {
		_, err := client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
		require.NoError(t, err)
	}
	var trailer metadata.MD
	_, err = client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}, grpc.Trailer(&trailer))
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.NotEmpty(t, trailer.Get("grpc-retry-pushback-ms"), "the server says when to come back")
	assert.EqualValues(t, 2, a.calls.Load(), "the handler did not run")
}

// One WithServerRateLimit, one key function, serves both servers: an HTTP request's header
// and a gRPC call's metadata are one key, counted in one bucket.
func TestServerRateLimitSharedByHTTPAndGRPC(t *testing.T) {
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 0.001, Burst: 2}})
	require.NoError(t, err)
	opt := middleware.WithServerRateLimit(lim, middleware.KeyByHeader("X-Api-Key"))
	a := newGRPCBackend(t, "a", serverOptions(t, opt)...)
	h, err := middleware.NewHandler(okHandler, opt)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(key string) int {
		req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		req.Header.Set("X-Api-Key", key)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		drain(resp)
		return resp.StatusCode
	}
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	call := func(key string) error {
		ctx := metadata.AppendToOutgoingContext(ctxFor(t, 10*time.Second), "x-api-key", key)
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	}

	assert.Equal(t, http.StatusOK, get("k1"))
	require.NoError(t, call("k1"), "the gRPC call takes k1's second token")
	assert.Equal(t, http.StatusTooManyRequests, get("k1"), "k1's bucket is shared: spent")
	err = call("k1")
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	require.NoError(t, call("k2"), "another key has its own bucket")
	assert.EqualValues(t, 2, a.calls.Load())
}

// KeyByClientIP reads a gRPC call's x-forwarded-for metadata only from a trusted peer, as it
// reads an HTTP request's header.
func TestGRPCKeyByClientIPTrustsOnlyTrustedPeers(t *testing.T) {
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{
		Default:   ratelimit.Quota{Rate: 1000, Burst: 1000},
		Overrides: map[string]ratelimit.Quota{"203.0.113.9": {}}, // refused outright
	})
	require.NoError(t, err)
	forwarded := func(trusted ...string) error {
		a := newGRPCBackend(t, "a", serverOptions(t, middleware.WithServerRateLimit(lim, clientIP(t, trusted...)))...)
		conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer conn.Close()
		ctx := metadata.AppendToOutgoingContext(ctxFor(t, 10*time.Second), "x-forwarded-for", "203.0.113.9")
		_, err = testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	}
	require.NoError(t, forwarded(), "an untrusted peer's x-forwarded-for is ignored: keyed by 127.0.0.1")
	err = forwarded("127.0.0.1")
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "a trusted proxy's x-forwarded-for names the client")
	assert.ErrorContains(t, err, "rate limit")
}

func TestGRPCServerLoadShedding(t *testing.T) {
	bh, err := overload.NewBulkhead(1, 0)
	require.NoError(t, err)
	a := newGRPCBackend(t, "a", serverOptions(t, middleware.WithLoadShedding(bh))...)
	a.set(modeHang)
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	}()
	eventually(t, func() bool { return a.calls.Load() == 1 }, "the first call holds the only slot")
	_, err = client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.EqualValues(t, 1, a.calls.Load())
	cancel()
	<-done
}

func TestGRPCServerRefusesExpiredWork(t *testing.T) {
	// An interceptor before ours stands for time spent queued in the server: it waits until
	// the server's own deadline has passed (not merely until the context ends: the client
	// may cancel first, and a caller that went away is refused with CANCELED), then hands
	// the call on and reports what came back.
	results := make(chan error, 1)
	queued := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		d, _ := ctx.Deadline()
		time.Sleep(time.Until(d) + time.Millisecond)
		resp, err := h(ctx, req)
		results <- err
		return resp, err
	})
	a := newGRPCBackend(t, "a", append([]grpc.ServerOption{queued}, serverOptions(t)...)...)
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	select {
	case err := <-results:
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "refused by the server interceptor")
	case <-time.After(10 * time.Second):
		t.Fatal("the server never finished the call")
	}
	assert.Zero(t, a.calls.Load(), "the handler never ran")
}

// One of three real servers stops (grpc.Server.Stop: its listener and connections close, as
// when the process dies) while calls flow. The calls in flight on it fail with UNAVAILABLE
// before any response and are retried elsewhere; the endpoint leaves the READY set, so no
// later attempt is sent to it.
func TestGRPCServerStopsMidLoad(t *testing.T) {
	backends := []*grpcBackend{newGRPCBackend(t, "a"), newGRPCBackend(t, "b"), newGRPCBackend(t, "c")}
	for _, b := range backends {
		b.delay.Store(int64(2 * time.Millisecond)) // so that calls are in flight when c stops
		b.set(modeSlow)
	}
	dead := backends[2]
	var log attemptLog
	// The defaults: P2C over peak EWMA with outlier ejection, and a breaker per endpoint.
	f := newGRPCFixtureWith(t, backends, []grpc.DialOption{grpc.WithChainUnaryInterceptor(log.intercept)})
	f.waitReady(t)

	const total, workers, stopAt = 3000, 6, 1000
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	stopMark := make(chan int, 1)
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				if i == stopAt {
					stopMark <- log.mark()
					dead.srv.Stop()
				}
				if _, err := f.call(t, 5*time.Second); err != nil {
					failed.Add(1)
					t.Logf("call %d failed: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	mark := <-stopMark
	picked, pickedFailed := log.since(mark, dead.addr)
	t.Logf("after the stop: %d attempts picked the dead server (%d failed), %d calls failed of %d", picked, pickedFailed, failed.Load(), total)
	success := float64(total-failed.Load()) / total
	assert.GreaterOrEqual(t, success, 0.999, "idempotent calls succeed through the stop")
	assert.Positive(t, dead.handled.Load(), "the dead server took its share before it stopped")

	// Once the channel has seen the connection close, the dead endpoint gets no attempt.
	mark = log.mark()
	for range 300 {
		_, err := f.call(t, 5*time.Second)
		require.NoError(t, err)
	}
	picked, _ = log.since(mark, dead.addr)
	assert.Zero(t, picked, "no attempt went to the stopped server")
	for _, b := range backends[:2] {
		assert.Positive(t, b.handled.Load(), "%s still serves", b.name)
	}
}

// A new endpoint set from discovery reaches the channel in one update, and the calls in
// flight on an endpoint that left the set finish there: the channel drains the old
// connection (GOAWAY) instead of cutting it.
func TestGRPCEndpointChangeKeepsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(a, b *grpcBackend) []*grpcBackend
	}{
		{"A to B", func(a, _ *grpcBackend) []*grpcBackend { return []*grpcBackend{a} }},
		{"A+B to B", func(a, b *grpcBackend) []*grpcBackend { return []*grpcBackend{a, b} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
			f := newGRPCFixture(t, tc.before(a, b), rr, middleware.WithoutBreaker())
			f.waitReady(t)
			a.delay.Store(int64(time.Second))
			a.set(modeSlow)

			// Calls until four are in flight on A (round robin sends every other one to B,
			// which answers at once).
			type result struct {
				resp *testgrpc.SimpleResponse
				err  error
			}
			const inFlight = 4
			results := make(chan result, 2*inFlight)
			started := 0
			for a.calls.Load() < inFlight {
				started++
				go func() {
					resp, err := f.call(t, 10*time.Second)
					results <- result{resp, err}
				}()
				want := a.calls.Load() + 1
				eventually(t, func() bool { return a.calls.Load()+b.calls.Load() >= int64(started) && a.calls.Load() <= want }, "the call arrived")
			}
			require.EqualValues(t, inFlight, a.calls.Load())
			require.Zero(t, a.handled.Load(), "the calls on A are still in flight")

			// One update; the resolver passes it on asynchronously, so a call made at once
			// may still see the old set.
			f.static.Set("svc", []discovery.Endpoint{b.endpoint()})
			eventually(t, func() bool {
				resp, err := f.call(t, 5*time.Second)
				if err != nil {
					t.Logf("call after the update: %v", err)
				}
				return err == nil && resp.GetUsername() == "b"
			}, "new calls reach B")
			aCalls := a.calls.Load()
			for range 20 {
				resp, err := f.call(t, 5*time.Second)
				require.NoError(t, err)
				assert.Equal(t, "b", resp.GetUsername())
			}
			assert.Equal(t, aCalls, a.calls.Load(), "no new call reached A")

			onA := 0
			for range started {
				r := <-results
				require.NoError(t, r.err, "an in-flight call was dropped")
				if r.resp.GetUsername() == "a" {
					onA++
				}
			}
			assert.Equal(t, inFlight, onA, "the calls in flight on A finished on A")
			assert.GreaterOrEqual(t, a.handled.Load(), int64(inFlight), "A completed them")
		})
	}
}

// A bidirectional stream that fails before the server's first message is retried on another
// endpoint with what the client had sent replayed; one that received headers or a message is
// not.
func TestGRPCStreamRetryReplaysSent(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	f := newGRPCFixture(t, []*grpcBackend{a, b}, rr, middleware.WithoutBreaker())
	f.waitReady(t)
	duplex := func(msgs ...string) ([]string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := f.client.FullDuplexCall(ctx)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			// io.EOF says the stream ended: Recv tells how (or, retried, carries on).
			_ = st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(m)}})
		}
		if err := st.CloseSend(); err != nil {
			return nil, err
		}
		var got []string
		for {
			m, err := st.Recv()
			if err == io.EOF {
				return got, nil
			}
			if err != nil {
				return got, err
			}
			got = append(got, string(m.GetPayload().GetBody()))
		}
	}

	// A reads the first message and fails without answering: B gets both messages again.
	a.set(modeUnavailable)
	for range 4 {
		got, err := duplex("1", "2")
		require.NoError(t, err)
		assert.Equal(t, []string{"b:1", "b:2"}, got)
	}
	assert.Positive(t, a.calls.Load(), "round robin opened some streams on A first")
	assert.EqualValues(t, 4, b.calls.Load(), "each stream ended on B once")
	assert.EqualValues(t, 4, b.handled.Load())

	// Headers arrived, then UNAVAILABLE: not retried.
	a.reset()
	b.reset()
	a.set(modeHeadersThenUnavailable)
	b.set(modeHeadersThenUnavailable)
	got, err := duplex("1", "2")
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Empty(t, got)
	assert.EqualValues(t, 1, a.calls.Load()+b.calls.Load(), "headers arrived: not retried")

	// One message arrived, then UNAVAILABLE: not retried.
	a.reset()
	b.reset()
	a.set(modeStreamFailAfterFirstMsg)
	b.set(modeStreamFailAfterFirstMsg)
	got, err = duplex("1", "2")
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Len(t, got, 1)
	assert.EqualValues(t, 1, a.calls.Load()+b.calls.Load(), "a message arrived: not retried")
}

// grpcRouter returns a router over routes, failing the test on a bad config.
func grpcRouter(t *testing.T, routes ...route.RouteConfig) *route.Router {
	t.Helper()
	r, err := route.NewRouter(route.Config{Routes: routes})
	require.NoError(t, err)
	return r
}

const (
	unaryMethod  = "/grpc.testing.TestService/UnaryCall"
	testService  = "grpc.testing.TestService"
	unaryName    = "UnaryCall"
	streamMethod = "StreamingOutputCall"
)

func TestGRPCRouteFaultAbort(t *testing.T) {
	a := newGRPCBackend(t, "a")
	r := grpcRouter(t,
		route.RouteConfig{
			Name:  "abort-unary",
			Match: route.Match{GRPC: &route.GRPCMatch{Service: testService, Method: unaryName}},
			Fault: &route.Fault{Abort: &route.AbortFault{GRPCCode: int(codes.PermissionDenied)}},
		},
		route.RouteConfig{
			Name:  "abort-stream-for-canaries",
			Match: route.Match{GRPC: &route.GRPCMatch{Service: testService, Method: streamMethod}, Headers: []route.HeaderMatch{{Name: "X-Group", Exact: "canary"}}},
			Fault: &route.Fault{Abort: &route.AbortFault{}, AllCallers: true}, // default: UNAVAILABLE
		})
	f := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithRoutes(r))
	_, err := f.call(t, 5*time.Second)
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "the configured code")
	assert.ErrorIs(t, err, route.ErrAborted)
	var abort *route.AbortError
	assert.True(t, errors.As(err, &abort) && abort.GRPCCode == int(codes.PermissionDenied), "errors.As finds the *route.AbortError")
	assert.Zero(t, a.calls.Load(), "no attempt reached the server")

	// The stream route matches by method and metadata.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = f.client.StreamingOutputCall(metadata.AppendToOutgoingContext(ctx, "x-group", "canary"), &testgrpc.StreamingOutputCallRequest{})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.ErrorIs(t, err, route.ErrAborted)
	assert.Zero(t, a.calls.Load())
	st, err := f.client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	require.NoError(t, err)
	_, err = st.Recv()
	require.NoError(t, err, "without the metadata, the stream is not aborted")
	assert.EqualValues(t, 1, a.calls.Load())
}

func TestGRPCRouteFaultDelayHonoursContext(t *testing.T) {
	a := newGRPCBackend(t, "a")
	r := grpcRouter(t, route.RouteConfig{
		Match: route.Match{GRPC: &route.GRPCMatch{Service: testService}},
		Fault: &route.Fault{Delay: &route.DelayFault{Fixed: route.Duration(10 * time.Second)}},
	})
	f := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithRoutes(r))
	start := time.Now()
	_, err := f.call(t, 100*time.Millisecond)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 10*time.Second, "the delay ended with the call's context")
	assert.Zero(t, a.calls.Load())

	// A short delay is waited, then the call is sent.
	require.NoError(t, r.Update(route.Config{Routes: []route.RouteConfig{{
		Match: route.Match{GRPC: &route.GRPCMatch{Service: testService}},
		Fault: &route.Fault{Delay: &route.DelayFault{Fixed: route.Duration(50 * time.Millisecond)}},
	}}}))
	start = time.Now()
	_, err = f.call(t, 5*time.Second)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	assert.EqualValues(t, 1, a.calls.Load())
}

func TestGRPCRouteTimeouts(t *testing.T) {
	a := newGRPCBackend(t, "a")
	r := grpcRouter(t,
		route.RouteConfig{
			Match:   route.Match{GRPC: &route.GRPCMatch{Service: testService, Method: unaryName}, Headers: []route.HeaderMatch{{Name: "x-attempt", Present: true}}},
			Timeout: route.Duration(3 * time.Second), AttemptTimeout: route.Duration(200 * time.Millisecond),
		},
		route.RouteConfig{
			Match:   route.Match{GRPC: &route.GRPCMatch{Service: testService, Method: unaryName}},
			Timeout: route.Duration(300 * time.Millisecond),
		})
	f := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithTimeout(5*time.Second), middleware.WithRoutes(r))
	f.waitReady(t)

	_, err := f.client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
	require.NoError(t, err)
	left, ok := a.lastDeadline()
	require.True(t, ok, "the server saw a deadline")
	assert.LessOrEqual(t, left, 300*time.Millisecond, "the route's timeout, not the client's 5 s")
	assert.Greater(t, left, 100*time.Millisecond)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-attempt", "1")
	_, err = f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	require.NoError(t, err)
	left, _ = a.lastDeadline()
	assert.LessOrEqual(t, left, 200*time.Millisecond, "the route's attempt timeout")

	// Streams are not matched by the unary route: the client's timeout applies.
	st, err := f.client.StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{})
	require.NoError(t, err)
	_, err = st.Recv()
	require.NoError(t, err)
	left, _ = a.lastDeadline()
	assert.Greater(t, left, 4*time.Second)
}

func TestGRPCRouteRetryOverrides(t *testing.T) {
	bad, good := newGRPCBackend(t, "bad"), newGRPCBackend(t, "good")
	r := grpcRouter(t,
		route.RouteConfig{
			Name:  "no-retry",
			Match: route.Match{GRPC: &route.GRPCMatch{Service: testService, Method: unaryName}, Headers: []route.HeaderMatch{{Name: "x-no-retry", Present: true}}},
			Retry: &route.RetryOverride{Disable: true},
		},
		route.RouteConfig{
			Name:  "hedge",
			Match: route.Match{GRPC: &route.GRPCMatch{Service: testService, Method: unaryName}, Headers: []route.HeaderMatch{{Name: "x-hedge", Present: true}}},
			Hedge: &route.HedgeOverride{Delay: route.Duration(20 * time.Millisecond)},
		})
	f := newGRPCFixture(t, []*grpcBackend{bad, good}, rr, middleware.WithoutBreaker(), middleware.WithRoutes(r))
	f.waitReady(t)
	bad.set(modeUnavailable)

	call := func(key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if key != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, key, "1")
		}
		_, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	}
	// Retry disabled by the route: the calls round robin sends to the bad backend fail.
	failures := 0
	for range 6 {
		if err := call("x-no-retry"); err != nil {
			assert.Equal(t, codes.Unavailable, status.Code(err))
			failures++
		}
	}
	assert.Equal(t, 3, failures, "not retried")
	assert.EqualValues(t, 6, bad.calls.Load()+good.calls.Load(), "one attempt per call")

	// Without the metadata, the client's retries apply.
	for range 6 {
		require.NoError(t, call(""))
	}

	// The hedging route: a hung first attempt is hedged to the good backend.
	bad.reset()
	good.reset()
	bad.set(modeHang)
	for range 4 {
		require.NoError(t, call("x-hedge"))
	}
	assert.Positive(t, bad.calls.Load(), "some first attempts went to the hung backend")
	eventually(t, func() bool { return bad.cancelled.Load() == bad.calls.Load() }, "the hedged losers were cancelled")
}

// As for HTTP, with a quantile the hedge delay of unary calls follows the service's latency:
// once history says calls take ~30 ms, a call is hedged only when slower than nearly all of
// them, where a fixed 1 ms delay hedges every call.
func TestGRPCHedgeDelayFollowsLatencyQuantile(t *testing.T) {
	run := func(quantile float64) int64 {
		a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
		f := newGRPCFixture(t, []*grpcBackend{a, b}, middleware.WithoutBreaker(),
			middleware.WithHedge(middleware.HedgePolicy{Delay: time.Millisecond, Quantile: quantile}),
			middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: 1}))
		f.waitReady(t)
		for _, be := range f.backends {
			be.delay.Store(int64(30 * time.Millisecond))
			be.set(modeSlow)
		}
		for range 60 { // history
			_, err := f.call(t, 10*time.Second)
			require.NoError(t, err)
		}
		before := f.gc.Stats().Hedges
		for range 40 {
			_, err := f.call(t, 10*time.Second)
			require.NoError(t, err)
		}
		return f.gc.Stats().Hedges - before
	}
	fixed, adaptive := run(0), run(0.99)
	t.Logf("hedges over 40 calls: fixed 1ms delay %d, p99 delay %d", fixed, adaptive)
	assert.GreaterOrEqual(t, fixed, int64(35))
	assert.LessOrEqual(t, adaptive, int64(10))
}

// A gRPC client carries out its routes' destinations, as the HTTP transport does: a split
// between two subsets of the channel's service reaches both, and a route to another service
// reaches that service, over channels the client dials itself with the options its own
// channel was made with.
func TestGRPCRoutesToOtherDestinations(t *testing.T) {
	v1, v2, other := newGRPCBackend(t, "v1"), newGRPCBackend(t, "v2"), newGRPCBackend(t, "other")
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"svc": {
			{Addr: v1.addr, Meta: map[string]string{"version": "v1"}},
			{Addr: v2.addr, Meta: map[string]string{"version": "v2"}},
		},
		"other": {other.endpoint()},
	})
	r := grpcRouter(t,
		route.RouteConfig{
			Name:        "elsewhere",
			Match:       route.Match{GRPC: &route.GRPCMatch{Service: testService}, Headers: []route.HeaderMatch{{Name: "x-elsewhere", Present: true}}},
			Destination: &route.Destination{Service: "other"},
		},
		route.RouteConfig{
			Name:  "split",
			Match: route.Match{GRPC: &route.GRPCMatch{Service: testService}},
			Split: []route.WeightedDestination{
				{Destination: route.Destination{Service: "svc", Subset: route.Subset{Meta: map[string]string{"version": "v1"}}}, Weight: 1},
				{Destination: route.Destination{Service: "svc", Subset: route.Subset{Meta: map[string]string{"version": "v2"}}}, Weight: 1},
			},
		})
	gc := newGRPCClient(t, static, middleware.WithRoutes(r), middleware.WithGRPCStatsHandler(nil))
	conn, err := gc.NewClient("svc", grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	client := testgrpc.NewTestServiceClient(conn)

	const n = 200
	for range n {
		_, err := client.UnaryCall(ctxFor(t, 5*time.Second), &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		require.NoError(t, err)
	}
	assert.EqualValues(t, n, v1.calls.Load()+v2.calls.Load())
	assert.InDelta(t, n/2, v1.calls.Load(), n/5, "the split's arms share the calls (v1 %d, v2 %d)", v1.calls.Load(), v2.calls.Load())
	assert.Zero(t, other.calls.Load())

	ctx := metadata.AppendToOutgoingContext(ctxFor(t, 5*time.Second), "x-elsewhere", "1")
	resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
	require.NoError(t, err)
	assert.Equal(t, "other", resp.GetUsername(), "the route's destination answered")
	assert.EqualValues(t, 1, other.calls.Load())

	// Streams follow the routes too.
	sctx := metadata.AppendToOutgoingContext(ctxFor(t, 5*time.Second), "x-elsewhere", "1")
	stream, err := client.StreamingOutputCall(sctx, &testgrpc.StreamingOutputCallRequest{}, grpc.WaitForReady(true))
	require.NoError(t, err)
	msg, err := stream.Recv()
	require.NoError(t, err)
	assert.Equal(t, "other", string(msg.GetPayload().GetBody()), "the stream went to the route's destination")
	assert.EqualValues(t, 2, other.calls.Load())
}
