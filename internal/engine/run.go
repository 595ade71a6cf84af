package engine

import (
	"context"
	"time"

	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/internal/latency"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/tracing"
)

// Sender sends the attempts of one call over a transport.
type Sender[R any] interface {
	// Send sends attempt a in a.Context(). Unless its transport picks endpoints itself, it
	// calls a.Admit first and, when that fails, returns its error without sending.
	Send(a *Attempt) (R, error)
	// Classify classifies what Send returned, given the cause that ended the attempt's
	// context (if any), and says whether the transport allows sending the call again after
	// it (the engine then applies the policy, the budget and the deadline).
	Classify(a *Attempt, v R, err error, cause outcome.Cause) (o outcome.Outcome, retry bool)
	// Discard releases a result that will not reach the caller (a lost hedge, a failure
	// that is retried): drain and close what it holds, end its telemetry.
	Discard(a *Attempt, v R, err error)
	// Detach returns a copy of a failed result that holds no connection (an HTTP response
	// with its body read into memory), to keep while its retry waits and is sent: returned
	// if the retry is refused, discarded otherwise. It reports false when v cannot be kept
	// so (a body over a cap); v is then discarded.
	Detach(a *Attempt, v R) (R, bool)
}

// Call is one logical call. Fill it and pass it to Run.
type Call[R any] struct {
	Policy *Policy
	Budget *Budget
	Stats  *Stats
	Sender Sender[R]
	// Dest is what Attempt.Admit picks from; nil when the transport picks itself.
	Dest *Dest
	// HashKey is the request's hash key, which Attempt.Admit passes to the balancer
	// (balancer.PickInfo.Key); 0: none.
	HashKey uint64
	// Hedgeable says attempts may run at once (the call may be sent more than once).
	Hedgeable bool
	// Latency, when set, is the destination's latency history: successful attempts are
	// recorded in it, and a hedge policy with a Quantile reads its delay from it.
	Latency *latency.Histogram
	// CallerGone, when set, reports that the caller cancelled by a means other than the
	// context (net/http's Request.Cancel).
	CallerGone func() bool
	// OnBudgetRefused, when set, learns each retry or hedge the budget refused.
	OnBudgetRefused func(tracing.AttemptKind)
	// Fallback, when set, is where attempts go once Dest can take them no more: see
	// Attempt.Admit. OnFallback, when set, learns of the switch, once, from the goroutine of
	// the attempt that made it.
	Fallback   *Dest
	OnFallback func()

	s shared // what the call's attempts share, the first attempt among it: one allocation
}

// Result is what a call returns: the result of the attempt that won, or a refusal.
type Result[R any] struct {
	Value   R
	Err     error
	Outcome outcome.Outcome
	Attempt *Attempt // the attempt whose result this is; nil when none was made

	s *shared
}

// Release ends the winning attempt's context and the overall timeout's. Call it once the
// caller is done with the result (its response body closed); later calls do nothing.
func (r Result[R]) Release() {
	if r.Attempt != nil {
		r.Attempt.cancel()
	}
	r.s.cancelOverall()
}

// NeedsRelease reports whether Release has anything to end: the call or its winning attempt
// has a context of its own. Without one, the result's value need not be wrapped to call it.
func (r Result[R]) NeedsRelease() bool {
	return r.s.ctx != r.s.caller || (r.Attempt != nil && r.Attempt.ctx != r.s.ctx)
}

// Run runs the call and returns its result, on which the caller must call Release once done
// with its value (a response body closed). A Call is used once. A panic in Send reaches the
// caller's goroutine, after the attempt's pick and permit are released and the other
// attempts cancelled.
func Run[R any](ctx context.Context, c *Call[R]) (res Result[R]) {
	s := &c.s // fresh, as a Call is used once: set field by field (a struct copy into the heap
	// would take the write barrier for every pointer field, set or not)
	s.caller, s.ctx, s.cancelOverall = ctx, ctx, noop
	s.stats, s.dest, s.policy, s.callerGone, s.key = c.Stats, c.Dest, c.Policy, c.CallerGone, c.HashKey
	s.fallback, s.onFallback = c.Fallback, c.OnFallback
	if to := c.Policy.Timeout; to > 0 {
		s.ctx, s.cancelOverall = context.WithTimeout(ctx, to)
	}
	defer func() {
		if p := recover(); p != nil {
			s.cancelOverall()
			panic(p)
		}
	}()
	c.Budget.Deposit()
	if c.Hedgeable && c.Policy.Hedge.Enabled && !c.Policy.Retry.Disable {
		res = runHedged(s, c)
	} else {
		res = runSequential(s, c)
	}
	res.s = s
	return res
}

// attempt sends a and classifies and reports its result. A panic in Send releases the
// attempt's pick and permit and its context, then goes on up.
func attempt[R any](s *shared, c *Call[R], a *Attempt) (Result[R], bool) {
	defer func() {
		if p := recover(); p != nil {
			a.feedback(outcome.Outcome{Kind: outcome.Canceled}, time.Since(a.Start))
			a.cancel()
			panic(p)
		}
	}()
	v, err := c.Sender.Send(a)
	if !a.sent() {
		if err == nil {
			// The attempt timeout fired as Send returned: its context is cancelled, so what
			// Send returned cannot be read (a response whose body would fail).
			c.Sender.Discard(a, v, nil)
			var zero R
			v = zero
		}
		// Say so: the transport saw only a cancelled context.
		err = &AttemptTimeoutError{After: s.policy.AttemptTimeout}
	}
	lat := time.Since(a.Start)
	cause := a.Cause()
	o, retry := c.Sender.Classify(a, v, err, cause)
	a.feedback(o, lat)
	if c.Latency != nil && o.Kind == outcome.Success {
		c.Latency.Record(a.Start.Add(lat), lat)
	}
	if o.Kind != outcome.LocalRefusal {
		s.stats.Attempts.Add(1)
	}
	if err != nil && (cause == outcome.CauseCaller || cause == outcome.CauseOverallTimeout) && s.ctx.Err() != nil {
		err = s.ctx.Err() // the call's context ended it: say so, whatever the transport said
	}
	return Result[R]{Value: v, Err: err, Outcome: o, Attempt: a}, retry
}

// retryDelay decides whether the result of attempt n may be followed by a retry, and after
// how long: see RetryWait.
func retryDelay(s *shared, o outcome.Outcome, n int) (time.Duration, bool) {
	return RetryWait(s.ctx, &s.policy.Retry, o, n)
}

// RetryWait decides whether a failure with outcome o, after n retries, may be retried in ctx
// under p, and after how long: the server's Retry-After or pushback (a negative one, or one
// over MaxRetryAfter, forbids the retry), else backoff with full jitter. A retry that could
// not start before ctx's deadline is not waited for.
func RetryWait(ctx context.Context, p *Retry, o outcome.Outcome, n int) (time.Duration, bool) {
	if p.Disable || n >= p.MaxRetries || ctx.Err() != nil {
		return 0, false
	}
	d := backoff.FullJitter(p.BackoffBase, p.BackoffMax, n+1)
	if o.HasRetryAfter {
		if o.RetryAfter < 0 || o.RetryAfter > p.MaxRetryAfter {
			return 0, false
		}
		d = o.RetryAfter
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Add(d).Before(dl) {
		return 0, false
	}
	return d, true
}

// withdraw asks the budget for a retry or hedge, counting a refusal.
func withdraw[R any](s *shared, c *Call[R], kind tracing.AttemptKind) bool {
	if c.Budget.Withdraw(time.Now()) {
		return true
	}
	s.stats.BudgetRefusals.Add(1)
	if c.OnBudgetRefused != nil {
		c.OnBudgetRefused(kind)
	}
	return false
}

// runSequential sends the call's attempts one after another on the caller's goroutine. A
// failure that is retried is kept until the retry is admitted: when every endpoint refuses
// the retry (breakers open), the caller gets that failure, not the refusal.
func runSequential[R any](s *shared, c *Call[R]) Result[R] {
	kind, waited := tracing.AttemptFirst, time.Duration(0)
	var prev Result[R] // the failure a retry replaces, once the retry is admitted
	kept := false
	for n := 0; ; n++ {
		a := s.newAttempt(n, kind, waited, false)
		res, retry := attempt(s, c, a)
		if kept {
			if res.Outcome.Kind == outcome.LocalRefusal {
				c.Sender.Discard(res.Attempt, res.Value, res.Err)
				return prev
			}
			discard(c, &prev)
			kept = false
		}
		if !retry {
			return res
		}
		d, ok := retryDelay(s, res.Outcome, n)
		if !ok || !withdraw(s, c, tracing.AttemptRetry) {
			return res
		}
		// Keep the failure, detached from its connection (which the retry may need), in case
		// the retry is refused.
		if v, ok := c.Sender.Detach(a, res.Value); ok {
			res.Value = v
			prev, kept = res, true
		} else {
			discard(c, &res)
		}
		a.cancel()
		if !backoff.Sleep(s.ctx, d) {
			if kept {
				discard(c, &prev)
			}
			return Result[R]{Err: s.ctx.Err(), Outcome: outcome.Outcome{Kind: outcome.Canceled}}
		}
		s.stats.Retries.Add(1)
		kind, waited = tracing.AttemptRetry, d
	}
}

// discard releases a result that will not reach the caller, and its attempt's context.
func discard[R any](c *Call[R], r *Result[R]) {
	c.Sender.Discard(r.Attempt, r.Value, r.Err)
	r.Attempt.cancel()
}

// hedgeDelay returns the wait before the next hedge: the fixed delay, or the destination's
// latency at the policy's quantile when it has enough history and that is longer.
func hedgeDelay(h *Hedge, hist *latency.Histogram) time.Duration {
	if h.Quantile == 0 || hist == nil {
		return h.Delay
	}
	if q, ok := hist.Quantile(time.Now(), h.Quantile, hedgeMinSamples); ok && q > h.Delay {
		return q
	}
	return h.Delay
}

// hedgeMinSamples is how many recent attempts a destination needs before its latency
// quantile replaces the fixed hedge delay.
const hedgeMinSamples = 50
