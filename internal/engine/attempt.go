package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/tracing"
)

// Dest is what Attempt.Admit picks from: a destination's balancer and, unless breakers are
// off, its endpoints' breakers. Transports that pick themselves (gRPC's picker) leave it
// zero.
type Dest struct {
	Balancer *balancer.Balancer
	Breakers *breaker.Set // nil: no breakers
}

// shared is the state the attempts of one call share.
type shared struct {
	caller        context.Context // the caller's
	ctx           context.Context // the caller's, bounded by the overall timeout
	cancelOverall context.CancelFunc
	callerGone    func() bool // nil, or reports a cancellation the caller made another way
	stats         *Stats
	dest          *Dest // guarded by mu once attempts run: Admit may switch it to fallback
	fallback      *Dest // guarded by mu; nil once used, or without one
	onFallback    func()
	policy        *Policy
	key           uint64 // the balancer's hash key: Call.HashKey

	mu       sync.Mutex     // guards tried and attempts
	tried    balancer.Tried // endpoints already used
	attempts []*Attempt     // every attempt launched, to cancel the losers

	first Attempt // attempt 0, in the call's allocation
}

// Attempt is one attempt of a call. The engine creates it; the Sender reads N, Kind and
// Waited, calls Admit unless its transport picks, and may keep its own state in Value.
type Attempt struct {
	N      int                 // 0 for the first attempt
	Kind   tracing.AttemptKind // first, retry or hedge
	Waited time.Duration       // the backoff or Retry-After waited before it
	Start  time.Time           // when it started: the time of its pick
	Value  any                 // the Sender's own state for the attempt

	s         *shared
	ctx       context.Context // the attempt's: its timeout, or a cancel of its own
	cancel    context.CancelFunc
	abandoned atomic.Bool  // cancelled because another attempt won
	timer     *time.Timer  // the attempt timeout's, with AttemptTimeoutSendOnly; else nil
	sendState atomic.Int32 // with timer: sending, sent or timedOut

	admitted bool // Admit succeeded: pick (and permit) await feedback
	pick     balancer.Pick
	permit   breaker.Permit
	permits  bool // permit is a breaker's: its destination has breakers
	endpoint string
	probe    bool
}

// Endpoint returns the address Admit picked, or "".
func (a *Attempt) Endpoint() string { return a.endpoint }

// Probe reports whether the endpoint's breaker admitted the attempt as a half-open probe.
func (a *Attempt) Probe() bool { return a.probe }

// Context returns the attempt's context.
func (a *Attempt) Context() context.Context { return a.ctx }

// newAttempt prepares attempt n, with its context, and registers it so that it can be
// cancelled when another wins, before it picks anything.
func (s *shared) newAttempt(n int, kind tracing.AttemptKind, waited time.Duration, cancellable bool) *Attempt {
	a := &s.first // fresh: attempt 0 is made once per call
	if n > 0 {
		a = new(Attempt)
	}
	a.N, a.Kind, a.Waited, a.s, a.ctx, a.cancel = n, kind, waited, s, s.ctx, noop
	switch to := s.policy.AttemptTimeout; {
	case to > 0 && s.policy.AttemptTimeoutSendOnly:
		a.sendOnlyTimeout(to)
	case to > 0:
		a.ctx, a.cancel = context.WithTimeout(s.ctx, to)
	case cancellable || s.policy.Cancellable:
		a.ctx, a.cancel = context.WithCancel(s.ctx)
	}
	a.Start = time.Now()
	if cancellable {
		s.mu.Lock()
		s.attempts = append(s.attempts, a)
		s.mu.Unlock()
	}
	return a
}

func noop() {}

// The states of an attempt whose timeout bounds its Send only.
const (
	sending int32 = iota
	sent
	timedOut
)

// sendOnlyTimeout gives the attempt a context that a timer cancels after to unless Send has
// returned by then (see sent).
func (a *Attempt) sendOnlyTimeout(to time.Duration) {
	ctx, cancel := context.WithCancel(a.s.ctx)
	a.ctx = ctx
	a.timer = time.AfterFunc(to, func() {
		if a.sendState.CompareAndSwap(sending, timedOut) {
			cancel()
		}
	})
	t := a.timer
	a.cancel = func() {
		t.Stop()
		cancel()
	}
}

// AttemptTimeoutError is the error of an attempt whose timeout (one that bounds Send only)
// passed before Send returned. It matches context.DeadlineExceeded and is a net.Error whose
// Timeout is true.
type AttemptTimeoutError struct {
	After time.Duration // the attempt timeout
}

func (e *AttemptTimeoutError) Error() string {
	return fmt.Sprintf("middleware: attempt timeout: no response within %v", e.After)
}

// Is matches context.DeadlineExceeded.
func (e *AttemptTimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Timeout reports true, as for a net.Error.
func (e *AttemptTimeoutError) Timeout() bool { return true }

// Temporary reports false, as for a net.Error.
func (e *AttemptTimeoutError) Temporary() bool { return false }

// sent stops the attempt timeout of an attempt whose timeout bounds its Send only, and
// reports whether Send returned in time (always true for other attempts).
func (a *Attempt) sent() bool {
	if a.timer == nil {
		return true
	}
	if !a.sendState.CompareAndSwap(sending, sent) {
		return false
	}
	a.timer.Stop()
	return true
}

// Cause returns what, if anything, ended the attempt's context: the caller, the overall
// timeout, another attempt winning, or the attempt's own timeout.
func (a *Attempt) Cause() outcome.Cause {
	s := a.s
	switch {
	case s.caller.Err() != nil || (s.callerGone != nil && s.callerGone()):
		return outcome.CauseCaller
	case s.ctx.Err() != nil:
		return outcome.CauseOverallTimeout
	case a.abandoned.Load():
		return outcome.CauseAbandoned
	case a.timer != nil:
		if a.sendState.Load() == timedOut {
			return outcome.CauseAttemptTimeout
		}
	case a.ctx.Err() != nil:
		return outcome.CauseAttemptTimeout
	}
	return outcome.CauseNone
}

// DeadlineCause returns the cause that ended the attempt if its deadline is (all but)
// reached: see DeadlineCauseOf.
func (a *Attempt) DeadlineCause() outcome.Cause { return DeadlineCauseOf(a.s.caller, a.s.ctx, a.ctx) }

// DeadlineCauseOf returns whose deadline ends an attempt that runs in attempt, a context
// derived from call (the caller's context, call, bounded by the overall timeout), when that
// deadline is (all but) reached: the attempt's own timeout when it is earlier than the
// call's, else the overall timeout or the caller's deadline, whichever comes first;
// CauseNone without a deadline, or with one more than DeadlineSlack away. A transport that
// propagates deadlines (gRPC) uses it to tell whose deadline a server's DEADLINE_EXCEEDED
// was: the server's clock may run out a moment before ours, but not seconds before.
func DeadlineCauseOf(caller, call, attempt context.Context) outcome.Cause {
	dl, ok := attempt.Deadline()
	if !ok || time.Until(dl) > DeadlineSlack {
		return outcome.CauseNone
	}
	if cdl, ok := caller.Deadline(); ok && !cdl.After(dl) {
		return outcome.CauseCaller
	}
	if odl, ok := call.Deadline(); ok && !odl.After(dl) {
		return outcome.CauseOverallTimeout
	}
	return outcome.CauseAttemptTimeout
}

// DeadlineSlack is how long before a deadline a server's DEADLINE_EXCEEDED is still charged to
// that deadline (see DeadlineCause): gRPC sends the time left rounded down, and the server
// starts its clock a little after ours.
const DeadlineSlack = 20 * time.Millisecond

// Admit picks an endpoint for the attempt, one no earlier attempt of the call used when
// there is one, whose breaker admits it. Endpoints whose breaker is open are skipped; when
// every one refuses, it returns the breaker's error (matching breaker.ErrOpen); with no
// endpoint, the balancer's (balancer.ErrNoEndpoints). A refused attempt counts once in
// Stats.BreakerRefusals, however many endpoints it skipped; refused, when not nil, learns
// each endpoint skipped.
//
// With a Call.Fallback, the attempt (and every later one of the call) picks from the fallback
// instead when the destination refuses it so, or when a retry would go back to an endpoint
// of the destination the call already used (a hedge may: it races the attempt it hedges).
func (a *Attempt) Admit(refused func(addr string)) error {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	err := a.admitFrom(s.dest, refused, s.fallback != nil)
	if err == nil || s.fallback == nil ||
		!(err == errOnlyTried || errors.Is(err, breaker.ErrOpen) || errors.Is(err, balancer.ErrNoEndpoints)) {
		return err
	}
	s.dest, s.fallback, s.tried = s.fallback, nil, balancer.Tried{}
	if s.onFallback != nil {
		s.onFallback()
	}
	return a.admitFrom(s.dest, refused, false)
}

// errOnlyTried says a retry would go back to an endpoint the call used.
var errOnlyTried = errors.New("engine: only endpoints already tried")

// admitFrom is Admit's pick from d, under s.mu. With onlyNew, a retry that would go back to
// an endpoint already used fails with errOnlyTried.
func (a *Attempt) admitFrom(d *Dest, refused func(addr string), onlyNew bool) error {
	s := a.s
	var lastOpen error
	for range balancer.MaxTried + 1 {
		pick, err := d.Balancer.Pick(balancer.PickInfo{Now: a.Start, Key: s.key, Tried: s.tried})
		if err != nil {
			return err
		}
		if onlyNew && a.Kind == tracing.AttemptRetry && s.tried.Contains(pick) {
			pick.Done(balancer.DoneInfo{Now: a.Start, Outcome: balancer.OutcomeIgnore})
			return errOnlyTried
		}
		s.tried.Add(pick)
		addr := pick.Endpoint.Addr
		if d.Breakers == nil {
			a.admitted, a.pick, a.endpoint, a.permits = true, pick, addr, false
			return nil
		}
		permit, err := d.Breakers.Allow(addr)
		if err == nil {
			a.admitted, a.pick, a.permit, a.endpoint, a.probe, a.permits = true, pick, permit, addr, permit.Probe(), true
			return nil
		}
		pick.Done(balancer.DoneInfo{Now: a.Start, Outcome: balancer.OutcomeIgnore})
		if refused != nil {
			refused(addr)
		}
		lastOpen = err
	}
	s.stats.BreakerRefusals.Add(1)
	return lastOpen
}

// feedback reports the attempt's outcome to the balancer, the breaker and the latency
// history (see the table in package outcome), once.
func (a *Attempt) feedback(out outcome.Outcome, lat time.Duration) {
	if !a.admitted {
		return
	}
	a.admitted = false
	k := out.Kind
	di := balancer.DoneInfo{Now: a.Start.Add(lat), Latency: lat, Outcome: k.Balancer()}
	if out.HasRetryAfter && out.RetryAfter > 0 {
		di.RetryAfter = out.RetryAfter
	}
	if k == outcome.Canceled {
		di.MinLatency = lat // cut short: the endpoint took at least this long
	}
	a.pick.Done(di)
	if a.permits {
		a.permit.Done(k.Breaker())
	}
}
