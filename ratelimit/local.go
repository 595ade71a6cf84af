package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Local is a token bucket for one process: it admits rate events per second
// on average and up to burst at once.
//
// The bucket is one atomic timestamp (GCRA, equivalent to a token bucket):
// a check is a monotonic clock read and a compare-and-swap, with no lock.
// A caller that read the clock early can only be refused more strictly,
// never admitted twice, so the limit holds under any contention.
//
// Create it with [NewLocal]; the zero value is not usable. It is safe for
// concurrent use and needs no cleanup.
type Local struct {
	base time.Time // immutable; monotonic origin of tat
	g    gcra      // immutable
	// tat is the theoretical arrival time (ns since base) of the next
	// event; for a rate-0 bucket it counts the tokens spent instead.
	tat atomic.Int64
}

// quotaBurstOnly is a bucket that never refills (rate 0, burst > 0).
const quotaBurstOnly quotaKind = 100

// minTAT starts every bucket full, even for times before its creation.
const minTAT = -(int64(1) << 62)

// NewLocal returns a limiter of r events per second with bucket size burst.
// r may be math.Inf(1), which admits everything. r == 0 admits the first
// burst events and nothing after; r == 0 with burst == 0 admits nothing.
// Errors name the bad parameter.
func NewLocal(r float64, burst int) (*Local, error) {
	switch {
	case math.IsNaN(r):
		return nil, errors.New("ratelimit: rate is NaN")
	case r < 0:
		return nil, fmt.Errorf("ratelimit: rate %v is negative", r)
	case burst < 0:
		return nil, fmt.Errorf("ratelimit: burst %d is negative", burst)
	case r > 0 && float64(time.Second)/r >= 1 && burst == 0: // faster than 1/ns counts as unlimited
		return nil, fmt.Errorf("ratelimit: burst must be at least 1 when rate is %v (burst 0 would admit nothing)", r)
	}
	l := &Local{base: time.Now()}
	switch {
	case r == 0 && burst > 0:
		l.g = gcra{kind: quotaBurstOnly, burst: burst}
	default:
		g, err := Quota{Rate: r, Burst: burst}.compile("")
		if err != nil {
			return nil, err
		}
		l.g = g
		l.tat.Store(minTAT)
	}
	return l, nil
}

// Allow reports whether one event may happen now. It reads the monotonic
// clock once.
func (l *Local) Allow() bool {
	ok, _ := l.take(int64(time.Since(l.base)), 1)
	return ok
}

// AllowAt reports whether one event may happen at now.
func (l *Local) AllowAt(now time.Time) bool {
	ok, _ := l.take(int64(now.Sub(l.base)), 1)
	return ok
}

// take admits n events at now (ns since base) or reports how long until it
// could; never is -1 when no wait helps.
func (l *Local) take(now int64, n int) (ok bool, wait int64) {
	g := &l.g
	switch g.kind {
	case quotaUnlimited:
		return true, 0
	case quotaDenyAll:
		return false, never
	case quotaBurstOnly:
		for {
			spent := l.tat.Load()
			if spent+int64(n) > int64(g.burst) {
				return false, never
			}
			if l.tat.CompareAndSwap(spent, spent+int64(n)) {
				return true, 0
			}
		}
	}
	if n > g.burst {
		return false, never
	}
	for {
		old := l.tat.Load()
		next := max(old, now) + g.interval*int64(n)
		if allowAt := next - g.tau; allowAt > now {
			return false, allowAt - now
		}
		if l.tat.CompareAndSwap(old, next) {
			return true, 0
		}
	}
}

const never = -1

// Wait blocks until one event may happen. See [Local.WaitN].
func (l *Local) Wait(ctx context.Context) error {
	return l.WaitN(ctx, 1)
}

// WaitN blocks until n events may happen, and takes their tokens.
//
// It returns at once, without taking a token, when ctx is already done
// (ctx.Err()), when no wait can help: n exceeds the burst, or the rate is 0
// and the bucket is spent (a *[LimitedError] with RetryAfter 0), or when
// the wait would outlast ctx's deadline (a *[LimitedError] with the wait it
// would need). If ctx ends while waiting, the tokens are given back and
// ctx.Err() is returned.
func (l *Local) WaitN(ctx context.Context, n int) error {
	if n < 0 {
		return fmt.Errorf("ratelimit: WaitN n %d is negative", n)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	g := &l.g
	if g.kind != quotaFinite || n > g.burst {
		if ok, _ := l.take(0, n); ok {
			return nil
		}
		return &LimitedError{}
	}
	now := int64(time.Since(l.base))
	deadline, hasDeadline := ctx.Deadline()
	var wait int64
	for {
		old := l.tat.Load()
		next := max(old, now) + g.interval*int64(n)
		wait = next - g.tau - now
		if wait > 0 && hasDeadline && int64(deadline.Sub(l.base)) < now+wait {
			return &LimitedError{RetryAfter: time.Duration(wait)}
		}
		if l.tat.CompareAndSwap(old, next) {
			break
		}
	}
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(wait))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		// Give the reservation back: later events may go that much sooner.
		l.tat.Add(-g.interval * int64(n))
		return ctx.Err()
	}
}

// Limit returns the rate in events per second (+Inf when unlimited).
func (l *Local) Limit() float64 {
	switch l.g.kind {
	case quotaUnlimited:
		return math.Inf(1)
	case quotaFinite:
		return l.g.rate
	}
	return 0
}

// Burst returns the bucket size.
func (l *Local) Burst() int { return l.g.burst }
