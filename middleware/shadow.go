package middleware

import (
	"sync/atomic"

	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/route"
)

// shadowKeyPrefix starts the destination key of mirrored copies: a copy to a service goes to
// a destination of its own (its own balancer, breakers and counts), so that a failing shadow
// opens no breaker of the primary's and its traffic is not counted as the transport's own.
// On the status page and in telemetry the destination is "shadow:" followed by its key.
const shadowKeyPrefix = "shadow:"

// ShadowStats counts the copies a Transport's routes mirrored (route.Shadow): the copies'
// own traffic, counted as Stats counts the transport's requests but apart from them, and the
// comparison of each shadow answer with the primary's.
type ShadowStats struct {
	Mirrored int64 // copies sent
	Dropped  int64 // copies not sent: a concurrency cap was reached, or the body could not be copied
	InFlight int64 // copies in flight now (their comparison not yet counted)

	Requests        int64 // copies that reached the shadow's destination (those refused before it, too)
	Attempts        int64 // their attempts sent, retries included
	Retries         int64 // attempts that were retries
	BreakerRefusals int64 // attempts refused because every shadow endpoint's breaker was open
	BreakerOpens    int64 // breaker transitions to open among the shadow's endpoints
	Ejections       int64 // outlier ejections among the shadow's endpoints

	Matched    int64 // the shadow answered as the primary did (status, and body when compared)
	Mismatched int64 // the shadow answered differently
	Failed     int64 // the shadow request failed (transport error, refusal, timeout): nothing to compare
	Unpaired   int64 // the primary's answer never came to compare with
}

// shadowCounters is what a Transport counts of mirrored copies.
type shadowCounters struct {
	stats        engine.Stats
	bud          *engine.Budget // nil unless routed
	breakerOpens atomic.Int64
}

// shadowStats returns the counts of mirrored copies; zero without routes.
func (t *Transport) shadowStats() ShadowStats {
	if t.shadower == nil {
		return ShadowStats{}
	}
	own := statsOf(&t.shadow.stats, t.shadow.bud)
	ss := t.shadower.Stats()
	return ShadowStats{
		Mirrored: ss.Mirrored, Dropped: ss.Dropped + ss.TooLarge, InFlight: ss.InFlight,
		Requests: own.Requests, Attempts: own.Attempts, Retries: own.Retries,
		BreakerRefusals: own.BreakerRefusals, BreakerOpens: t.shadow.breakerOpens.Load(), Ejections: t.ejections(true),
		Matched: ss.Matches, Mismatched: ss.Mismatches, Failed: ss.Errors, Unpaired: ss.Unpaired,
	}
}

// shadowResult counts the comparison of a shadow answer with the primary's in
// proxyless.shadow.results: the route.Shadower's OnResult.
func (t *Transport) shadowResult(rt, shadow string, r route.ShadowResult) {
	t.tel.ShadowResult(rt, shadow, r.String())
}
