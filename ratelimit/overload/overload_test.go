package overload

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/ratelimit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// capped lists the limiters that admit exactly two calls at once.
func capped(t *testing.T) map[string]Limiter {
	t.Helper()
	b, err := NewBulkhead(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAdaptive(AdaptiveConfig{MinLimit: 1, MaxLimit: 10, InitialLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]Limiter{"bulkhead": b, "adaptive": a}
}

// TestLimiterContract is the behavioural suite every Limiter passes.
func TestLimiterContract(t *testing.T) {
	th, err := NewThrottler(ThrottlerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	all := capped(t)
	all["throttler"] = th
	for name, l := range all {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if rel, err := l.Acquire(ctx); err != context.Canceled || rel != nil {
				t.Fatalf("Acquire(cancelled) = %v, want context.Canceled itself", err)
			}
			rel, err := l.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			rel(Success)
			rel(Failure) // no effect: release is idempotent
		})
	}
}

func TestCap(t *testing.T) {
	for name, l := range capped(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			// A cancelled Acquire takes no slot: two still fit.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, _ = l.Acquire(cctx)
			r1, err1 := l.Acquire(ctx)
			r2, err2 := l.Acquire(ctx)
			if err1 != nil || err2 != nil {
				t.Fatalf("first two calls: %v, %v", err1, err2)
			}
			start := time.Now()
			if _, err := l.Acquire(ctx); !errors.Is(err, ratelimit.ErrLimited) {
				t.Fatalf("third call: %v, want ratelimit.ErrLimited", err)
			}
			if el := time.Since(start); el > 100*time.Millisecond {
				t.Fatalf("refusal took %v, want immediate", el)
			}
			r1(Success)
			r1(Success) // a second release must not free another slot
			r3, err := l.Acquire(ctx)
			if err != nil {
				t.Fatalf("after a release: %v", err)
			}
			if _, err := l.Acquire(ctx); !errors.Is(err, ratelimit.ErrLimited) {
				t.Fatalf("double release freed a slot: %v", err)
			}
			r2(Dropped)
			r3(Success)
		})
	}
}

func TestBulkheadWaits(t *testing.T) {
	b, err := NewBulkhead(1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := b.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := b.Acquire(context.Background())
		if err == nil {
			r(Success)
		}
		got <- err
	}()
	rel(Success)
	if err := <-got; err != nil {
		t.Fatalf("waiting Acquire = %v, want the released slot", err)
	}
	// A waiter whose ctx ends gets ctx.Err().
	rel, _ = b.Acquire(context.Background())
	defer rel(Success)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Acquire past deadline = %v, want context.DeadlineExceeded", err)
	}
}

func TestBulkheadNeverExceedsCap(t *testing.T) {
	const limit = 3
	b, err := NewBulkhead(limit, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var inflight, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				rel, err := b.Acquire(context.Background())
				if err != nil {
					continue
				}
				admitted.Add(1)
				n := inflight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(50 * time.Microsecond)
				inflight.Add(-1)
				rel(Success)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > limit || p < 1 {
		t.Fatalf("peak in flight %d, want 1..%d", p, limit)
	}
	t.Logf("admitted %d of 10000, peak %d", admitted.Load(), peak.Load())
}

func TestAdaptiveReportsLimit(t *testing.T) {
	a, err := NewAdaptive(AdaptiveConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Limit() != 20 {
		t.Fatalf("default initial limit %d, want 20", a.Limit())
	}
	rel, _ := a.Acquire(context.Background())
	if a.Inflight() != 1 {
		t.Fatalf("Inflight = %d, want 1", a.Inflight())
	}
	rel(Dropped)
	if a.Inflight() != 0 {
		t.Fatalf("Inflight = %d after release, want 0", a.Inflight())
	}
}

func TestThrottlerBacksOff(t *testing.T) {
	th, err := NewThrottler(ThrottlerConfig{FailureRateThreshold: 0.1, MinCalls: 10, Period: time.Minute, MaxRejectionRate: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	// Healthy: nothing refused.
	for range 100 {
		rel, err := th.Acquire(context.Background())
		if err != nil {
			t.Fatalf("refused while healthy: %v", err)
		}
		rel(Success)
	}
	// The callee fails every call: refusals appear, capped at 90 %.
	refused := 0
	for range 2000 {
		rel, err := th.Acquire(context.Background())
		if err != nil {
			if !errors.Is(err, ratelimit.ErrLimited) {
				t.Fatalf("refusal %v is not ratelimit.ErrLimited", err)
			}
			refused++
			continue
		}
		rel(Failure)
	}
	if refused < 500 || refused > 1900 {
		t.Fatalf("refused %d of 2000 while every call failed, want most but not all", refused)
	}
	if r := th.RejectionRate(); r <= 0 || r > 0.9 {
		t.Fatalf("RejectionRate = %v, want in (0, 0.9]", r)
	}
}

func TestValidation(t *testing.T) {
	check := func(err error, field string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), field) || !strings.HasPrefix(err.Error(), "overload: ") {
			t.Errorf("error %v, want one naming %s", err, field)
		}
	}
	_, err := NewBulkhead(0, 0)
	check(err, "maxConcurrent")
	_, err = NewBulkhead(1, -1)
	check(err, "maxWait")
	for cfg, field := range map[*AdaptiveConfig]string{
		{MinLimit: -1}:                   "MinLimit",
		{MaxLimit: -1}:                   "MaxLimit",
		{MinLimit: 10, MaxLimit: 5}:      "MinLimit",
		{InitialLimit: -1}:               "InitialLimit",
		{MaxLimit: 10, InitialLimit: 11}: "InitialLimit",
		{MaxLimitFactor: 0.5}:            "MaxLimitFactor",
		{MaxLimitFactor: math.NaN()}:     "MaxLimitFactor",
		{MaxWait: -1}:                    "MaxWait",
	} {
		_, err := NewAdaptive(*cfg)
		check(err, field)
	}
	for cfg, field := range map[*ThrottlerConfig]string{
		{FailureRateThreshold: 1}:          "FailureRateThreshold",
		{FailureRateThreshold: -0.1}:       "FailureRateThreshold",
		{FailureRateThreshold: math.NaN()}: "FailureRateThreshold",
		{MinCalls: -1}:                     "MinCalls",
		{Period: time.Millisecond}:         "Period",
		{Period: -time.Second}:             "Period",
		{MaxRejectionRate: 1.5}:            "MaxRejectionRate",
	} {
		_, err := NewThrottler(*cfg)
		check(err, field)
	}
	// Defaults that the failsafe builders would reject must not panic.
	if _, err := NewAdaptive(AdaptiveConfig{MinLimit: 300}); err != nil {
		t.Errorf("MinLimit above the default MaxLimit: %v", err)
	}
	if _, err := NewAdaptive(AdaptiveConfig{MaxLimit: 5}); err != nil {
		t.Errorf("MaxLimit below the default InitialLimit: %v", err)
	}
	if Success.String() != "success" || Failure.String() != "failure" || Dropped.String() != "dropped" || Outcome(9).String() != "Outcome(9)" {
		t.Error("Outcome.String")
	}
}
