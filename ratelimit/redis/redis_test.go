package redis

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/proxyless/proxyless/internal/redistest"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/internal/loadtest"
)

// newClient returns a client that honours context deadlines, closed at
// the end of the test.
func newClient(t testing.TB, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func mustRedis(t testing.TB, c goredis.UniversalClient, cfg Config) *Limiter {
	t.Helper()
	r, err := New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewValidation(t *testing.T) {
	ok := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer ok.Close()
	noCtx := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer noCtx.Close()
	q := ratelimit.Quota{Rate: 10}
	for _, tc := range []struct {
		client goredis.UniversalClient
		cfg    Config
		field  string
	}{
		{nil, Config{Default: q}, "client"},
		{noCtx, Config{Default: q}, "ContextTimeoutEnabled"},
		{ok, Config{}, "Default"},
		{ok, Config{Default: ratelimit.Quota{Rate: -1}}, "Default.Rate"},
		{ok, Config{Default: q, Timeout: -1}, "Timeout"},
		{ok, Config{Default: q, ProbeInterval: -1}, "ProbeInterval"},
		{ok, Config{Default: q, FallbackShare: 1.5}, "FallbackShare"},
		{ok, Config{Default: q, FallbackShare: -0.5}, "FallbackShare"},
		{ok, Config{Default: q, FallbackMaxKeys: -1}, "FallbackMaxKeys"},
		{ok, Config{Default: q, Overrides: map[string]ratelimit.Quota{"k": {Burst: -1}}}, `Overrides["k"].Burst`},
	} {
		_, err := New(tc.client, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.HasPrefix(err.Error(), "redis: ") {
			t.Errorf("New(%+v) error = %v, want one naming %s", tc.cfg, err, tc.field)
		}
	}
}

func TestRedisGCRA(t *testing.T) {
	s := redistest.ForTest(t)
	c := newClient(t, s.Addr())
	r := mustRedis(t, c, Config{
		Default:   ratelimit.Quota{Rate: 10, Burst: 3},
		Overrides: map[string]ratelimit.Quota{"blocked": {}, "free": {Rate: math.Inf(1)}},
		Prefix:    "t:",
		Timeout:   time.Second,
	})
	ctx := context.Background()
	for i := range 3 {
		d, err := r.Take(ctx, "k")
		if err != nil || !d.Allowed || d.Degraded || d.Limit != 3 || d.Remaining != 2-i {
			t.Fatalf("burst request %d: %+v, %v; want allowed with remaining %d", i, d, err, 2-i)
		}
	}
	d, err := r.Take(ctx, "k")
	if err != nil || d.Allowed || d.Remaining != 0 || d.RetryAfter <= 0 || d.RetryAfter > 100*time.Millisecond || d.Reset <= 200*time.Millisecond {
		t.Fatalf("past burst: %+v, %v; want refused with retry ≤ 100ms and reset > 200ms", d, err)
	}
	if !errors.Is(d.Err(), ratelimit.ErrLimited) {
		t.Fatalf("Err() = %v", d.Err())
	}

	// The key lives under the prefix and expires once the bucket is full.
	pttl, err := c.PTTL(ctx, "t:k").Result()
	if err != nil || pttl <= 0 || pttl > 300*time.Millisecond {
		t.Fatalf("PTTL(t:k) = %v, %v; want a TTL of at most 300ms", pttl, err)
	}

	if d, _ := r.TakeN(ctx, "other", 4); d.Allowed || d.RetryAfter != 0 {
		t.Fatalf("TakeN(4) past burst 3 = %+v, want refused with RetryAfter 0", d)
	}
	if r.Allow(ctx, "blocked") {
		t.Fatal("blocked key admitted")
	}
	if !r.Allow(ctx, "free") {
		t.Fatal("unlimited key refused")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Take(cctx, "fresh"); err != context.Canceled {
		t.Fatalf("Take(cancelled) = %v, want context.Canceled", err)
	}
	if n, _ := c.Exists(ctx, "t:fresh").Result(); n != 0 {
		t.Fatal("a cancelled Take touched Redis")
	}

	// EVALSHA falls back to EVAL when Redis forgot the script.
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := r.Take(ctx, "after-flush"); err != nil || !d.Allowed || d.Degraded {
		t.Fatalf("Take after SCRIPT FLUSH = %+v, %v", d, err)
	}
}

// TestRedisAccuracy runs two limiters (two clients) against one Redis with
// 25 goroutines each for 10 s, and checks the shared bound on Redis's clock.
func TestRedisAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s load test")
	}
	t.Parallel()
	s := redistest.ForTest(t)
	const rate, burst, d = 100, 10, 10 * time.Second
	cfg := Config{Default: ratelimit.Quota{Rate: rate, Burst: burst}, Timeout: time.Second}
	ca, cb := newClient(t, s.Addr()), newClient(t, s.Addr())
	warmUp(t, ca, 25)
	warmUp(t, cb, 25)
	a, b := mustRedis(t, ca, cfg), mustRedis(t, cb, cfg)
	var degraded atomic.Int64
	var next atomic.Int64
	res := loadtest.Run(50, d, 100_000, 500*time.Microsecond, func() (bool, int64) {
		lim := a
		if next.Add(1)%2 == 0 {
			lim = b
		}
		dec, at, err := lim.take(context.Background(), "shared", 1)
		if err != nil || dec.Degraded {
			degraded.Add(1)
		}
		return dec.Allowed, at * int64(time.Microsecond) // Redis's clock, Unix µs
	})
	if n := degraded.Load(); n != 0 {
		t.Fatalf("%d decisions were not made by Redis", n)
	}
	loadtest.CheckAccuracy(t, res, rate, burst, d)
}

// warmUp opens n pooled connections so that dialing does not eat into a
// timed run.
func warmUp(t *testing.T, c *goredis.Client, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.Ping(ctx).Err(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

// outageCounts counts the calls and admissions of one phase.
type outageCounts struct {
	mu                    sync.Mutex
	admitted, degradedAdm int
	firstDeg, lastDeg     time.Time
	calls, degradedCalls  int
	slowest               time.Duration
}

func (o *outageCounts) record(d ratelimit.Decision, start time.Time, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	o.slowest = max(o.slowest, took)
	if d.Degraded {
		o.degradedCalls++
		if o.firstDeg.IsZero() {
			o.firstDeg = start
		}
		o.lastDeg = start
	}
	if d.Allowed {
		o.admitted++
		if d.Degraded {
			o.degradedAdm++
		}
	}
}

// hammer calls r.Take for key from g goroutines for d (bounded in calls).
func hammer(r *Limiter, key string, g int, d time.Duration) *outageCounts {
	var o outageCounts
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20_000 && time.Now().Before(end); i++ {
				start := time.Now()
				dec, _ := r.Take(context.Background(), key)
				o.record(dec, start, time.Since(start))
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return &o
}

// waitRecovered polls until r decides on Redis again, bounded.
func waitRecovered(t *testing.T, r *Limiter, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		d, _ := r.Take(ctx, key)
		if !d.Degraded {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the limiter did not go back to Redis within 5s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func testOutage(t *testing.T, fault func(*redistest.Server) error, heal func(*redistest.Server) error) {
	s := redistest.ForTest(t)
	const rate, burst, share = 100, 10, 0.5
	// The default 50 ms is too tight for a shared 2-core machine under
	// -race: healthy calls would time out. The bound checked is the same.
	const timeout = 200 * time.Millisecond
	c := newClient(t, s.Addr())
	warmUp(t, c, 10)
	r := mustRedis(t, c, Config{
		Default:       ratelimit.Quota{Rate: rate, Burst: burst},
		Timeout:       timeout,
		ProbeInterval: 100 * time.Millisecond,
		FallbackShare: share,
	})

	// Healthy: Redis decides.
	o := hammer(r, "k", 10, 500*time.Millisecond)
	if o.degradedCalls != 0 {
		t.Fatalf("healthy phase: %d of %d decisions degraded", o.degradedCalls, o.calls)
	}

	// Fault: requests keep flowing at the fallback rate, none waits past
	// the timeout.
	if err := fault(s); err != nil {
		t.Fatal(err)
	}
	const outage = 1500 * time.Millisecond
	o = hammer(r, "k", 10, outage)
	span := o.lastDeg.Sub(o.firstDeg).Seconds()
	wantMax := float64(burst)*share + rate*share*span + 1
	wantMin := rate * share * span * 0.85
	t.Logf("outage: %d calls, %d degraded, %d admitted (%d degraded) over %.2fs; slowest call %v (timeout %v)",
		o.calls, o.degradedCalls, o.admitted, o.degradedAdm, span, o.slowest, timeout)
	if o.degradedCalls < o.calls*9/10 {
		t.Errorf("only %d of %d calls used the fallback during the outage", o.degradedCalls, o.calls)
	}
	if got := float64(o.degradedAdm); got > wantMax || got < wantMin {
		t.Errorf("fallback admitted %v, want between %.0f and %.0f (%.0f%% of %d/s)", got, wantMin, wantMax, share*100, rate)
	}
	// 50 ms of grace for waking up on a loaded 2-core machine under -race.
	if o.slowest > timeout+50*time.Millisecond {
		t.Errorf("a call took %v during the outage, above the %v timeout", o.slowest, timeout)
	}

	// Healed: after a probe the global limit applies again.
	if err := heal(s); err != nil {
		t.Fatal(err)
	}
	waitRecovered(t, r, "k")
	start := time.Now()
	o = hammer(r, "k", 10, time.Second)
	el := time.Since(start).Seconds()
	byRedis := o.admitted - o.degradedAdm
	t.Logf("recovered: %d calls, %d degraded, %d admitted by Redis in %.2fs", o.calls, o.degradedCalls, byRedis, el)
	// A call that outlasts the timeout on a starved machine is decided
	// locally again; that must stay rare.
	if o.degradedCalls > o.calls/20 {
		t.Errorf("%d of %d decisions degraded after recovery", o.degradedCalls, o.calls)
	}
	if max := float64(burst) + rate*el + 1; float64(byRedis) > max || float64(byRedis) < rate*el*0.8 {
		t.Errorf("after recovery Redis admitted %d in %.2fs, want the global %d/s (at most %.0f)", byRedis, el, rate, max)
	}
}

// The outage tests do not run in parallel with the load tests: their
// 50 ms timeout would measure CPU starvation rather than Redis.
func TestRedisKilled(t *testing.T) {
	testOutage(t, (*redistest.Server).Stop, (*redistest.Server).Restart)
}

func TestRedisHung(t *testing.T) {
	testOutage(t, (*redistest.Server).Pause, (*redistest.Server).Resume)
}
