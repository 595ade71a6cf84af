package breaker_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/outcome"
)

// record makes one call through b that ends with o, and fails the test if b refuses it.
func record(t *testing.T, b *breaker.Breaker, o breaker.Outcome) {
	t.Helper()
	p, err := b.Allow()
	require.NoError(t, err)
	p.Done(o)
}

// events collects state changes; safe for concurrent use.
type events struct {
	mu  sync.Mutex
	got []breaker.StateChange
}

func (e *events) add(c breaker.StateChange) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, c)
}

func (e *events) list() []breaker.StateChange {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]breaker.StateChange(nil), e.got...)
}

func newBreaker(t *testing.T, cfg breaker.Config, opts ...breaker.Option) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(cfg, opts...)
	require.NoError(t, err)
	return b
}

func TestOpensOnFailureRateOverMinimumVolume(t *testing.T) {
	const F, S = breaker.Failure, breaker.Success
	tests := []struct {
		name     string
		cfg      breaker.Config
		outcomes []breaker.Outcome
		pause    time.Duration // between the first len-1 outcomes and the last
		want     breaker.State
	}{
		{name: "below minimum volume", outcomes: []breaker.Outcome{F, F, F, F, F, F, F, F, F}, want: breaker.StateClosed},
		{name: "at threshold", outcomes: []breaker.Outcome{S, F, S, F, S, F, S, F, S, F}, want: breaker.StateOpen},
		{name: "under threshold", outcomes: []breaker.Outcome{S, F, S, F, S, F, S, F, S, S}, want: breaker.StateClosed},
		{name: "ignored calls do not count", outcomes: []breaker.Outcome{F, F, F, F, F, F, F, F, F, breaker.Ignore},
			want: breaker.StateClosed},
		{name: "all failures", outcomes: []breaker.Outcome{F, F, F, F, F, F, F, F, F, F}, want: breaker.StateOpen},
		{name: "failures stay in the count window",
			outcomes: []breaker.Outcome{F, F, F, F, F, F, F, F, F, F}, pause: time.Hour, want: breaker.StateOpen},
		{name: "count window slides",
			outcomes: []breaker.Outcome{F, F, F, F, S, S, S, S, S, S, S, S, S, S, F, F, F, F},
			want:     breaker.StateClosed}, // never 5 failures among the last 10
		{name: "time window at threshold", cfg: breaker.Config{Window: 10 * time.Second},
			outcomes: []breaker.Outcome{S, F, S, F, S, F, S, F, S, F}, want: breaker.StateOpen},
		{name: "time window below minimum volume", cfg: breaker.Config{Window: 10 * time.Second},
			outcomes: []breaker.Outcome{F, F, F, F, F, F, F, F, F}, want: breaker.StateClosed},
		{name: "time window holds more than the minimum volume", cfg: breaker.Config{Window: 10 * time.Second},
			outcomes: []breaker.Outcome{S, S, S, S, S, S, S, S, S, S, F, F, F, F, F, F, F, F, F},
			want:     breaker.StateClosed}, // 9 of 19
		{name: "failures leave the time window", cfg: breaker.Config{Window: 10 * time.Second},
			outcomes: []breaker.Outcome{F, F, F, F, F, F, F, F, F, F}, pause: 10 * time.Second, want: breaker.StateClosed},
		{name: "failures inside the time window", cfg: breaker.Config{Window: 10 * time.Second},
			outcomes: []breaker.Outcome{F, F, F, F, F, F, F, F, F, F}, pause: 8 * time.Second, want: breaker.StateOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := tt.cfg
				cfg.MinimumVolume, cfg.FailureRateThreshold = 10, 50
				b := newBreaker(t, cfg)
				last := len(tt.outcomes) - 1
				for _, o := range tt.outcomes[:last] {
					record(t, b, o)
				}
				require.Equal(t, breaker.StateClosed, b.State())
				time.Sleep(tt.pause)
				record(t, b, tt.outcomes[last])
				require.Equal(t, tt.want, b.State())
			})
		})
	}
}

func TestOpenRefusesUntilDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		b := newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: 4 * time.Second}, breaker.OnStateChange(ev.add))
		record(t, b, breaker.Failure)

		time.Sleep(time.Second)
		p, err := b.Allow()
		require.Equal(t, breaker.Permit{}, p)
		require.ErrorIs(t, err, breaker.ErrOpen)
		var oe *breaker.OpenError
		require.ErrorAs(t, err, &oe)
		require.Equal(t, breaker.StateOpen, oe.State)
		require.Equal(t, 3*time.Second, oe.Remaining)
		require.EqualError(t, err, "breaker: circuit open (half-open in 3s)")
		require.Equal(t, breaker.StateOpen, b.State())

		time.Sleep(3 * time.Second)
		require.Equal(t, breaker.StateHalfOpen, b.State(), "State moves to half-open lazily once the delay is over")
		require.Equal(t, []breaker.StateChange{
			{From: breaker.StateClosed, To: breaker.StateOpen},
			{From: breaker.StateOpen, To: breaker.StateHalfOpen},
		}, ev.list())
	})
}

func TestHalfOpenAdmitsExactlyProbes(t *testing.T) {
	const probes, callers = 5, 200
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: time.Second, HalfOpenProbes: probes})
		record(t, b, breaker.Failure)
		time.Sleep(time.Second) // nobody has asked since: the breaker is still open, lazily

		var (
			start    = make(chan struct{})
			wg       sync.WaitGroup
			admitted atomic.Int32
			refused  atomic.Int32
			mu       sync.Mutex
			permits  []breaker.Permit
		)
		for range callers {
			wg.Go(func() {
				<-start
				p, err := b.Allow()
				if err != nil {
					if !errors.Is(err, breaker.ErrOpen) {
						t.Errorf("Allow: %v, want ErrOpen", err)
					}
					refused.Add(1)
					return
				}
				if !p.Probe() {
					t.Errorf("half-open permit is not a probe")
				}
				admitted.Add(1)
				mu.Lock()
				permits = append(permits, p)
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		require.EqualValues(t, probes, admitted.Load())
		require.EqualValues(t, callers-probes, refused.Load())
		require.Equal(t, breaker.StateHalfOpen, b.State())

		_, err := b.Allow()
		var oe *breaker.OpenError
		require.ErrorAs(t, err, &oe)
		require.Equal(t, breaker.StateHalfOpen, oe.State)

		for _, p := range permits {
			p.Done(breaker.Success)
		}
		require.Equal(t, breaker.StateClosed, b.State())
	})
}

func TestClosesAfterSuccesses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		b := newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: time.Second, HalfOpenProbes: 3, SuccessesToClose: 2},
			breaker.OnStateChange(ev.add))
		record(t, b, breaker.Failure)
		time.Sleep(time.Second)

		p1, err := b.Allow()
		require.NoError(t, err)
		p2, err := b.Allow()
		require.NoError(t, err)
		p1.Done(breaker.Success)
		require.Equal(t, breaker.StateHalfOpen, b.State())
		p2.Done(breaker.Success)
		require.Equal(t, breaker.StateClosed, b.State())

		p, err := b.Allow()
		require.NoError(t, err)
		require.False(t, p.Probe())
		p.Done(breaker.Success)

		require.Equal(t, []breaker.StateChange{
			{From: breaker.StateClosed, To: breaker.StateOpen},
			{From: breaker.StateOpen, To: breaker.StateHalfOpen},
			{From: breaker.StateHalfOpen, To: breaker.StateClosed},
		}, ev.list())
	})
}

func TestReopensWhenProbesFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 3 probes, 2 successes to close: a second failure in the round reopens.
		b := newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: time.Second, HalfOpenProbes: 3, SuccessesToClose: 2})
		record(t, b, breaker.Failure)
		time.Sleep(time.Second)

		record(t, b, breaker.Success)
		record(t, b, breaker.Failure)
		require.Equal(t, breaker.StateHalfOpen, b.State())
		record(t, b, breaker.Failure)
		require.Equal(t, breaker.StateOpen, b.State())
		_, err := b.Allow()
		require.ErrorIs(t, err, breaker.ErrOpen)
	})
}

func TestCallerCancellationNeverOpens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, breaker.Config{MinimumVolume: 5})

		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
		defer cancel2()
		for range 100 {
			p, err := b.Allow()
			require.NoError(t, err)
			// What net/http returns when the request's context is done.
			p.Done(outcome.FromHTTP(nil, &url.Error{Op: "Get", URL: "http://a", Err: context.Canceled}, causeOf(canceled), time.Time{}).Kind.Breaker())
			p, err = b.Allow()
			require.NoError(t, err)
			p.Done(outcome.FromHTTP(nil, &url.Error{Op: "Get", URL: "http://a", Err: context.DeadlineExceeded}, causeOf(expired), time.Time{}).Kind.Breaker())
		}
		require.Equal(t, breaker.StateClosed, b.State())
	})
}

func TestCallerCancellationReleasesProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: time.Second, HalfOpenProbes: 1})
		record(t, b, breaker.Failure)
		time.Sleep(time.Second)

		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		for range 10 {
			p, err := b.Allow()
			require.NoError(t, err)
			require.True(t, p.Probe())
			_, err = b.Allow()
			require.ErrorIs(t, err, breaker.ErrOpen, "one probe at a time")

			p.Done(outcome.FromHTTP(nil, context.Canceled, causeOf(canceled), time.Time{}).Kind.Breaker())
			require.Equal(t, breaker.StateHalfOpen, b.State())
			p.Done(breaker.Ignore) // twice: must not free a second slot
		}

		p, err := b.Allow()
		require.NoError(t, err)
		_, err = b.Allow()
		require.ErrorIs(t, err, breaker.ErrOpen, "a repeated Done freed an extra slot")
		p.Done(breaker.Success)
		require.Equal(t, breaker.StateClosed, b.State())
	})
}

func TestLateResultsDropped(t *testing.T) {
	t.Run("closed permit ends after open", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: time.Second, HalfOpenProbes: 2})
			late, err := b.Allow()
			require.NoError(t, err)
			record(t, b, breaker.Failure)
			require.Equal(t, breaker.StateOpen, b.State())
			late.Done(breaker.Success) // dropped while open
			time.Sleep(time.Second)

			a, err := b.Allow()
			require.NoError(t, err)
			for range 3 {
				late.Done(breaker.Success) // dropped while half-open: must not count or free a permit
			}
			require.Equal(t, breaker.StateHalfOpen, b.State())
			c, err := b.Allow()
			require.NoError(t, err)
			_, err = b.Allow()
			require.ErrorIs(t, err, breaker.ErrOpen, "a late result freed a probe slot")

			a.Done(breaker.Success)
			require.Equal(t, breaker.StateHalfOpen, b.State())
			c.Done(breaker.Success)
			require.Equal(t, breaker.StateClosed, b.State())
			late.Done(breaker.Failure) // dropped in the new closed state
			require.Equal(t, breaker.StateClosed, b.State())
		})
	})
	t.Run("probe of an earlier round", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: time.Second, HalfOpenProbes: 2})
			record(t, b, breaker.Failure)
			time.Sleep(time.Second)

			a1, err := b.Allow()
			require.NoError(t, err)
			b1, err := b.Allow()
			require.NoError(t, err)
			a1.Done(breaker.Failure) // reopens: every probe must succeed
			require.Equal(t, breaker.StateOpen, b.State())
			time.Sleep(time.Second)

			a2, err := b.Allow()
			require.NoError(t, err)
			b1.Done(breaker.Success) // from round 1: dropped
			b1.Done(breaker.Ignore)  // and cannot free a slot of round 2 either
			b2, err := b.Allow()
			require.NoError(t, err)
			_, err = b.Allow()
			require.ErrorIs(t, err, breaker.ErrOpen)
			require.Equal(t, breaker.StateHalfOpen, b.State())

			a2.Done(breaker.Success)
			require.Equal(t, breaker.StateHalfOpen, b.State(), "round 1's success was counted")
			b2.Done(breaker.Success)
			require.Equal(t, breaker.StateClosed, b.State())
		})
	})
}

func TestStateChangeCallbackHoldsNoLock(t *testing.T) {
	var b *breaker.Breaker
	var seen []breaker.State // written by the callback, read after done
	b = newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: time.Nanosecond},
		breaker.OnStateChange(func(breaker.StateChange) {
			// Would deadlock if called with the breaker's lock held.
			seen = append(seen, b.State())
			if p, err := b.Allow(); err == nil {
				p.Done(breaker.Ignore)
			}
		}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if p, err := b.Allow(); err == nil {
			p.Done(breaker.Failure)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("callback deadlocked")
	}
	require.NotEmpty(t, seen)
}

func TestZeroPermit(t *testing.T) {
	var p breaker.Permit
	p.Done(breaker.Failure) // no-op, no panic
	require.False(t, p.Probe())
}

func TestAdmitRecordDoesNotAllocate(t *testing.T) {
	b := newBreaker(t, breaker.Config{})
	s, err := breaker.NewSet(breaker.Config{Window: time.Minute})
	require.NoError(t, err)
	s.Get("10.0.0.1:80")
	allocs := testing.AllocsPerRun(1000, func() {
		p, _ := b.Allow()
		p.Done(breaker.Success)
		p, _ = s.Allow("10.0.0.1:80")
		p.Done(breaker.Success)
		p, _ = b.Allow()
		p.Done(breaker.Ignore)
	})
	require.Zero(t, allocs)
}

// TestConcurrentInvariants hammers one breaker with random outcomes and checks that no more than
// HalfOpenProbes probes are ever in flight. Bounded by iterations, not time.
func TestConcurrentInvariants(t *testing.T) {
	const probes, workers, iterations = 3, 16, 3000
	b := newBreaker(t, breaker.Config{MinimumVolume: 5, OpenDelay: 50 * time.Microsecond, HalfOpenProbes: probes,
		SuccessesToClose: 2, Window: time.Second})
	var inFlight, maxInFlight, opens atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range iterations {
				p, err := b.Allow()
				if err != nil {
					opens.Add(1)
					continue
				}
				if p.Probe() {
					n := inFlight.Add(1)
					for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
					}
					inFlight.Add(-1)
				}
				p.Done(breaker.Outcome((w + i) % 3)) // ignore, success, failure
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, maxInFlight.Load(), int32(probes))
	require.Positive(t, maxInFlight.Load(), "no probe was ever admitted: the test exercised nothing")
	require.Positive(t, opens.Load(), "the breaker never refused: the test exercised nothing")
}

func TestSetSync(t *testing.T) {
	s, err := breaker.NewSet(breaker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a := s.Get("a")
	s.Sync("a", "b", "c", "b")
	if s.Len() != 3 {
		t.Fatalf("Len = %d after Sync(a, b, c), want 3", s.Len())
	}
	if s.Get("a") != a {
		t.Fatal("Sync replaced the breaker of a key it already had")
	}
	b := s.Get("b")
	s.Sync("b")
	if s.Len() != 1 || s.Get("b") != b {
		t.Fatalf("Sync(b): Len %d, same b %v", s.Len(), s.Get("b") == b)
	}
	var keys []string
	s.Range(func(k string, _ *breaker.Breaker) bool { keys = append(keys, k); return true })
	if len(keys) != 1 || keys[0] != "b" {
		t.Fatalf("keys after Sync(b): %v", keys)
	}
}

// causeOf is the cause an engine would report for a call in ctx: the caller's, once ctx is
// done.
func causeOf(ctx context.Context) outcome.Cause {
	if ctx.Err() != nil {
		return outcome.CauseCaller
	}
	return outcome.CauseNone
}
