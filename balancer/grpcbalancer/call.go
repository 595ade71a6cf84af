package grpcbalancer

import (
	"context"
	"errors"
	"sync"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/outcome"
)

// Call is the state the attempts of one RPC share: the endpoints already tried, so that a retry
// or a hedge goes to another endpoint when one is available. Create it with [NewCall], or use
// the zero value for a unary call; it must not be copied once used. It is safe for concurrent
// use by the attempts of one call (hedges run at once).
type Call struct {
	stream bool // immutable

	mu     sync.Mutex
	tried  balancer.Tried // guarded by mu
	key    uint64         // guarded by mu
	keySet bool           // guarded by mu
}

// SetHashKey sets the hash key the call's attempts are picked with (balancer.PickInfo.Key),
// in place of the one the channel's Config.Balancer.HashPolicy would make: 0 means no key, a
// random pick. The interceptors of package middleware set it for a call whose route has a
// hashPolicy of its own. Set it before the first attempt.
func (c *Call) SetHashKey(key uint64) {
	c.mu.Lock()
	c.key, c.keySet = key, true
	c.mu.Unlock()
}

// NewCall returns the state of one call. A stream's successful end reports no latency to the
// balancer (a stream lasts as long as its peers want), only the release of its slot.
func NewCall(stream bool) *Call { return &Call{stream: stream} }

// Tried returns how many endpoints the call's attempts have been sent to (at most
// balancer.MaxTried).
func (c *Call) Tried() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tried.Len()
}

// Attempt is one attempt of a [Call]. The interceptor creates it, puts it in the attempt's
// context with [NewContext], and reads after the attempt what the picker recorded. Its
// methods are safe for concurrent use.
type Attempt struct {
	call *Call // immutable
	// OwnDeadline says that the attempt's context has a deadline of its own, earlier than the
	// call's: when it passes, the attempt timed out and its endpoint is blamed. Set it before
	// the attempt starts.
	OwnDeadline bool
	// Observer, when set, learns what the picker decides for this attempt. Set it before the
	// attempt starts.
	Observer Observer
	// Cause, when set, says which context (if any) ended the attempt that ended with err:
	// the caller's, the call's overall timeout, the attempt's own timeout, or another
	// attempt winning. It replaces OwnDeadline in the classification of the attempt's
	// result. Set it before the attempt starts.
	Cause func(err error) outcome.Cause
	// OnlyNew makes the picker refuse the attempt with [ErrOnlyTried] rather than send it to
	// an endpoint an earlier attempt of the call was sent to: a retry that may go elsewhere
	// (package middleware sends it to its route's fallback). Set it before the attempt starts.
	OnlyNew bool

	mu       sync.Mutex
	endpoint string // guarded by mu
	pickErr  error  // guarded by mu
	refused  bool   // guarded by mu: a breaker refused the attempt
}

// Observer learns what the picker decides for an [Attempt], as it decides it: telemetry uses
// it to name the endpoint of an attempt and to count breaker refusals. Its methods are called
// during the pick, on the RPC's goroutine, while the attempts of the call are held from
// picking (they pick one at a time): they must be quick, and must not call back into the
// Attempt or its Call. The picker may pick more than once for one attempt (when the
// connection it picked is lost before the RPC starts on it); the last Picked counts.
type Observer interface {
	// Picked reports that the picker chose the endpoint at addr for the attempt; probe says
	// that the endpoint's breaker admitted it as a half-open probe.
	Picked(addr string, probe bool)
	// BreakerRefused reports that the breaker of the endpoint at addr refused the attempt;
	// the picker tries another endpoint, or fails the attempt.
	BreakerRefused(addr string)
}

// ErrOnlyTried is the cause of a pick refused because every endpoint the picker could choose
// was already tried by the call and the attempt asked for a new one ([Attempt.OnlyNew]). Like
// the picker's other refusals, it reaches gRPC as status Unavailable.
var ErrOnlyTried = errors.New("grpcbalancer: only endpoints the call already tried")

// NewAttempt returns a new attempt of c.
func (c *Call) NewAttempt() *Attempt { return &Attempt{call: c} }

// InitAttempt makes a, a zero Attempt not yet used, an attempt of c. It is NewAttempt for
// callers that keep the Attempt inside a larger value, to save an allocation per call.
func (c *Call) InitAttempt(a *Attempt) { a.call = c }

// Endpoint returns the address of the endpoint the picker chose, or "" before a pick.
func (a *Attempt) Endpoint() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.endpoint
}

// PickError returns the error with which the picker refused the attempt (every endpoint's
// breaker open, no endpoints), or nil. gRPC hands the caller a plain status error; this one
// has the same status (Unavailable) and matches breaker.ErrOpen or balancer.ErrNoEndpoints
// with errors.Is.
func (a *Attempt) PickError() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pickErr
}

// BreakerRefused reports whether the breaker of an endpoint refused the attempt (the picker
// then tried another endpoint, or failed the attempt), however many did.
func (a *Attempt) BreakerRefused() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refused
}

type ctxKey struct{}

// NewContext returns ctx carrying a.
func NewContext(ctx context.Context, a *Attempt) context.Context {
	return context.WithValue(ctx, ctxKey{}, a)
}

// FromContext returns the Attempt in ctx, or nil.
func FromContext(ctx context.Context) *Attempt {
	a, _ := ctx.Value(ctxKey{}).(*Attempt)
	return a
}
