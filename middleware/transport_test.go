package middleware_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a proxyless client for one service "svc" over real loopback backends.
type fixture struct {
	backends []*faultbackend.Backend
	static   *discovery.Static
	base     *http.Transport
	tr       *middleware.Transport
	client   *http.Client
}

func newFixture(t *testing.T, n int, opts ...middleware.TransportOption) *fixture {
	t.Helper()
	f := &fixture{}
	eps := make([]discovery.Endpoint, n)
	for i := range n {
		b := faultbackend.New(t)
		f.backends = append(f.backends, b)
		eps[i] = discovery.Endpoint{Addr: b.Addr()}
	}
	f.static = discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps})
	f.base = &http.Transport{MaxIdleConnsPerHost: 64}
	tr, err := middleware.NewTransport(f.base, append([]middleware.TransportOption{middleware.WithResolver(f.static)}, opts...)...)
	require.NoError(t, err)
	f.tr = tr
	f.client = &http.Client{Transport: tr}
	t.Cleanup(func() {
		require.NoError(t, tr.Close())
		f.base.CloseIdleConnections()
	})
	return f
}

// get sends GET http://svc/ and returns the status and body (0 and the error on failure).
func (f *fixture) get(ctx context.Context) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func (f *fixture) attempts() (total int64) {
	for _, b := range f.backends {
		total += b.Attempts()
	}
	return total
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestOptionsErrorsNameTheOption(t *testing.T) {
	for _, tc := range []struct {
		opt  middleware.TransportOption
		want string
	}{
		{middleware.WithTimeout(-time.Second), "WithTimeout"},
		{middleware.WithAttemptTimeout(-time.Second), "WithAttemptTimeout"},
		{middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: 1.5}), "BudgetRatio"},
		{middleware.WithRetry(middleware.RetryPolicy{MaxRetries: -1}), "MaxRetries"},
		{middleware.WithRetry(middleware.RetryPolicy{Statuses: []int{42}}), "Statuses"},
		{middleware.WithRetry(middleware.RetryPolicy{BackoffBase: time.Second, BackoffMax: time.Millisecond}), "BackoffMax"},
		{middleware.WithHedge(middleware.HedgePolicy{}), "HedgePolicy.Delay"},
		{middleware.WithHedge(middleware.HedgePolicy{Delay: time.Millisecond, Quantile: 1}), "HedgePolicy.Quantile"},
		{middleware.WithBalancer(balancer.Config{PanicThreshold: 140}), "PanicThreshold"},
		{middleware.WithBreaker(breaker.Config{FailureRateThreshold: 140}), "FailureRateThreshold"},
		{middleware.WithResolver(nil), "WithResolver"},
		{middleware.WithLogger(nil), "WithLogger"},
	} {
		_, err := middleware.NewTransport(nil, tc.opt)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
		assert.True(t, strings.HasPrefix(err.Error(), "middleware: "), err.Error())
	}
}

func TestPassThrough(t *testing.T) {
	b := faultbackend.New(t)
	b.Set(faultbackend.OK("direct"))
	static := discovery.MustNewStatic(nil)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr, err := middleware.NewTransport(base, middleware.WithResolver(static))
	require.NoError(t, err)
	defer tr.Close()
	// An address with a port is not a service name; neither is an unknown name.
	resp, err := (&http.Client{Transport: tr}).Get(b.URL() + "/x")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "direct", string(body))
	assert.Equal(t, int64(0), tr.Stats().Requests)
}

func TestNoEndpoints(t *testing.T) {
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"empty": nil})
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(static))
	require.NoError(t, err)
	defer tr.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://empty/", nil)
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	require.ErrorIs(t, err, balancer.ErrNoEndpoints)
}

func TestHostHeaderAndTimeoutHeader(t *testing.T) {
	f := newFixture(t, 1, middleware.WithTimeout(5*time.Second))
	code, err := f.get(ctxFor(t, 10*time.Second))
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	reqs := f.backends[0].Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "svc", reqs[0].Host, "the Host header keeps the service name")
	ms := reqs[0].Header.Get(middleware.TimeoutHeader)
	require.NotEmpty(t, ms)
	assert.LessOrEqual(t, len(ms), 4, "at most 5000 ms left: %s", ms)
}

// One of three backends crashes mid-load (its server closes: listener and connections gone,
// new dials refused): nearly every request still succeeds, the crashed backend is ejected
// after the configured number of consecutive gateway failures, and no goroutine or
// connection piles up.
func TestBackendCrashMidLoad(t *testing.T) {
	f := newFixture(t, 3, middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin}))
	ctx := ctxFor(t, 30*time.Second)
	const requests, workers = 3000, 8
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	work := make(chan int)
	var crash sync.Once
	goroutinesBefore := runtime.NumGoroutine()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if i >= requests/3 {
					crash.Do(func() { _ = f.backends[2].Close() })
				}
				if code, err := f.get(ctx); err == nil && code == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	for i := range requests {
		work <- i
	}
	close(work)
	wg.Wait()
	rate := float64(ok.Load()) / requests
	st := f.tr.Stats()
	t.Logf("stats %+v; attempts per backend %d %d %d", st, f.backends[0].Attempts(), f.backends[1].Attempts(), f.backends[2].Attempts())
	assert.GreaterOrEqual(t, rate, 0.999, "success rate (failed %d)", failed.Load())
	assert.Equal(t, int64(1), st.Ejections, "the crashed backend, and only it, was ejected")
	var crashed balancer.EndpointStats
	for _, e := range f.tr.Endpoints("svc") {
		if e.Addr == f.backends[2].Addr() {
			crashed = e
		}
	}
	assert.True(t, crashed.Ejected(time.Now()), "the crashed backend is ejected")
	// Its failures after the crash were retried: at least the 5 that ejected it, and not
	// many more than the workers that could have been in flight to it at once.
	assert.GreaterOrEqual(t, st.Retries, int64(5))
	assert.LessOrEqual(t, st.Retries, int64(5+workers))
	// Nothing piles up: connections to the live backends stay within the workers, and the
	// goroutines are back to where they were (idle keep-alive connections aside).
	for _, b := range f.backends[:2] {
		assert.LessOrEqual(t, b.Stats().ActiveConnections, int64(workers))
	}
	f.base.CloseIdleConnections()
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutinesBefore+2 }, 5*time.Second, 10*time.Millisecond,
		"goroutines: %d before, %d after", goroutinesBefore, runtime.NumGoroutine())
}

// A hanging backend: the per-attempt timeout cuts it, the retry goes elsewhere, latency stays
// near the timeout, and the connections to the hung backend are closed.
func TestHangingBackendCutByAttemptTimeout(t *testing.T) {
	const attemptTimeout = 100 * time.Millisecond
	f := newFixture(t, 2,
		middleware.WithAttemptTimeout(attemptTimeout),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: balancer.OutlierConfig{Disabled: true}}))
	f.backends[1].Set(faultbackend.Hang())
	ctx := ctxFor(t, 30*time.Second)
	var lat []time.Duration
	for range 40 {
		start := time.Now()
		code, err := f.get(ctx)
		require.NoError(t, err)
		require.Equal(t, 200, code)
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p99 := lat[len(lat)*99/100]
	assert.Less(t, p99, attemptTimeout+250*time.Millisecond, "p99 near the attempt timeout")
	assert.Positive(t, f.backends[1].Cancellations(), "the hung backend saw its requests cancelled")
	require.NoError(t, f.backends[1].Wait(ctx, func(s faultbackend.Stats) bool { return s.ActiveConnections == 0 }),
		"connections to the hung backend are closed")
}

// A POST without Idempotency-Key is sent once, however the backend fails.
func TestPostWithoutIdempotencyKeyIsSentOnce(t *testing.T) {
	f := newFixture(t, 2)
	for _, b := range f.backends {
		b.Set(faultbackend.Status(503))
	}
	req, _ := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodPost, "http://svc/charge", strings.NewReader("{}"))
	resp, err := f.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, int64(1), f.attempts())

	// With an Idempotency-Key it is retried.
	req, _ = http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodPost, "http://svc/charge", strings.NewReader("{}"))
	req.Header.Set("Idempotency-Key", "k1")
	resp, err = f.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, int64(1+3), f.attempts())
}

// A retried request's body arrives byte-identical on every attempt, whether it came with
// GetBody or had to be buffered; a body over the buffer cap is streamed once, never retried.
func TestRetriedBodyIsIdentical(t *testing.T) {
	f := newFixture(t, 3, middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin}),
		middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 3}))
	// Every backend fails its first request: the request takes four attempts, the first
	// three to three different backends.
	for _, b := range f.backends {
		b.FailNext(1, faultbackend.Status(503))
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16 KB
	want := sha256.Sum256(payload)

	// A reader with no GetBody: the transport buffers it.
	req, _ := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodPut, "http://svc/doc",
		io.NopCloser(bytes.NewReader(payload)))
	resp, err := f.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	var seen int
	for _, b := range f.backends {
		for _, r := range b.Requests() {
			seen++
			assert.Equal(t, want, r.BodySHA256, "attempt body differs")
			assert.Equal(t, int64(len(payload)), r.BodyLen)
		}
	}
	assert.Equal(t, 4, seen, "the request was retried three times")

	// Over the 64 KiB cap: sent once.
	for _, b := range f.backends {
		b.Reset()
		b.Set(faultbackend.Status(503))
	}
	big := bytes.Repeat([]byte("x"), 200<<10)
	req, _ = http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodPut, "http://svc/doc",
		io.NopCloser(bytes.NewReader(big)))
	resp, err = f.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, int64(1), f.attempts())
	for _, b := range f.backends {
		for _, r := range b.Requests() {
			assert.Equal(t, sha256.Sum256(big), r.BodySHA256)
		}
	}
}

// 200 requests each answered first by a 503 with a 64 KiB body and then by a 200: the
// thrown-away answers are drained, so connections are reused.
func TestDiscardedResponsesKeepConnections(t *testing.T) {
	// Half of all attempts fail here, which would (rightly) open the breaker: this test is
	// about connection reuse, so it runs without one.
	f := newFixture(t, 1, middleware.WithRetry(middleware.RetryPolicy{BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, BudgetRatio: 1}),
		middleware.WithoutBreaker())
	big := strings.Repeat("e", 64<<10)
	var n atomic.Int64
	f.backends[0].SetHandler(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 1 {
			w.WriteHeader(503)
			_, _ = io.WriteString(w, big)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	ctx := ctxFor(t, 30*time.Second)
	for range 200 {
		code, err := f.get(ctx)
		require.NoError(t, err)
		require.Equal(t, 200, code)
	}
	assert.Equal(t, int64(400), f.backends[0].Attempts())
	assert.LessOrEqual(t, f.backends[0].NewConnections(), int64(2))
}

// A total outage: retries stay within the budget (20 % of requests plus 10 per second).
func TestTotalOutageStaysWithinBudget(t *testing.T) {
	f := newFixture(t, 3, middleware.WithRetry(middleware.RetryPolicy{BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}),
		middleware.WithoutBreaker())
	for _, b := range f.backends {
		b.Set(faultbackend.Status(503))
	}
	ctx := ctxFor(t, 30*time.Second)
	const requests = 500
	start := time.Now()
	for range requests {
		code, err := f.get(ctx)
		require.NoError(t, err)
		require.Equal(t, 503, code)
	}
	elapsed := time.Since(start).Seconds()
	retries := f.attempts() - requests
	limit := 0.2*requests + 10*(elapsed+1)
	t.Logf("%d retries over %d requests in %.2fs (limit %.0f); stats %+v", retries, requests, elapsed, limit, f.tr.Stats())
	assert.LessOrEqual(t, float64(retries), limit)
	assert.Positive(t, f.tr.Stats().BudgetRefusals)
}

// Callers that cancel never open a breaker.
func TestCallerCancellationDoesNotOpenBreaker(t *testing.T) {
	f := newFixture(t, 1, middleware.WithBreaker(breaker.Config{MinimumVolume: 5}), middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	f.backends[0].Set(faultbackend.Hang())
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := f.get(ctx)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	f.backends[0].Set(faultbackend.OK("ok"))
	code, err := f.get(ctxFor(t, 5*time.Second))
	require.NoError(t, err, "the breaker must still be closed")
	assert.Equal(t, 200, code)
}

// When every endpoint's breaker is open, the error says so.
func TestAllBreakersOpen(t *testing.T) {
	f := newFixture(t, 2, middleware.WithBreaker(breaker.Config{MinimumVolume: 2, OpenDelay: time.Minute}),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}),
		middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}))
	for _, b := range f.backends {
		b.Set(faultbackend.Status(500))
	}
	ctx := ctxFor(t, 10*time.Second)
	var err error
	for range 20 {
		if _, err = f.get(ctx); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, breaker.ErrOpen)
	assert.Positive(t, f.tr.Stats().BreakerRefusals)
}

// Hedging: the first attempt goes to a slow backend; after the hedge delay a second attempt
// goes to the fast one and wins; the slow one sees its request cancelled.
func TestHedgeWinsAndLoserIsCancelled(t *testing.T) {
	f := newFixture(t, 2,
		middleware.WithHedge(middleware.HedgePolicy{Delay: 30 * time.Millisecond}),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin}))
	f.backends[0].Set(faultbackend.Slow(5 * time.Second))
	f.backends[1].Set(faultbackend.Slow(5 * time.Second))
	ctx := ctxFor(t, 20*time.Second)
	// Make one backend fast; whichever the first pick lands on, hedging must answer fast.
	f.backends[1].Set(faultbackend.OK("fast"))
	var slowFirst int
	for range 6 {
		start := time.Now()
		code, err := f.get(ctx)
		require.NoError(t, err)
		require.Equal(t, 200, code)
		assert.Less(t, time.Since(start), 2*time.Second)
	}
	st := f.tr.Stats()
	slowFirst = int(st.HedgeWins)
	assert.Positive(t, st.Hedges)
	assert.Positive(t, slowFirst, "some requests were won by a hedge")
	require.NoError(t, f.backends[0].Wait(ctx, func(s faultbackend.Stats) bool { return s.Cancellations >= int64(slowFirst) }))
}

func TestCloseIsIdempotentAndFailsLaterRequests(t *testing.T) {
	f := newFixture(t, 1)
	_, err := f.get(ctxFor(t, 5*time.Second))
	require.NoError(t, err)
	require.NoError(t, f.tr.Close())
	require.NoError(t, f.tr.Close())
	f.tr.CloseIdleConnections()
	_, err = f.get(ctxFor(t, 5*time.Second))
	require.ErrorIs(t, err, middleware.ErrClosed)
}

// With a quantile, the hedge delay follows the destination's latency: once history says
// attempts take ~30 ms, a request is hedged only when it is slower than nearly all of them,
// where a fixed 1 ms delay hedges every request.
func TestHedgeDelayFollowsLatencyQuantile(t *testing.T) {
	run := func(quantile float64) int64 {
		f := newFixture(t, 2,
			middleware.WithHedge(middleware.HedgePolicy{Delay: time.Millisecond, Quantile: quantile}),
			middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: 1}))
		for _, b := range f.backends {
			b.Set(faultbackend.Slow(30 * time.Millisecond))
		}
		ctx := ctxFor(t, 60*time.Second)
		for range 60 { // history
			_, err := f.get(ctx)
			require.NoError(t, err)
		}
		before := f.tr.Stats().Hedges
		for range 40 {
			_, err := f.get(ctx)
			require.NoError(t, err)
		}
		return f.tr.Stats().Hedges - before
	}
	fixed, adaptive := run(0), run(0.99)
	t.Logf("hedges over 40 requests: fixed 1ms delay %d, p99 delay %d", fixed, adaptive)
	assert.GreaterOrEqual(t, fixed, int64(35))
	assert.LessOrEqual(t, adaptive, int64(10))
}
