package breaker

import (
	"errors"
	"time"
)

// ErrOpen is the condition of a breaker that refuses a call. Allow returns it wrapped in an
// *OpenError; test for it with errors.Is.
var ErrOpen = errors.New("breaker: circuit open")

// OpenError is the error Allow returns when it refuses a call. It matches ErrOpen with errors.Is.
// On gRPC paths the picker of package grpcbalancer wraps it in an error with status Unavailable.
type OpenError struct {
	// State is StateOpen, or StateHalfOpen when every probe slot is taken.
	State State
	// Remaining is how long until the breaker lets probes through; 0 when half-open.
	Remaining time.Duration
}

func (e *OpenError) Error() string {
	if e.State == StateHalfOpen {
		return "breaker: circuit open (half-open, all probes in flight)"
	}
	return "breaker: circuit open (half-open in " + e.Remaining.String() + ")"
}

// Is reports whether target is ErrOpen.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// Unwrap returns ErrOpen.
func (e *OpenError) Unwrap() error { return ErrOpen }
