package ratelimit

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/proxyless/proxyless/ratelimit/internal/loadtest"
)

func TestNewLocalValidation(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst int
		field string
	}{
		{math.NaN(), 1, "rate"},
		{-1, 1, "rate"},
		{math.Inf(-1), 1, "rate"},
		{1, -1, "burst"},
		{10, 0, "burst"},
	} {
		_, err := NewLocal(tc.rate, tc.burst)
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.HasPrefix(err.Error(), "ratelimit: ") {
			t.Errorf("NewLocal(%v, %d) error = %v, want one naming %q", tc.rate, tc.burst, err, tc.field)
		}
	}
}

func mustLocal(t testing.TB, r float64, burst int) *Local {
	t.Helper()
	l, err := NewLocal(r, burst)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLocalZeroDeniesAll(t *testing.T) {
	l := mustLocal(t, 0, 0)
	for range 100 {
		if l.Allow() {
			t.Fatal("rate 0 burst 0 admitted a request")
		}
	}
	start := time.Now()
	err := l.Wait(context.Background())
	var le *LimitedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLimited) || le.RetryAfter != 0 {
		t.Fatalf("Wait = %v, want a LimitedError with RetryAfter 0", err)
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Fatalf("Wait took %v, want an immediate refusal", el)
	}
}

func TestLocalZeroRateSpendsBurstOnce(t *testing.T) {
	l := mustLocal(t, 0, 3)
	for i := range 3 {
		if !l.Allow() {
			t.Fatalf("request %d refused, want the burst of 3", i)
		}
	}
	if l.Allow() {
		t.Fatal("rate 0 admitted past its burst")
	}
	if err := l.Wait(context.Background()); !errors.Is(err, ErrLimited) {
		t.Fatalf("Wait = %v, want ErrLimited at once (a token never comes)", err)
	}
}

func TestLocalInfiniteAllowsAll(t *testing.T) {
	for _, r := range []float64{math.Inf(1), math.MaxFloat64} {
		l := mustLocal(t, r, 0)
		for range 10_000 {
			if !l.Allow() {
				t.Fatalf("rate %v refused a request", r)
			}
		}
		if err := l.WaitN(context.Background(), 1_000_000); err != nil {
			t.Fatalf("rate %v: WaitN(1e6) = %v", r, err)
		}
	}
}

func TestLocalWaitMoreThanBurst(t *testing.T) {
	l := mustLocal(t, 100, 10)
	start := time.Now()
	err := l.WaitN(context.Background(), 11)
	if !errors.Is(err, ErrLimited) {
		t.Fatalf("WaitN(11) with burst 10 = %v, want ErrLimited", err)
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Fatalf("WaitN(11) took %v, want an immediate refusal", el)
	}
	if err := l.WaitN(context.Background(), -1); err == nil {
		t.Fatal("WaitN(-1) succeeded")
	}
}

func TestLocalWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustLocal(t, 1, 1) // one token per second
		if !l.Allow() {
			t.Fatal("first request refused")
		}
		start := time.Now()
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el != time.Second {
			t.Fatalf("Wait took %v, want 1s", el)
		}
	})
}

func TestLocalWaitPastDeadlineReturnsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustLocal(t, 1, 1)
		l.Allow()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := l.Wait(ctx)
		var le *LimitedError
		if !errors.As(err, &le) || !errors.Is(err, ErrLimited) {
			t.Fatalf("Wait = %v, want *LimitedError", err)
		}
		if el := time.Since(start); el != 0 {
			t.Fatalf("Wait slept %v before refusing", el)
		}
		if le.RetryAfter <= 900*time.Millisecond || le.RetryAfter > time.Second {
			t.Fatalf("RetryAfter = %v, want about 1s", le.RetryAfter)
		}
		// Nothing was taken: the token arrives on schedule.
		time.Sleep(time.Second)
		if !l.Allow() {
			t.Fatal("the refused Wait consumed the next token")
		}
	})
}

func TestLocalWaitCancelledConsumesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustLocal(t, 1, 1)

		// Already cancelled: returns ctx.Err() and takes nothing.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Wait(ctx); err != context.Canceled {
			t.Fatalf("Wait(cancelled) = %v, want context.Canceled itself", err)
		}
		if !l.Allow() {
			t.Fatal("a cancelled Wait consumed the token")
		}

		// Cancelled while waiting: the reservation is given back.
		ctx, cancel = context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- l.Wait(ctx) }()
		time.Sleep(100 * time.Millisecond)
		cancel()
		if err := <-done; err != context.Canceled {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
		time.Sleep(time.Second)
		if !l.Allow() {
			t.Fatal("the cancelled waiter kept its token")
		}
		if l.Allow() {
			t.Fatal("two tokens after one second at 1/s")
		}
	})
}

func TestLocalAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s load test")
	}
	t.Parallel()
	const rate, burst, d = 100, 10, 10 * time.Second
	l := mustLocal(t, rate, burst)
	res := loadtest.Run(50, d, 200_000, 100*time.Microsecond, func() (bool, int64) {
		now := time.Now()
		return l.AllowAt(now), now.UnixNano()
	})
	loadtest.CheckAccuracy(t, res, rate, burst, d)
}

func TestLocalAllowDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	l := mustLocal(t, 1e9, 1_000_000_000)
	if a := testing.AllocsPerRun(1000, func() { l.Allow() }); a != 0 {
		t.Fatalf("Allow allocates %v times", a)
	}
}

func TestLimitedError(t *testing.T) {
	err := error(&LimitedError{RetryAfter: 2 * time.Second})
	if !errors.Is(err, ErrLimited) {
		t.Fatal("LimitedError is not ErrLimited")
	}
	if got := err.Error(); got != "ratelimit: limited, retry after 2s" {
		t.Fatalf("Error() = %q", got)
	}
	if got := (&LimitedError{}).Error(); got != ErrLimited.Error() {
		t.Fatalf("Error() = %q, want %q", got, ErrLimited.Error())
	}
	if (Decision{Allowed: true}).Err() != nil {
		t.Fatal("an admitted decision has an error")
	}
	var le *LimitedError
	if !errors.As((Decision{RetryAfter: time.Second}).Err(), &le) || le.RetryAfter != time.Second {
		t.Fatal("a refused decision's error does not carry RetryAfter")
	}
}
