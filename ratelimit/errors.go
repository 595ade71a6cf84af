package ratelimit

import (
	"errors"
	"fmt"
	"time"
)

// ErrLimited is the sentinel every refusal matches with errors.Is, whatever
// the underlying limiter said.
var ErrLimited = errors.New("ratelimit: limited")

// LimitedError is a refusal that carries the suggested delay before retrying.
// It matches [ErrLimited] with errors.Is.
type LimitedError struct {
	// RetryAfter is how long until the request would be admitted. Zero means
	// no delay helps: the limiter admits nothing (rate 0), or the request
	// asks for more tokens than the burst.
	RetryAfter time.Duration
}

func (e *LimitedError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("ratelimit: limited, retry after %v", e.RetryAfter)
	}
	return "ratelimit: limited"
}

// Is reports whether target is [ErrLimited].
func (e *LimitedError) Is(target error) bool { return target == ErrLimited }

// Unwrap returns [ErrLimited].
func (e *LimitedError) Unwrap() error { return ErrLimited }

// Decision is the outcome of one admission check, with what a server needs
// for the RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset and
// Retry-After headers.
type Decision struct {
	// Allowed reports whether the request is admitted.
	Allowed bool
	// Limit is the quota the key may use at once: the burst.
	Limit int
	// Remaining is how many more requests would be admitted right now.
	Remaining int
	// RetryAfter, for a refused request, is how long until it would be
	// admitted; zero when it never would (see [LimitedError.RetryAfter]).
	RetryAfter time.Duration
	// Reset is how long until the quota is whole again (Remaining == Limit).
	Reset time.Duration
	// Degraded reports that a distributed limiter could not reach its store
	// and decided on its local fallback.
	Degraded bool
}

// Err returns nil for an admitted request and a *[LimitedError] otherwise.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &LimitedError{RetryAfter: d.RetryAfter}
}
