// Package backoff computes retry delays (exponential with full jitter) and waits for them on
// a context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Exponential returns the capped exponential delay before attempt n (n ≥ 1): base·2^(n-1),
// at most limit.
func Exponential(base, limit time.Duration, n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if base <= 0 {
		return 0
	}
	if n > 62 {
		return limit
	}
	d := base << (n - 1)
	if d <= 0 || d > limit || d>>(n-1) != base {
		return limit
	}
	return d
}

// FullJitter returns a delay drawn uniformly from [0, Exponential(base, limit, n)], as
// recommended for retries that many clients make at once.
func FullJitter(base, limit time.Duration, n int) time.Duration {
	d := Exponential(base, limit, n)
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// HalfJitter returns a delay drawn uniformly from [base/2, base/2 + Exponential(base, limit, n)/2]:
// full jitter over half the exponential bound, never below base/2, so that a source that keeps
// failing is not asked again at once.
func HalfJitter(base, limit time.Duration, n int) time.Duration {
	return base/2 + FullJitter(base, limit, n)/2
}

// EqualJitter returns a delay drawn uniformly from [e/2, e], e = Exponential(base, limit, n):
// half the exponential bound is kept and half is jittered. Unlike full jitter it never waits
// less than half the bound, so the time before the n-th of a run of retries is at least
// (base/2)·(2^n − 1) while the bound grows: a client that keeps failing makes O(log T)
// attempts in a time T, and a fleet that failed at one moment retries spread over [e/2, e].
func EqualJitter(base, limit time.Duration, n int) time.Duration {
	d := Exponential(base, limit, n)
	if d <= 0 {
		return 0
	}
	return d - rand.N(d/2+1)
}

// Sleep waits d or until ctx is done, and reports whether the whole wait ran.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
