package engine

import (
	"sync"
	"time"

	"github.com/proxyless/proxyless/internal/latency"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/tracing"
)

// hedgeResult is what an attempt's goroutine hands back.
type hedgeResult[R any] struct {
	res      Result[R]
	retry    bool
	panicked bool
	value    any // the panic's value
}

// hedged is the state of a call whose attempts may run at once. Only runHedged's goroutine
// touches it.
type hedged[R any] struct {
	s                                  *shared
	c                                  *Call[R]
	results                            chan hedgeResult[R]
	max                                int // attempts at most: the first, the hedges and the retries
	launched, pending, hedges, retries int
	last                               *Result[R] // the failure to return if nothing better comes

	running sync.WaitGroup // attempts whose Send has not returned

	hedge     *time.Timer      // fires when the next hedge is due
	retry     *time.Timer      // a retry waiting its backoff; nil when none
	retryC    <-chan time.Time // retry's channel while it waits, else nil
	retryWait time.Duration
}

// runHedged sends the first attempt and, each time the hedge delay passes unanswered, one
// more to another endpoint, up to MaxHedges, each paid for by the budget. The first final
// answer wins; the others are cancelled (those not yet picked included) and discarded in the
// background. When every attempt has failed and the last may be retried, a retry follows
// after its backoff or Retry-After, as for a sequential call.
func runHedged[R any](s *shared, c *Call[R]) Result[R] {
	pol := s.policy
	h := &hedged[R]{s: s, c: c, max: 1 + pol.Hedge.MaxHedges + pol.Retry.MaxRetries}
	h.results = make(chan hedgeResult[R], h.max)
	h.launch(tracing.AttemptFirst, 0)
	h.hedge = time.NewTimer(hedgeDelay(&pol.Hedge, h.hist()))
	defer h.stopTimers()
	for {
		select {
		case hr := <-h.results:
			if res, done := h.result(hr); done {
				return res
			}
		case <-h.retryC:
			h.retryC = nil
			h.dropLast()
			s.stats.Retries.Add(1)
			h.launch(tracing.AttemptRetry, h.retryWait)
			h.hedge.Reset(hedgeDelay(&pol.Hedge, h.hist()))
		case <-h.hedge.C:
			h.startHedge()
		case <-s.ctx.Done():
			h.abandon(nil)
			h.dropLast()
			kind := outcome.LocalTimeout
			if s.caller.Err() != nil {
				kind = outcome.Canceled
			}
			return Result[R]{Err: s.ctx.Err(), Outcome: outcome.Outcome{Kind: kind}}
		}
	}
}

// result takes an attempt's result: a final answer wins and ends the call (done); a failure
// is kept to fall back on and, once nothing else is pending, retried after its delay when the
// policy, the budget and the deadline allow, else returned. A panic is raised again here.
func (h *hedged[R]) result(hr hedgeResult[R]) (_ Result[R], done bool) {
	s, c := h.s, h.c
	h.pending--
	if hr.panicked {
		h.abandon(nil)
		h.dropLast()
		panic(hr.value)
	}
	res := hr.res
	if res.Err == nil && !hr.retry { // a final answer wins
		if res.Attempt.Kind == tracing.AttemptHedge {
			s.stats.HedgeWins.Add(1)
		}
		h.abandon(res.Attempt)
		h.dropLast()
		return res, true
	}
	h.keep(res)
	if h.pending > 0 || h.retryC != nil {
		return Result[R]{}, false
	}
	if !hr.retry {
		return *h.last, true
	}
	d, ok := retryDelay(s, res.Outcome, h.retries)
	if !ok || h.launched >= h.max || !withdraw(s, c, tracing.AttemptRetry) {
		return *h.last, true
	}
	h.retries++
	h.hedge.Stop()
	h.detachLast() // its connection may be what the retry needs
	h.retry, h.retryWait = time.NewTimer(d), d
	h.retryC = h.retry.C
	return Result[R]{}, false
}

// startHedge launches a hedge when one is due and the budget pays for it.
func (h *hedged[R]) startHedge() {
	pol := &h.s.policy.Hedge
	if h.hedges >= pol.MaxHedges || h.launched >= h.max || h.retryC != nil {
		return
	}
	if !withdraw(h.s, h.c, tracing.AttemptHedge) {
		return
	}
	h.hedges++
	h.s.stats.Hedges.Add(1)
	h.launch(tracing.AttemptHedge, 0)
	h.hedge.Reset(hedgeDelay(pol, h.hist()))
}

func (h *hedged[R]) stopTimers() {
	h.hedge.Stop()
	if h.retry != nil {
		h.retry.Stop()
	}
}

func (h *hedged[R]) hist() *latency.Histogram { return h.c.Latency }

// launch starts attempt h.launched on a goroutine of its own. A panic there is recovered and
// handed to runHedged, which raises it again on the caller's goroutine.
func (h *hedged[R]) launch(kind tracing.AttemptKind, waited time.Duration) {
	a := h.s.newAttempt(h.launched, kind, waited, true)
	h.launched++
	h.pending++
	h.running.Add(1)
	go func() {
		var hr hedgeResult[R]
		defer func() {
			if p := recover(); p != nil {
				hr = hedgeResult[R]{panicked: true, value: p, res: Result[R]{Attempt: a}}
			}
			h.running.Done()
			h.results <- hr
		}()
		hr.res, hr.retry = attempt(h.s, h.c, a)
	}()
}

// keep makes res the result to fall back on, discarding the one kept before; an error never
// replaces a response, and a local refusal never replaces anything.
func (h *hedged[R]) keep(res Result[R]) {
	if l := h.last; l != nil && (res.Outcome.Kind == outcome.LocalRefusal || (l.Err == nil && res.Err != nil)) {
		discard(h.c, &res)
		return
	}
	h.dropLast()
	h.last = &res
}

// detachLast replaces the kept result by a copy that holds no connection, or discards it
// when it cannot be kept so.
func (h *hedged[R]) detachLast() {
	l := h.last
	if l == nil {
		return
	}
	if v, ok := h.c.Sender.Detach(l.Attempt, l.Value); ok {
		l.Value = v
		l.Attempt.cancel()
		return
	}
	h.dropLast()
}

// dropLast discards the result kept to fall back on, if any.
func (h *hedged[R]) dropLast() {
	if l := h.last; l != nil {
		discard(h.c, l)
		h.last = nil
	}
}

// abandon cancels every attempt but the winner (nil: every one), those that have not picked
// an endpoint yet included, waits until their Send has returned (cancelled, they return at
// once), so that no attempt reads the caller's request once the call has returned, and
// discards in the background the results still to come.
func (h *hedged[R]) abandon(winner *Attempt) {
	s := h.s
	s.mu.Lock()
	for _, a := range s.attempts {
		if a != winner {
			a.abandoned.Store(true)
			a.cancel()
		}
	}
	s.mu.Unlock()
	h.running.Wait()
	if h.pending == 0 {
		return
	}
	results, pending, c := h.results, h.pending, h.c
	go func() {
		for range pending {
			hr := <-results
			if !hr.panicked {
				c.Sender.Discard(hr.res.Attempt, hr.res.Value, hr.res.Err)
			}
		}
	}()
}
