package backoff

import (
	"context"
	"testing"
	"time"
)

func TestExponential(t *testing.T) {
	for _, tc := range []struct {
		base, limit time.Duration
		n           int
		want        time.Duration
	}{
		{10 * time.Millisecond, time.Second, 1, 10 * time.Millisecond},
		{10 * time.Millisecond, time.Second, 0, 10 * time.Millisecond},
		{10 * time.Millisecond, time.Second, 3, 40 * time.Millisecond},
		{10 * time.Millisecond, time.Second, 8, time.Second},
		{10 * time.Millisecond, time.Second, 1000, time.Second},
		{time.Hour, 24 * time.Hour, 40, 24 * time.Hour},
		{0, time.Second, 5, 0},
	} {
		if got := Exponential(tc.base, tc.limit, tc.n); got != tc.want {
			t.Errorf("Exponential(%v, %v, %d) = %v, want %v", tc.base, tc.limit, tc.n, got, tc.want)
		}
	}
}

func TestFullJitterBounds(t *testing.T) {
	for n := 1; n < 80; n++ {
		if d := FullJitter(time.Millisecond, 100*time.Millisecond, n); d < 0 || d > 100*time.Millisecond {
			t.Fatalf("attempt %d: %v out of [0, 100ms]", n, d)
		}
	}
}

func TestHalfJitterBounds(t *testing.T) {
	for n := 1; n < 80; n++ {
		if d := HalfJitter(10*time.Millisecond, time.Second, n); d < 5*time.Millisecond || d > 505*time.Millisecond {
			t.Fatalf("attempt %d: %v out of [5ms, 505ms]", n, d)
		}
	}
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep ran its course on a done context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep stopped early")
	}
}

func TestEqualJitterStaysInTheUpperHalf(t *testing.T) {
	const base, limit = 100 * time.Millisecond, time.Second
	for n := 1; n <= 8; n++ {
		e := Exponential(base, limit, n)
		lo, hi := e, time.Duration(0)
		for range 2000 {
			d := EqualJitter(base, limit, n)
			if d < e/2 || d > e {
				t.Fatalf("n=%d: %v outside [%v, %v]", n, d, e/2, e)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// The draws spread over the range: not one fixed value (a herd).
		if hi-lo < e/4 {
			t.Errorf("n=%d: draws within [%v, %v], want them spread over [%v, %v]", n, lo, hi, e/2, e)
		}
	}
	if d := EqualJitter(0, time.Second, 3); d != 0 {
		t.Errorf("zero base: %v", d)
	}
}
