// Package engine runs one logical client call for every transport: the overall deadline,
// attempts to endpoints the balancer picks and their breakers admit (a different one per
// attempt when it can), the classification of each attempt's result into the outcome
// vocabulary and the feedback of that outcome to the balancer and the breakers, retries with
// backoff and the server's Retry-After or pushback, hedging after a fixed delay or a latency
// quantile, and the retry budget.
//
// It knows no transport. An adapter (package middleware's HTTP RoundTripper, its gRPC
// interceptors) supplies a Sender: "send one attempt", "classify its result", "discard a
// result that lost or was retried". The order of one call, top to bottom:
//
//	Run: overall deadline → attempt 0
//	attempt: context (attempt timeout, or a cancel for hedges) → Sender.Send (which calls
//	         Attempt.Admit: pick → breaker) → Sender.Classify → feedback (balancer, breaker,
//	         latency history)
//	loop:    a final result wins; a retryable failure waits its backoff or Retry-After (never
//	         past the deadline) and is sent again within the budget; with hedging, a further
//	         attempt starts each time the hedge delay passes; losers are cancelled and
//	         discarded.
package engine
