package middleware_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/tracing"
)

// gatedBackend is a loopback backend whose handler holds every request until open is
// called (or the request ends); first, when set, answers instead the first request that
// carries each X-Id.
type gatedBackend struct {
	*faultbackend.Backend
	gate chan struct{}
	once sync.Once
}

func newGatedBackend(t *testing.T, failFirst bool) *gatedBackend {
	g := &gatedBackend{Backend: faultbackend.New(t), gate: make(chan struct{})}
	t.Cleanup(g.open) // before the backend's Close, which the cleanups run after
	var mu sync.Mutex
	seen := map[string]bool{}
	g.SetHandler(func(w http.ResponseWriter, r *http.Request) {
		if failFirst {
			mu.Lock()
			first := !seen[r.Header.Get("X-Id")]
			seen[r.Header.Get("X-Id")] = true
			mu.Unlock()
			if first {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		}
		select {
		case <-g.gate:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "ok")
	})
	return g
}

func (g *gatedBackend) open() { g.once.Do(func() { close(g.gate) }) }

// limitApp is a Transport with destination limits over one gated backend, reporting to its
// own meter provider.
type limitApp struct {
	tr     *middleware.Transport
	client *http.Client
	reader *sdkmetric.ManualReader
}

func newLimitApp(t *testing.T, addr string, lim balancer.Limits, opts ...middleware.TransportOption) *limitApp {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: addr}}})
	base := &http.Transport{MaxIdleConnsPerHost: 16}
	all := append([]middleware.TransportOption{
		middleware.WithResolver(static), middleware.WithMeterProvider(mp), middleware.WithoutBreaker(),
		middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}),
		middleware.WithLimits(lim),
	}, opts...)
	tr, err := middleware.NewTransport(base, all...)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, tr.Close())
		base.CloseIdleConnections()
	})
	return &limitApp{tr: tr, client: &http.Client{Transport: tr}, reader: reader}
}

type limitResult struct {
	code int
	err  error
}

// fire sends n GETs to http://svc/ at once, each with its own X-Id, and returns a channel of
// their results.
func (a *limitApp) fire(t *testing.T, n int) <-chan limitResult {
	ctx := ctxFor(t, 20*time.Second)
	out := make(chan limitResult, n)
	for i := range n {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
			req.Header.Set("X-Id", string(rune('a'+i)))
			resp, err := a.client.Do(req)
			if err != nil {
				out <- limitResult{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			out <- limitResult{code: resp.StatusCode}
		}()
	}
	return out
}

// collect takes n results from out.
func collect(t *testing.T, out <-chan limitResult, n int) []limitResult {
	t.Helper()
	var rs []limitResult
	for range n {
		select {
		case r := <-out:
			rs = append(rs, r)
		case <-time.After(15 * time.Second):
			t.Fatalf("only %d of %d results", len(rs), n)
		}
	}
	return rs
}

// overflows returns the proxyless.destination.overflows count of each limit.
func (a *limitApp) overflows(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, a.reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != tracing.MetricOverflows {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := dp.Attributes.Value(tracing.KeyLimit)
				dest, _ := dp.Attributes.Value(tracing.KeyDestination)
				assert.Equal(t, attribute.StringValue("svc"), dest)
				out[v.AsString()] += dp.Value
			}
		}
	}
	return out
}

// checkRefusals asserts that rs are all errors matching want (and ErrOverflow, and no other
// limit).
func checkRefusals(t *testing.T, rs []limitResult, want error) {
	t.Helper()
	for _, r := range rs {
		require.Error(t, r.err)
		assert.ErrorIs(t, r.err, want)
		assert.ErrorIs(t, r.err, balancer.ErrOverflow)
		for _, other := range []error{balancer.ErrMaxConnections, balancer.ErrMaxPendingRequests, balancer.ErrMaxRequests, balancer.ErrMaxRetries} {
			if other != want {
				assert.NotErrorIs(t, r.err, other)
			}
		}
	}
}

// checkServed asserts that rs are all 200s.
func checkServed(t *testing.T, rs []limitResult) {
	t.Helper()
	for _, r := range rs {
		require.NoError(t, r.err)
		assert.Equal(t, http.StatusOK, r.code)
	}
}

// MaxRequests 5 with 10 requests held by the server: exactly 5 reach it and 5 are refused
// with ErrMaxRequests, each counted once; once the 5 are answered, slots are free again.
func TestLimitMaxRequests(t *testing.T) {
	b := newGatedBackend(t, false)
	app := newLimitApp(t, b.Addr(), balancer.Limits{MaxRequests: 5}, middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	out := app.fire(t, 10)
	checkRefusals(t, collect(t, out, 5), balancer.ErrMaxRequests)
	require.NoError(t, b.Wait(ctxFor(t, 10*time.Second), func(s faultbackend.Stats) bool { return s.Attempts >= 5 }))
	assert.EqualValues(t, 5, b.Attempts())
	assert.Equal(t, map[string]int64{"requests": 5}, app.overflows(t))
	assert.EqualValues(t, 5, app.tr.Stats().Overflows)
	b.open()
	checkServed(t, collect(t, out, 5))
	checkServed(t, collect(t, app.fire(t, 5), 5))
	assert.EqualValues(t, 10, b.Attempts())
	assert.Equal(t, map[string]int64{"requests": 5}, app.overflows(t))
}

// MaxConnections 5 with no pending requests allowed: of 10 requests held by an HTTP/1.1
// server, each needing its own connection, 5 get one and 5 are refused with
// ErrMaxConnections. Later requests reuse the 5 connections.
func TestLimitMaxConnections(t *testing.T) {
	b := newGatedBackend(t, false)
	app := newLimitApp(t, b.Addr(), balancer.Limits{MaxConnections: 5, MaxPendingRequests: -1}, middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	out := app.fire(t, 10)
	checkRefusals(t, collect(t, out, 5), balancer.ErrMaxConnections)
	require.NoError(t, b.Wait(ctxFor(t, 10*time.Second), func(s faultbackend.Stats) bool { return s.Attempts >= 5 }))
	assert.EqualValues(t, 5, b.Attempts())
	assert.EqualValues(t, 5, b.NewConnections())
	assert.Equal(t, map[string]int64{"connections": 5}, app.overflows(t))
	assert.EqualValues(t, 5, app.tr.Stats().Overflows)
	b.open()
	checkServed(t, collect(t, out, 5))
	checkServed(t, collect(t, app.fire(t, 5), 5))
	assert.EqualValues(t, 5, b.NewConnections(), "the idle connections are reused")
	assert.Equal(t, map[string]int64{"connections": 5}, app.overflows(t))
}

// MaxConnections 2 and MaxPendingRequests 3: of 10 held requests, 2 reach the server, 3 wait
// for a connection and 5 are refused with ErrMaxPendingRequests. Once the server answers, the
// 3 waiting ones are served on the 2 connections.
func TestLimitMaxPendingRequests(t *testing.T) {
	b := newGatedBackend(t, false)
	app := newLimitApp(t, b.Addr(), balancer.Limits{MaxConnections: 2, MaxPendingRequests: 3}, middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	out := app.fire(t, 10)
	checkRefusals(t, collect(t, out, 5), balancer.ErrMaxPendingRequests)
	require.NoError(t, b.Wait(ctxFor(t, 10*time.Second), func(s faultbackend.Stats) bool { return s.Attempts >= 2 }))
	assert.EqualValues(t, 2, b.Attempts())
	assert.Equal(t, map[string]int64{"pending_requests": 5}, app.overflows(t))
	b.open()
	checkServed(t, collect(t, out, 5))
	assert.EqualValues(t, 5, b.Attempts())
	assert.EqualValues(t, 2, b.NewConnections())
	assert.Equal(t, map[string]int64{"pending_requests": 5}, app.overflows(t))
}

// A pending request whose caller gives up stops waiting and frees its place: with one
// connection busy and one place to wait, requests that time out one after another each get
// to wait (the place frees a moment after the caller returns, so one may find it still taken
// and be refused: every refusal is counted once).
func TestLimitPendingCallerGivesUp(t *testing.T) {
	b := newGatedBackend(t, false)
	app := newLimitApp(t, b.Addr(), balancer.Limits{MaxConnections: 1, MaxPendingRequests: 1}, middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	held := app.fire(t, 1)
	require.NoError(t, b.Wait(ctxFor(t, 10*time.Second), func(s faultbackend.Stats) bool { return s.Attempts >= 1 }))
	waited, refused := 0, 0
	for try := 0; waited < 3 && try < 100; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
		_, err := app.client.Do(req)
		cancel()
		require.Error(t, err)
		if errors.Is(err, balancer.ErrMaxPendingRequests) {
			refused++
			continue
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
		waited++
	}
	assert.Equal(t, 3, waited)
	assert.Less(t, refused, 50)
	assert.Equal(t, int64(refused), app.overflows(t)["pending_requests"])
	assert.EqualValues(t, 1, b.Attempts())
	b.open()
	checkServed(t, collect(t, held, 1))
}

// MaxRetries 5: 10 requests whose first attempt gets a 503 are retried, the retries held by
// the server; exactly 5 retries reach it, and the 5 refused ones return the 503 they would
// have replaced, each refusal counted once.
func TestLimitMaxRetries(t *testing.T) {
	b := newGatedBackend(t, true)
	app := newLimitApp(t, b.Addr(), balancer.Limits{MaxRetries: 5}, middleware.WithRetry(middleware.RetryPolicy{
		MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, BudgetRatio: 1, MinRetriesPerSecond: 1000,
	}))
	out := app.fire(t, 10)
	for _, r := range collect(t, out, 5) {
		require.NoError(t, r.err)
		assert.Equal(t, http.StatusServiceUnavailable, r.code)
	}
	require.NoError(t, b.Wait(ctxFor(t, 10*time.Second), func(s faultbackend.Stats) bool { return s.Attempts >= 15 }))
	assert.EqualValues(t, 15, b.Attempts())
	assert.Equal(t, map[string]int64{"retries": 5}, app.overflows(t))
	b.open()
	checkServed(t, collect(t, out, 5))
	assert.EqualValues(t, 15, b.Attempts())
}

func TestLimitOptionErrors(t *testing.T) {
	_, err := middleware.NewTransport(nil, middleware.WithLimits(balancer.Limits{MaxRequests: -1}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Limits.MaxRequests")
	_, err = middleware.NewTransport(roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("x") }),
		middleware.WithLimits(balancer.Limits{MaxConnections: 1}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MaxConnections")
	_, err = middleware.NewGRPCClient(discovery.MustNewStatic(nil), middleware.WithLimits(balancer.Limits{MaxConnections: 1}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MaxConnections")
	_, err = middleware.NewGRPCClient(discovery.MustNewStatic(nil), middleware.WithLimits(balancer.Limits{MaxRetries: -2}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Limits.MaxRetries")
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A gRPC client's MaxRequests 5 with 10 calls the server holds: exactly 5 reach it, 5 fail
// with RESOURCE_EXHAUSTED matching ErrMaxRequests, each counted once. A stream holds a slot
// for its whole life.
func TestGRPCLimitMaxRequests(t *testing.T) {
	a := newGRPCBackend(t, "a")
	a.set(modeHang)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	f := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithLimits(balancer.Limits{MaxRequests: 5}),
		middleware.WithMeterProvider(mp), middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
			errs <- err
		}()
	}
	for range 5 {
		select {
		case err := <-errs:
			assert.Equal(t, codes.ResourceExhausted, status.Code(err))
			assert.ErrorIs(t, err, balancer.ErrMaxRequests)
		case <-time.After(10 * time.Second):
			t.Fatal("no refusal")
		}
	}
	eventually(t, func() bool { return a.calls.Load() == 5 }, "5 calls reach the server")
	assert.EqualValues(t, 5, a.calls.Load())
	app := &limitApp{reader: reader}
	assert.Equal(t, map[string]int64{"requests": 5}, app.overflows(t))
	cancel()
	for range 5 {
		<-errs
	}

	// Once they are over, a stream takes a slot until it ends.
	a.set(modeOK)
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	var streams []testgrpc.TestService_FullDuplexCallClient
	for range 5 {
		st, err := f.client.FullDuplexCall(sctx)
		require.NoError(t, err)
		streams = append(streams, st)
	}
	_, err := f.call(t, 5*time.Second)
	assert.ErrorIs(t, err, balancer.ErrMaxRequests)
	_, err = f.client.FullDuplexCall(sctx)
	assert.ErrorIs(t, err, balancer.ErrMaxRequests)
	require.NoError(t, streams[0].CloseSend())
	_, err = streams[0].Recv()
	require.ErrorIs(t, err, io.EOF)
	_, err = f.call(t, 5*time.Second)
	require.NoError(t, err)
	for _, st := range streams[1:] {
		require.NoError(t, st.CloseSend())
		_, _ = st.Recv()
	}
	assert.Equal(t, map[string]int64{"requests": 7}, app.overflows(t))
	assert.EqualValues(t, 7, f.gc.Stats().Overflows)
}

// A gRPC client's MaxRetries 5: 10 calls whose first attempt fails UNAVAILABLE are retried,
// the retries held by the server; exactly 5 retries reach it and the 5 refused calls return
// the UNAVAILABLE they would have replaced, each refusal counted once.
func TestGRPCLimitMaxRetries(t *testing.T) {
	var firsts atomic.Int64
	failFirst := grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("grpc-previous-rpc-attempts")) == 0 {
			firsts.Add(1)
			return nil, status.Error(codes.Unavailable, "first attempt")
		}
		return h(ctx, req)
	})
	a := newGRPCBackend(t, "a", failFirst)
	a.set(modeHang)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	f := newGRPCFixture(t, []*grpcBackend{a}, middleware.WithLimits(balancer.Limits{MaxRetries: 5}),
		middleware.WithMeterProvider(mp), middleware.WithoutBreaker(),
		middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}),
		middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, BudgetRatio: 1, MinRetriesPerSecond: 1000}))
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
			errs <- err
		}()
	}
	for range 5 {
		select {
		case err := <-errs:
			assert.Equal(t, codes.Unavailable, status.Code(err))
			assert.Contains(t, status.Convert(err).Message(), "first attempt")
		case <-time.After(10 * time.Second):
			t.Fatal("no refused retry")
		}
	}
	eventually(t, func() bool { return a.calls.Load() == 5 }, "5 retries reach the server")
	assert.EqualValues(t, 5, a.calls.Load())
	assert.EqualValues(t, 10, firsts.Load())
	assert.Equal(t, map[string]int64{"retries": 5}, (&limitApp{reader: reader}).overflows(t))
	cancel()
	for range 5 {
		<-errs
	}
}
