package balancer

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
)

// Limits caps what one destination (the endpoints one Balancer balances) may have at once, in
// the manner of Envoy's circuit-breaker thresholds. The zero value of each field means no
// limit. The balancer does not enforce them itself: the client that sends the requests does,
// through a [Limiter] ([Balancer.Limiter], or one of its own from [NewLimiter]); package
// middleware does for its HTTP Transport and its gRPC client (middleware.WithLimits).
type Limits struct {
	// MaxConnections caps the connections open to the destination's endpoints together. A
	// request that needs a new connection when there are this many waits as a pending request
	// (see MaxPendingRequests) for one to close. Only HTTP clients count connections.
	// Default: 0, no limit.
	MaxConnections int `json:"maxConnections,omitempty" yaml:"maxConnections,omitempty"`
	// MaxPendingRequests caps the requests waiting for a connection while MaxConnections are
	// open; a request over it is refused with ErrMaxPendingRequests. A negative value lets
	// none wait: a request that needs a connection over MaxConnections is refused at once with
	// ErrMaxConnections. Default: 0, no limit (requests wait until their context ends).
	MaxPendingRequests int `json:"maxPendingRequests,omitempty" yaml:"maxPendingRequests,omitempty"`
	// MaxRequests caps the requests in flight to the destination (first attempts, retries and
	// hedges each count, from when they are sent until their response is done with); one over
	// it is refused with ErrMaxRequests. Default: 0, no limit.
	MaxRequests int `json:"maxRequests,omitempty" yaml:"maxRequests,omitempty"`
	// MaxRetries caps the retries and hedges in flight to the destination; one over it is
	// not sent (ErrMaxRetries): the caller gets the result of the attempt it would have
	// replaced, as when the retry budget refuses. Default: 0, no limit.
	MaxRetries int `json:"maxRetries,omitempty" yaml:"maxRetries,omitempty"`
}

// IsZero reports whether l sets no limit.
func (l Limits) IsZero() bool { return l == Limits{} }

func (l Limits) validate() error {
	if l.MaxConnections < 0 {
		return fieldErr("Limits.MaxConnections", "must not be negative, got %d", l.MaxConnections)
	}
	if l.MaxRequests < 0 {
		return fieldErr("Limits.MaxRequests", "must not be negative, got %d", l.MaxRequests)
	}
	if l.MaxRetries < 0 {
		return fieldErr("Limits.MaxRetries", "must not be negative, got %d", l.MaxRetries)
	}
	return nil
}

// Limit names one of a destination's [Limits].
type Limit uint8

// The limits.
const (
	LimitConnections Limit = iota
	LimitPendingRequests
	LimitRequests
	LimitRetries
)

var limitNames = [...]string{"connections", "pending_requests", "requests", "retries"}

// String returns the limit's name: "connections", "pending_requests", "requests", "retries".
func (l Limit) String() string {
	if int(l) < len(limitNames) {
		return limitNames[l]
	}
	return "Limit(" + strconv.Itoa(int(l)) + ")"
}

// ErrOverflow matches every refusal by a destination's [Limits] (errors.Is).
var ErrOverflow = errors.New("balancer: destination limit reached")

// OverflowError is a refusal by one of a destination's [Limits]. The errors a [Limiter]
// returns are the ErrMax* values below, so that errors.Is tells the limits apart; each also
// matches ErrOverflow.
type OverflowError struct {
	Limit Limit
}

func (e *OverflowError) Error() string {
	return "balancer: destination's maximum " + e.Limit.String() + " reached"
}

// Is reports whether target is ErrOverflow.
func (e *OverflowError) Is(target error) bool { return target == ErrOverflow }

// The refusals of a [Limiter], one per limit.
var (
	ErrMaxConnections     error = &OverflowError{Limit: LimitConnections}
	ErrMaxPendingRequests error = &OverflowError{Limit: LimitPendingRequests}
	ErrMaxRequests        error = &OverflowError{Limit: LimitRequests}
	ErrMaxRetries         error = &OverflowError{Limit: LimitRetries}
)

// errGaveUp is AcquireConn's answer when its request stopped waiting.
var errGaveUp = errors.New("balancer: the request no longer waits for a connection")

// Limiter counts one destination's requests, retries and connections against its [Limits].
// Create it with [NewLimiter], or take a Balancer's with [Balancer.Limiter]. A nil *Limiter
// limits nothing: its methods admit everything. It is safe for concurrent use; every refusal
// is immediate except AcquireConn's wait as a pending request.
type Limiter struct {
	lim      Limits // immutable
	requests atomic.Int64
	retries  atomic.Int64

	mu      sync.Mutex
	conns   int             // guarded by mu
	waiters []chan struct{} // pending requests, first come first served; guarded by mu
}

// NewLimiter returns a limiter of l, or nil when l sets no limit. It returns an error naming
// the first bad field.
func NewLimiter(l Limits) (*Limiter, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	if l.IsZero() {
		return nil, nil
	}
	return &Limiter{lim: l}, nil
}

// Limits returns the limiter's limits; zero for a nil Limiter.
func (l *Limiter) Limits() Limits {
	if l == nil {
		return Limits{}
	}
	return l.lim
}

// acquire takes one of max slots of n, or reports false when all are taken.
func acquire(n *atomic.Int64, max int) bool {
	for {
		cur := n.Load()
		if max > 0 && cur >= int64(max) {
			return false
		}
		if n.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

// AcquireRequest takes a request slot, or returns ErrMaxRequests. Release it with
// ReleaseRequest.
func (l *Limiter) AcquireRequest() error {
	if l == nil || acquire(&l.requests, l.lim.MaxRequests) {
		return nil
	}
	return ErrMaxRequests
}

// ReleaseRequest gives back a slot AcquireRequest took.
func (l *Limiter) ReleaseRequest() {
	if l != nil {
		l.requests.Add(-1)
	}
}

// AcquireRetry takes a retry slot, or returns ErrMaxRetries. Release it with ReleaseRetry.
func (l *Limiter) AcquireRetry() error {
	if l == nil || acquire(&l.retries, l.lim.MaxRetries) {
		return nil
	}
	return ErrMaxRetries
}

// ReleaseRetry gives back a slot AcquireRetry took.
func (l *Limiter) ReleaseRetry() {
	if l != nil {
		l.retries.Add(-1)
	}
}

// AcquireConn takes a connection slot for a new connection. While MaxConnections are open, it
// waits as a pending request (within MaxPendingRequests, else it returns
// ErrMaxPendingRequests; ErrMaxConnections when none may wait) until a connection is
// released, ctx is done (its error is returned) or stop is closed (the request found a
// connection another way; an error that matches no limit is returned). Release the slot with
// ReleaseConn when the connection closes.
func (l *Limiter) AcquireConn(ctx context.Context, stop <-chan struct{}) error {
	if l == nil || l.lim.MaxConnections == 0 {
		return nil
	}
	l.mu.Lock()
	if l.conns < l.lim.MaxConnections {
		l.conns++
		l.mu.Unlock()
		return nil
	}
	switch p := l.lim.MaxPendingRequests; {
	case p < 0:
		l.mu.Unlock()
		return ErrMaxConnections
	case p > 0 && len(l.waiters) >= p:
		l.mu.Unlock()
		return ErrMaxPendingRequests
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	var err error
	select {
	case <-ch:
		return nil // a released slot was handed over
	case <-ctx.Done():
		err = ctx.Err()
	case <-stop:
		err = errGaveUp
	}
	l.mu.Lock()
	for i, w := range l.waiters {
		if w == ch {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			l.mu.Unlock()
			return err
		}
	}
	l.mu.Unlock()
	l.ReleaseConn() // handed a slot while giving up: pass it on
	return err
}

// ReleaseConn gives back a slot AcquireConn took: to the first pending request, if any.
func (l *Limiter) ReleaseConn() {
	if l == nil || l.lim.MaxConnections == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waiters) > 0 {
		close(l.waiters[0])
		l.waiters = l.waiters[1:]
		return
	}
	l.conns--
}

// InUse returns how many slots of limit k are taken (for LimitPendingRequests, how many
// requests wait); 0 for a nil Limiter. It is meant for status pages and tests.
func (l *Limiter) InUse(k Limit) int {
	if l == nil {
		return 0
	}
	switch k {
	case LimitRequests:
		return int(l.requests.Load())
	case LimitRetries:
		return int(l.retries.Load())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if k == LimitConnections {
		return l.conns
	}
	return len(l.waiters)
}
