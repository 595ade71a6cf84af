package overload

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Outcome is how an admitted call ended, reported through the release
// function that Acquire returned.
type Outcome uint8

const (
	// Success: the call completed and worked.
	Success Outcome = iota
	// Failure: the call completed and failed in a way that signals
	// overload (a 503, a timeout from the callee, RESOURCE_EXHAUSTED).
	Failure
	// Dropped: the call ended before it could tell anything (the caller
	// cancelled); it is not counted.
	Dropped
)

func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Dropped:
		return "dropped"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Limiter admits calls or refuses them.
type Limiter interface {
	// Acquire admits one call. On success the caller must call release
	// exactly once, with the call's outcome; further calls of release do
	// nothing. A refusal is an error matching ratelimit.ErrLimited; a done
	// ctx returns ctx.Err() and takes no permit.
	Acquire(ctx context.Context) (release func(Outcome), err error)
}

var (
	_ Limiter = (*Bulkhead)(nil)
	_ Limiter = (*Adaptive)(nil)
	_ Limiter = (*Throttler)(nil)
)

// once wraps f so that only its first call has an effect.
func once(f func(Outcome)) func(Outcome) {
	var done atomic.Bool
	return func(o Outcome) {
		if done.CompareAndSwap(false, true) {
			f(o)
		}
	}
}
