package middleware_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
)

// arrivals records when a backend's requests arrived; the first n are answered 503 with
// Retry-After: 1, the others 200.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
}

func (a *arrivals) handler(n int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.times = append(a.times, time.Now())
		k := len(a.times)
		a.mu.Unlock()
		if k <= n {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}
}

func (a *arrivals) get() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times...)
}

// A retry after a 503 with Retry-After waits what the server asked, sequential or hedged
// (hedges and retries draw on the same engine), and goes out once.
func TestRetryAfterHonoured(t *testing.T) {
	for _, hedged := range []bool{false, true} {
		t.Run(map[bool]string{false: "sequential", true: "hedged"}[hedged], func(t *testing.T) {
			b := faultbackend.New(t)
			var arr arrivals
			b.SetHandler(arr.handler(1))
			opts := []middleware.TransportOption{
				middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: b.Addr()}}})),
				// The balancer steers away from an endpoint that sent Retry-After, but it is
				// the only one: the retry goes to it, after the wait.
				middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}),
				middleware.WithoutBreaker(),
			}
			if hedged {
				opts = append(opts, middleware.WithHedge(middleware.HedgePolicy{Delay: 5 * time.Second}))
			}
			tr, err := middleware.NewTransport(nil, opts...)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, tr.Close()) })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			got := arr.get()
			require.Len(t, got, 2, "one retry")
			assert.GreaterOrEqual(t, got[1].Sub(got[0]), 950*time.Millisecond, "the retry waited the Retry-After")
		})
	}
}

// A retry that could not start before the call's deadline is not waited for: the last
// answer comes back at once, not when the deadline passes.
func TestRetryNotWaitedPastDeadline(t *testing.T) {
	for _, deadline := range []string{"caller", "WithTimeout"} {
		t.Run(deadline, func(t *testing.T) {
			b := faultbackend.New(t)
			var arr arrivals
			b.SetHandler(arr.handler(100))
			opts := []middleware.TransportOption{
				middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: b.Addr()}}})),
			}
			ctx := context.Background()
			if deadline == "caller" {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
				defer cancel()
			} else {
				opts = append(opts, middleware.WithTimeout(500*time.Millisecond))
			}
			tr, err := middleware.NewTransport(nil, opts...)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, tr.Close()) })
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
			start := time.Now()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			require.NoError(t, err, "the 503 itself, not the deadline")
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.Less(t, time.Since(start), 300*time.Millisecond, "returned at once")
			assert.Len(t, arr.get(), 1, "no retry was sent")
		})
	}
}

// A failure that is retried does not hold its connection during the backoff and the retry:
// with a base transport allowed one connection per host, the retry still goes out at once
// (the 503's body is read and its connection freed before the retry; found by review).
func TestRetryDoesNotHoldTheFailedConnection(t *testing.T) {
	b := faultbackend.New(t)
	b.FailNext(1, faultbackend.Handler(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(make([]byte, 100)) // a body the client must read to free the connection
	}))
	b.Set(faultbackend.OK("ok"))
	base := &http.Transport{MaxConnsPerHost: 1}
	t.Cleanup(base.CloseIdleConnections)
	tr, err := middleware.NewTransport(base,
		middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: b.Addr()}}})),
		middleware.WithoutBreaker())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	start := time.Now()
	resp, err := (&http.Client{Transport: tr, Timeout: 3 * time.Second}).Get("http://svc/")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Less(t, time.Since(start), time.Second)
	assert.EqualValues(t, 2, b.Attempts())
}
