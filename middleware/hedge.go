package middleware

import (
	"context"
	"time"

	"github.com/proxyless/proxyless/tracing"
)

// hedged runs the first attempt and, each time the hedge delay passes without an answer,
// one more to another endpoint, up to MaxHedges, each paid for by the retry budget. The first
// final answer (a success, or a failure that is not retried) wins; the other attempts are
// cancelled and their responses drained and closed in the background. Retryable failures
// are followed at once by a further attempt while the retry allowance lasts.
func (r *request) hedged() attemptResult {
	t := r.t
	pol := &r.pol.hedge
	retry := &r.pol.retry
	maxAttempts := 1 + pol.MaxHedges + retry.MaxRetries
	results := make(chan indexedResult, maxAttempts)
	launched, pending := 0, 0
	r.conc.cancels = make([]context.CancelFunc, maxAttempts)
	isHedge := make([]bool, maxAttempts) // attempt n was a hedge (not the first, not a retry)
	launch := func() {
		n := launched
		launched++
		pending++
		kind := tracing.AttemptFirst
		switch {
		case isHedge[n]:
			kind = tracing.AttemptHedge
		case n > 0:
			kind = tracing.AttemptRetry
		}
		go func() { results <- indexedResult{n: n, res: r.attempt(n, kind, 0)} }()
	}
	launch()
	timer := time.NewTimer(pol.delay(r.d))
	defer timer.Stop()
	hedges, retries := 0, 0
	var last *attemptResult // the latest retryable failure, kept until something better comes
	for {
		select {
		case ir := <-results:
			pending--
			res := ir.res
			if res.err == nil && !res.retry {
				// A final answer: a success, or a failure status that is not retried.
				if isHedge[ir.n] {
					t.stats.hedgeWins.Add(1)
				}
				r.abandon(ir.n, results, pending)
				if last != nil {
					last.discard()
				}
				return res.settle()
			}
			if res.err != nil && !res.retry {
				// A local refusal (no endpoint, breakers open) or the caller giving up.
				if res.cancel != nil {
					res.cancel()
				}
				if pending > 0 {
					continue
				}
				if last != nil {
					return last.settle()
				}
				return res
			}
			// A retryable failure.
			if last != nil {
				last.discard()
			}
			last = &res
			if pending > 0 {
				continue
			}
			if retries < retry.MaxRetries && launched < maxAttempts &&
				res.retryAfter <= retry.MaxRetryAfter && r.ctx.Err() == nil {
				if t.bud.withdraw(time.Time{}) {
					retries++
					t.stats.retries.Add(1)
					last.discard()
					last = nil
					launch()
					timer.Reset(pol.delay(r.d))
					continue
				}
				t.stats.budgetRefusals.Add(1)
				r.tr.BudgetRefused(tracing.AttemptRetry)
			}
			return last.settle()
		case <-timer.C:
			if hedges >= pol.MaxHedges || launched >= maxAttempts {
				continue
			}
			if !t.bud.withdraw(time.Time{}) {
				t.stats.budgetRefusals.Add(1)
				r.tr.BudgetRefused(tracing.AttemptHedge)
				continue
			}
			hedges++
			t.stats.hedges.Add(1)
			isHedge[launched] = true
			launch()
			timer.Reset(pol.delay(r.d))
		case <-r.ctx.Done():
			r.abandon(-1, results, pending)
			if last != nil {
				last.discard()
			}
			return attemptResult{err: r.ctx.Err()}
		}
	}
}

type indexedResult struct {
	n   int
	res attemptResult
}

// abandon cancels every attempt but the winner and, in the background, drains and closes the
// responses of the pending ones as they arrive.
func (r *request) abandon(winner int, results <-chan indexedResult, pending int) {
	r.conc.mu.Lock()
	for i, c := range r.conc.cancels {
		if i != winner && c != nil {
			c()
		}
	}
	r.conc.mu.Unlock()
	if pending == 0 {
		return
	}
	go func() {
		for range pending {
			ir := <-results
			ir.res.discard()
		}
	}()
}
