package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
)

// closeTracker is a request body that records whether it was closed.
type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

func TestOutboundRateLimitRefusesBeforeTheBackend(t *testing.T) {
	f := newFixture(t, 1, middleware.WithRateLimit(ratelimit.Quota{Rate: 1, Burst: 2}))
	ctx := ctxFor(t, 10*time.Second)
	for range 2 {
		code, err := f.get(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	}

	// The transport itself: a nil response, an error that says when to retry, the body closed.
	body := &closeTracker{Reader: strings.NewReader("payload")}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://svc/", body)
	require.NoError(t, err)
	resp, err := f.tr.RoundTrip(req)
	assert.Nil(t, resp)
	require.ErrorIs(t, err, ratelimit.ErrLimited)
	var le *ratelimit.LimitedError
	require.ErrorAs(t, err, &le)
	assert.Greater(t, le.RetryAfter, time.Duration(0))
	assert.LessOrEqual(t, le.RetryAfter, time.Second)
	assert.Contains(t, err.Error(), "svc")
	assert.True(t, body.closed.Load(), "the request body was not closed")

	// Through an http.Client the error still matches.
	_, err = f.get(ctx)
	require.ErrorIs(t, err, ratelimit.ErrLimited)
	assert.EqualValues(t, 2, f.attempts(), "a refused request reached the backend")
	assert.EqualValues(t, 2, f.tr.Stats().Requests, "refused requests are not counted as sent")
}

// twoServices is a client for the services "a" and "b", each with one backend.
func twoServices(t *testing.T, opts ...middleware.TransportOption) (*http.Client, map[string]*faultbackend.Backend) {
	t.Helper()
	backends := map[string]*faultbackend.Backend{"a": faultbackend.New(t), "b": faultbackend.New(t)}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"a": {{Addr: backends["a"].Addr()}},
		"b": {{Addr: backends["b"].Addr()}},
	})
	base := &http.Transport{}
	tr, err := middleware.NewTransport(base, append([]middleware.TransportOption{middleware.WithResolver(static)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, tr.Close())
		base.CloseIdleConnections()
	})
	return &http.Client{Transport: tr}, backends
}

// admitted sends n GETs to url and returns how many got a response; every failure must be a
// rate-limit refusal.
func admitted(t *testing.T, client *http.Client, url string, n int) int {
	t.Helper()
	ok := 0
	for range n {
		req, _ := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			require.ErrorIs(t, err, ratelimit.ErrLimited)
			continue
		}
		drain(resp)
		ok++
	}
	return ok
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
}

func TestOutboundRateLimitIsPerDestination(t *testing.T) {
	client, backends := twoServices(t, middleware.WithRateLimit(ratelimit.Quota{Rate: 0.5, Burst: 2}))
	assert.Equal(t, 2, admitted(t, client, "http://a/", 5))
	assert.Equal(t, 2, admitted(t, client, "http://b/", 5), "service a's requests used b's quota")
	// Hosts that are not services pass through unlimited.
	assert.Equal(t, 5, admitted(t, client, backends["a"].URL()+"/", 5))
	assert.EqualValues(t, 2+5, backends["a"].Attempts())
	assert.EqualValues(t, 2, backends["b"].Attempts())
}

func TestOutboundRateLimiterKeyedByService(t *testing.T) {
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{
		Default:   ratelimit.Quota{Rate: 0.5, Burst: 1},
		Overrides: map[string]ratelimit.Quota{"b": {Rate: 0.5, Burst: 3}},
	})
	require.NoError(t, err)
	client, _ := twoServices(t, middleware.WithRateLimiter(lim))
	assert.Equal(t, 1, admitted(t, client, "http://a/", 4))
	assert.Equal(t, 3, admitted(t, client, "http://b/", 4))
}

// recordingLimiter wraps a real overload.Limiter and records the outcomes reported to it.
// It is a spy, not a fake: admission is the real limiter's.
type recordingLimiter struct {
	inner    overload.Limiter
	mu       sync.Mutex
	outcomes []overload.Outcome // guarded by mu
}

func (l *recordingLimiter) Acquire(ctx context.Context) (func(overload.Outcome), error) {
	release, err := l.inner.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return func(o overload.Outcome) {
		l.mu.Lock()
		l.outcomes = append(l.outcomes, o)
		l.mu.Unlock()
		release(o)
	}, nil
}

func (l *recordingLimiter) recorded() []overload.Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]overload.Outcome(nil), l.outcomes...)
}

func TestOutboundConcurrencyLimit(t *testing.T) {
	bh, err := overload.NewBulkhead(1, 0)
	require.NoError(t, err)
	rec := &recordingLimiter{inner: bh}
	f := newFixture(t, 1, middleware.WithConcurrencyLimit(rec), middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	b := f.backends[0]
	ctx := ctxFor(t, 10*time.Second)

	// One request in flight holds the only permit.
	gate := make(chan struct{})
	b.SetHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	})
	first := make(chan error, 1)
	go func() {
		code, err := f.get(ctx)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		first <- err
	}()
	require.NoError(t, b.Wait(ctx, func(s faultbackend.Stats) bool { return s.Attempts == 1 }))
	_, err = f.get(ctx)
	require.ErrorIs(t, err, ratelimit.ErrLimited)
	assert.Contains(t, err.Error(), "concurrency")
	assert.EqualValues(t, 1, b.Attempts(), "the refused request reached the backend")
	close(gate)
	require.NoError(t, <-first)

	// The permit comes back with the outcome: success, an overload signal, a caller who left.
	b.Set(faultbackend.Status(http.StatusServiceUnavailable))
	code, err := f.get(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, code)
	b.Set(faultbackend.Hang())
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = f.get(short)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, []overload.Outcome{overload.Success, overload.Failure, overload.Dropped}, rec.recorded())
}

func TestOutboundRateRefusalReleasesConcurrencyPermit(t *testing.T) {
	bh, err := overload.NewBulkhead(1, 0)
	require.NoError(t, err)
	rec := &recordingLimiter{inner: bh}
	f := newFixture(t, 1, middleware.WithConcurrencyLimit(rec), middleware.WithRateLimit(ratelimit.Quota{Rate: 0.5, Burst: 1}))
	ctx := ctxFor(t, 10*time.Second)
	_, err = f.get(ctx)
	require.NoError(t, err)
	for range 3 {
		_, err = f.get(ctx)
		require.ErrorIs(t, err, ratelimit.ErrLimited)
		assert.NotContains(t, err.Error(), "concurrency", "the permit of a rate-refused request was kept")
	}
	assert.Equal(t, []overload.Outcome{overload.Success, overload.Dropped, overload.Dropped, overload.Dropped}, rec.recorded())
	assert.EqualValues(t, 1, f.attempts())
}

func TestOutboundLimitDoneContext(t *testing.T) {
	f := newFixture(t, 1, middleware.WithRateLimit(ratelimit.Quota{Rate: 1, Burst: 1}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
	resp, err := f.tr.RoundTrip(req)
	assert.Nil(t, resp)
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ratelimit.ErrLimited)
	// The done context took no token.
	_, err = f.get(ctxFor(t, 10*time.Second))
	require.NoError(t, err)
}

func TestRateLimitOptionsErrors(t *testing.T) {
	static := discovery.MustNewStatic(nil)
	for _, tc := range []struct {
		opt  middleware.ClientOption
		want string
	}{
		{middleware.WithRateLimit(ratelimit.Quota{}), "WithRateLimit"},
		{middleware.WithRateLimit(ratelimit.Quota{Rate: -1}), "WithRateLimit: ratelimit: Default.Rate"},
		{middleware.WithRateLimit(ratelimit.Quota{Rate: 1, Burst: -1}), "Burst"},
		{middleware.WithRateLimiter(nil), "WithRateLimiter"},
		{middleware.WithConcurrencyLimit(nil), "WithConcurrencyLimit"},
	} {
		_, err := middleware.NewTransport(nil, tc.opt)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
		assert.True(t, strings.HasPrefix(err.Error(), "middleware: "), err.Error())
		_, err = middleware.NewGRPCClient(static, tc.opt)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want, "NewGRPCClient")
	}
}

func ExampleWithRateLimit() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	resolver := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"payments": {{Addr: strings.TrimPrefix(backend.URL, "http://")}},
	})
	// At most 2 requests at once to each service, refilled at 1 per second.
	tr, err := middleware.NewTransport(nil,
		middleware.WithResolver(resolver),
		middleware.WithRateLimit(ratelimit.Quota{Rate: 1, Burst: 2}),
	)
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}
	for range 3 {
		resp, err := client.Get("http://payments/v1/charges")
		var le *ratelimit.LimitedError
		switch {
		case errors.As(err, &le):
			fmt.Printf("refused locally: ErrLimited %v, retry within a second %v\n", errors.Is(err, ratelimit.ErrLimited), le.RetryAfter <= time.Second)
		case err != nil:
			panic(err)
		default:
			resp.Body.Close()
			fmt.Println(resp.StatusCode)
		}
	}
	// Output:
	// 200
	// 200
	// refused locally: ErrLimited true, retry within a second true
}

// BenchmarkOutboundLimit compares the transport without limits, with a per-destination
// local rate limit, and with a concurrency cap too, over a no-op base transport.
func BenchmarkOutboundLimit(b *testing.B) {
	bh, err := overload.NewBulkhead(1<<20, 0)
	if err != nil {
		b.Fatal(err)
	}
	unlimited := ratelimit.Quota{Rate: 1e8, Burst: 1 << 30} // never refuses within a benchmark
	for _, tc := range []struct {
		name string
		opts []middleware.TransportOption
	}{
		{"none", nil},
		{"rate", []middleware.TransportOption{middleware.WithRateLimit(unlimited)}},
		{"rate+concurrency", []middleware.TransportOption{middleware.WithRateLimit(unlimited), middleware.WithConcurrencyLimit(bh)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "127.0.0.1:1"}}})
			tr, err := middleware.NewTransport(noopTransport{}, append([]middleware.TransportOption{middleware.WithResolver(static)}, tc.opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = tr.Close() })
			benchClient(b, &http.Client{Transport: tr}, "http://svc/")
		})
	}
}
