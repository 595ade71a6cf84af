package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/internal/redistest"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
	"github.com/proxyless/proxyless/ratelimit/redis"
)

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = w.Write([]byte("ok"))
})

// serve runs h on a real loopback server and returns a GET function through a real client.
func serve(t *testing.T, h http.Handler) func(header ...string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := srv.Client()
	return func(header ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, srv.URL+"/", nil)
		require.NoError(t, err)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		drain(resp)
		return resp
	}
}

func keyed(t *testing.T, cfg ratelimit.KeyedConfig) *ratelimit.Keyed {
	t.Helper()
	lim, err := ratelimit.NewKeyed(cfg)
	require.NoError(t, err)
	return lim
}

func clientIP(t testing.TB, trusted ...string) middleware.KeyFunc {
	t.Helper()
	key, err := middleware.KeyByClientIP(ratelimit.ClientIPConfig{TrustedProxies: trusted})
	require.NoError(t, err)
	return key
}

func newHandler(t *testing.T, opts ...middleware.HandlerOption) http.Handler {
	t.Helper()
	h, err := middleware.NewHandler(okHandler, opts...)
	require.NoError(t, err)
	return h
}

func TestHandlerAnswers429WithRateLimitHeaders(t *testing.T) {
	lim := keyed(t, ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1, Burst: 2}})
	get := serve(t, newHandler(t, middleware.WithServerRateLimit(lim, clientIP(t))))

	start := time.Now()
	r1, r2, r3 := get(), get(), get()
	require.Less(t, time.Since(start), time.Second, "the machine is too slow for exact header values")

	assert.Equal(t, http.StatusOK, r1.StatusCode)
	assert.Equal(t, "2", r1.Header.Get("RateLimit-Limit"))
	assert.Equal(t, "1", r1.Header.Get("RateLimit-Remaining"))
	assert.Equal(t, "1", r1.Header.Get("RateLimit-Reset"), "one token spent: whole again in 1 s")
	assert.Empty(t, r1.Header.Get("Retry-After"))

	assert.Equal(t, http.StatusOK, r2.StatusCode)
	assert.Equal(t, "0", r2.Header.Get("RateLimit-Remaining"))
	assert.Equal(t, "2", r2.Header.Get("RateLimit-Reset"), "two tokens spent: 2 s, rounded up")

	assert.Equal(t, http.StatusTooManyRequests, r3.StatusCode)
	assert.Equal(t, "1", r3.Header.Get("Retry-After"), "under a second, rounded up")
	assert.Equal(t, "2", r3.Header.Get("RateLimit-Limit"))
	assert.Equal(t, "0", r3.Header.Get("RateLimit-Remaining"))
	assert.Equal(t, "2", r3.Header.Get("RateLimit-Reset"))
}

func TestHandlerDeniedKeyHasNoRetryAfter(t *testing.T) {
	lim := keyed(t, ratelimit.KeyedConfig{
		Default:   ratelimit.Quota{Rate: 10},
		Overrides: map[string]ratelimit.Quota{"": {}}, // requests without an API key are refused
	})
	get := serve(t, newHandler(t, middleware.WithServerRateLimit(lim, middleware.KeyByHeader("x-api-key"))))
	r := get()
	assert.Equal(t, http.StatusTooManyRequests, r.StatusCode)
	assert.Empty(t, r.Header.Get("Retry-After"), "no wait admits a blocked key")
	assert.Equal(t, http.StatusOK, get("X-Api-Key", "alice").StatusCode)
}

func TestHandlerPerKeyIsolation(t *testing.T) {
	lim := keyed(t, ratelimit.KeyedConfig{
		Default:   ratelimit.Quota{Rate: 0.5, Burst: 1},
		Overrides: map[string]ratelimit.Quota{"gold": {Rate: 1, Burst: 5}}, // a tier with a bigger burst
	})
	get := serve(t, newHandler(t, middleware.WithServerRateLimit(lim, middleware.KeyByHeader("X-Api-Key"))))
	codes := func(key string, n int) (out []int) {
		for range n {
			out = append(out, get("X-Api-Key", key).StatusCode)
		}
		return out
	}
	assert.Equal(t, []int{200, 429, 429}, codes("alice", 3))
	assert.Equal(t, []int{200, 429}, codes("bob", 2), "alice's requests used bob's quota")
	assert.Equal(t, []int{200, 200, 200, 200, 200, 429}, codes("gold", 6))
	assert.Equal(t, []int{200, 429}, codes("", 2), "requests without a key share one bucket")
}

func TestHandlerSeveralLimitsShowTheTightest(t *testing.T) {
	perIP := keyed(t, ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1, Burst: 10}})
	perKey := keyed(t, ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1, Burst: 2}})
	get := serve(t, newHandler(t,
		middleware.WithServerRateLimit(perIP, clientIP(t)),
		middleware.WithServerRateLimit(perKey, middleware.KeyByHeader("X-Api-Key")),
	))
	r := get("X-Api-Key", "a")
	assert.Equal(t, "2", r.Header.Get("RateLimit-Limit"))
	assert.Equal(t, "1", r.Header.Get("RateLimit-Remaining"))
	get("X-Api-Key", "a")
	r = get("X-Api-Key", "a")
	assert.Equal(t, http.StatusTooManyRequests, r.StatusCode)
	// Key b has its own quota but shares the address's (6 left there after this request): the
	// headers show b's, 1 left.
	r = get("X-Api-Key", "b")
	assert.Equal(t, http.StatusOK, r.StatusCode)
	assert.Equal(t, "1", r.Header.Get("RateLimit-Remaining"))
}

func TestHandlerForwardedFor(t *testing.T) {
	quota := ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 0.5, Burst: 1}}
	t.Run("trusted proxy", func(t *testing.T) {
		// The test client is the "proxy": loopback is trusted, so its X-Forwarded-For counts.
		get := serve(t, newHandler(t, middleware.WithServerRateLimit(keyed(t, quota), clientIP(t, "127.0.0.0/8", "::1"))))
		assert.Equal(t, 200, get("X-Forwarded-For", "203.0.113.1").StatusCode)
		assert.Equal(t, 429, get("X-Forwarded-For", "203.0.113.1").StatusCode)
		assert.Equal(t, 200, get("X-Forwarded-For", "203.0.113.2").StatusCode, "another client shares the proxy's bucket")
		// A client that writes its own X-Forwarded-For: the proxy appends the real address.
		assert.Equal(t, 429, get("X-Forwarded-For", "203.0.113.9, 203.0.113.1").StatusCode, "a spoofed entry chose the key")
		// Trusted hops are skipped.
		assert.Equal(t, 200, get("X-Forwarded-For", "203.0.113.3, 127.0.0.9").StatusCode)
		assert.Equal(t, 429, get("X-Forwarded-For", "203.0.113.3").StatusCode)
	})
	t.Run("untrusted peer", func(t *testing.T) {
		get := serve(t, newHandler(t, middleware.WithServerRateLimit(keyed(t, quota), clientIP(t, "10.0.0.0/8"))))
		assert.Equal(t, 200, get("X-Forwarded-For", "203.0.113.1").StatusCode)
		assert.Equal(t, 429, get("X-Forwarded-For", "203.0.113.2").StatusCode, "an untrusted X-Forwarded-For chose the key")
		assert.Equal(t, 429, get().StatusCode)
	})
}

func TestHandlerShedsLoad(t *testing.T) {
	bh, err := overload.NewBulkhead(1, 0)
	require.NoError(t, err)
	entered := make(chan struct{}, 1)
	gate := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("slow") {
			entered <- struct{}{}
			select {
			case <-gate:
			case <-r.Context().Done():
			}
		}
		_, _ = w.Write([]byte("ok"))
	})
	h, err := middleware.NewHandler(slow, middleware.WithLoadShedding(bh))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	ctx := ctxFor(t, 10*time.Second)
	get := func(path string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		drain(resp)
		return resp.StatusCode, nil
	}

	first := make(chan int, 1)
	go func() {
		code, _ := get("/?slow")
		first <- code
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the first request never reached the handler")
	}
	code, err := get("/")
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, code, "a second request while the only slot is taken")
	close(gate)
	assert.Equal(t, http.StatusOK, <-first)
	code, err = get("/")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code, "the slot was not released")
}

// The global limit holds across two instances that share one real Redis: whatever instance a
// request reaches, all of them together admit at most burst + rate × elapsed.
func TestHandlerGlobalLimitAcrossInstances(t *testing.T) {
	rs := redistest.ForTest(t)
	const rate, burst = 50.0, 10
	var urls []string
	for range 2 {
		rc := goredis.NewClient(&goredis.Options{Addr: rs.Addr(), ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = rc.Close() })
		lim, err := redis.New(rc, redis.Config{
			Default:       ratelimit.Quota{Rate: rate, Burst: burst},
			Timeout:       time.Second, // a loaded test machine must not push decisions to the fallback
			FallbackShare: 0.5,
		})
		require.NoError(t, err)
		srv := httptest.NewServer(newHandler(t, middleware.WithServerRateLimit(lim, clientIP(t))))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL+"/")
	}
	base := &http.Transport{MaxIdleConnsPerHost: 8}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: base, Timeout: 5 * time.Second}

	var (
		mu                sync.Mutex
		ok, limited       [2]int
		badRetryAfter     int
		wg                sync.WaitGroup
		start             = time.Now()
		end               = start.Add(2 * time.Second)
		maxPerWorker      = 1500
		workers           = 4
		unexpectedStatus  []int
		unexpectedFailure error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < maxPerWorker && time.Now().Before(end); n++ {
				i := (w + n) % 2
				resp, err := client.Get(urls[i])
				mu.Lock()
				switch {
				case err != nil:
					unexpectedFailure = err
				case resp.StatusCode == http.StatusOK:
					ok[i]++
				case resp.StatusCode == http.StatusTooManyRequests:
					limited[i]++
					if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
						badRetryAfter++
					}
				default:
					unexpectedStatus = append(unexpectedStatus, resp.StatusCode)
				}
				mu.Unlock()
				if resp != nil {
					drain(resp)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	require.NoError(t, unexpectedFailure)
	require.Empty(t, unexpectedStatus)
	admitted := ok[0] + ok[1]
	bound := burst + rate*elapsed.Seconds()
	t.Logf("in %v: admitted %v (bound %.1f), refused %v", elapsed.Round(time.Millisecond), ok, bound, limited)
	assert.LessOrEqual(t, float64(admitted), bound+1, "the two instances together admitted more than the global quota")
	assert.GreaterOrEqual(t, float64(admitted), 0.7*bound, "the global quota went unused: is the load generator starved?")
	for i := range 2 {
		assert.Positive(t, ok[i], "instance %d admitted nothing", i)
		assert.Positive(t, limited[i], "instance %d refused nothing", i)
	}
	assert.Zero(t, badRetryAfter, "429 without a whole-second Retry-After")
}

func TestNewHandlerValidation(t *testing.T) {
	lim := keyed(t, ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1}})
	for _, tc := range []struct {
		next http.Handler
		opt  middleware.HandlerOption
		want string
	}{
		{nil, nil, "next handler is nil"},
		{okHandler, middleware.WithServerRateLimit(nil, clientIP(t)), "WithServerRateLimit: limiter is nil"},
		{okHandler, middleware.WithServerRateLimit(lim, nil), "WithServerRateLimit: key function is nil"},
		{okHandler, middleware.WithLoadShedding(nil), "WithLoadShedding"},
		{okHandler, nil, "nil HandlerOption"},
	} {
		var opts []middleware.HandlerOption
		if tc.next != nil {
			opts = append(opts, tc.opt)
		}
		_, err := middleware.NewHandler(tc.next, opts...)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
		assert.True(t, strings.HasPrefix(err.Error(), "middleware: "), err.Error())
	}
}

type countingHandler struct{ n int }

func (h *countingHandler) ServeHTTP(http.ResponseWriter, *http.Request) { h.n++ }

// With no options the handler still gives requests the client's deadline, and does nothing
// else.
func TestNewHandlerWithoutOptionsKeepsTheDeadline(t *testing.T) {
	var deadline time.Time
	var ok bool
	h, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadline, ok = r.Context().Deadline()
	}))
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(middleware.TimeoutHeader, "2000")
	start := time.Now()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.True(t, ok, "no deadline from the client's header")
	assert.WithinDuration(t, start.Add(2*time.Second), deadline, 50*time.Millisecond)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Empty(t, rec.Header(), "headers added with no options")
}

func TestHandlerClientGone(t *testing.T) {
	lim := keyed(t, ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1, Burst: 1}})
	next := &countingHandler{}
	h, err := middleware.NewHandler(next, middleware.WithServerRateLimit(lim, clientIP(t)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Zero(t, next.n, "a request whose client has gone reached the handler")
	// It took no token.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.Equal(t, 1, next.n)
}

func ExampleNewHandler() {
	// One bucket per client address: 2 requests at once, refilled at 1 per second. Behind a
	// load balancer, list it in TrustedProxies so that X-Forwarded-For names the client.
	key, err := middleware.KeyByClientIP(ratelimit.ClientIPConfig{})
	if err != nil {
		panic(err)
	}
	perClient, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1, Burst: 2}})
	if err != nil {
		panic(err)
	}
	h, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	}), middleware.WithServerRateLimit(perClient, key))
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	for range 3 {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Printf("%d RateLimit-Limit=%s RateLimit-Remaining=%s Retry-After=%q\n", resp.StatusCode,
			resp.Header.Get("RateLimit-Limit"), resp.Header.Get("RateLimit-Remaining"), resp.Header.Get("Retry-After"))
	}
	// Output:
	// 200 RateLimit-Limit=2 RateLimit-Remaining=1 Retry-After=""
	// 200 RateLimit-Limit=2 RateLimit-Remaining=0 Retry-After=""
	// 429 RateLimit-Limit=2 RateLimit-Remaining=0 Retry-After="1"
}

// benchWriter is a ResponseWriter that keeps nothing, so that a benchmark measures only the
// handler chain.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(int)             {}

// BenchmarkHandler compares NewHandler with a local per-client limiter (and with load
// shedding too) against the bare handler. Run:
//
//	go test -run '^$' -bench BenchmarkHandler -benchmem -count 10 ./middleware/
func BenchmarkHandler(b *testing.B) {
	// A realistic burst that a refill of one token per nanosecond keeps from running out.
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1e9, Burst: 50}})
	if err != nil {
		b.Fatal(err)
	}
	bh, err := overload.NewBulkhead(1<<20, 0)
	if err != nil {
		b.Fatal(err)
	}
	key := clientIP(b)
	withLimit, err := middleware.NewHandler(okHandler, middleware.WithServerRateLimit(lim, key))
	if err != nil {
		b.Fatal(err)
	}
	withShed, err := middleware.NewHandler(okHandler, middleware.WithServerRateLimit(lim, key), middleware.WithLoadShedding(bh))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"bare", okHandler}, {"keyed", withLimit}, {"keyed+shed", withShed}} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = "203.0.113.7:40000"
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				tc.h.ServeHTTP(w, req)
			}
		})
	}
}
