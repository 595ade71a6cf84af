package balancer

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/proxyless/proxyless/discovery"
)

// ErrNoEndpoints is returned by [Balancer.Pick] when the endpoint set is empty.
var ErrNoEndpoints = errors.New("balancer: no endpoints")

// MaxTried is how many endpoints a [Tried] remembers; when more are added, the oldest is
// forgotten.
const MaxTried = 4

// Tried lists endpoints that earlier attempts of the same request went to, so that a retry
// or a hedge goes to a different endpoint when one is available. It is a fixed-size value
// that allocates nothing; the zero value is empty. Tried stays valid across [Balancer.Update]:
// it remembers endpoints by identity, not by position.
type Tried struct {
	eps [MaxTried]*endpointState
	n   uint32 // number of Adds; the last min(n, MaxTried) slots are in use
}

// Add records the endpoint of p. Adding the zero Pick does nothing.
func (t *Tried) Add(p Pick) {
	if p.state == nil {
		return
	}
	t.eps[t.n%MaxTried] = p.state
	t.n++
}

// Len returns the number of endpoints remembered, at most MaxTried.
func (t *Tried) Len() int { return int(min(t.n, MaxTried)) }

// Contains reports whether the endpoint of p is among those remembered.
func (t *Tried) Contains(p Pick) bool { return p.state != nil && t.has(p.state) }

func (t *Tried) has(e *endpointState) bool {
	for i := range min(t.n, MaxTried) {
		if t.eps[i] == e {
			return true
		}
	}
	return false
}

// PickInfo carries what a pick needs to know about the request.
type PickInfo struct {
	// Now is the time of the request. The caller reads the clock once and passes it, so that
	// the pick and its Done agree and tests can inject time. The zero value means time.Now().
	Now time.Time
	// Key is the request's hash key for PolicyMaglev (see [HashString] and [HashBytes]);
	// 0 means no key, and the pick is then random. Other policies ignore it.
	Key uint64
	// Tried lists endpoints to avoid if any other is available.
	Tried Tried
}

// Pick is the result of [Balancer.Pick]: an endpoint and the means to report how the request
// went. The zero Pick has a nil Endpoint and its Done does nothing. A Pick is a small value;
// copying it is fine, but Done must be called exactly once per successful Pick.
type Pick struct {
	// Endpoint is the endpoint picked. It points into the balancer's snapshot and must not be
	// modified.
	Endpoint *discovery.Endpoint

	state *endpointState
	start time.Time
}

// Start returns the time of the pick (PickInfo.Now).
func (p Pick) Start() time.Time { return p.start }

// Outcome classifies how a request to an endpoint went.
type Outcome uint8

// Outcomes. The zero value is OutcomeSuccess.
const (
	// OutcomeSuccess is an answer that is not a failure of the endpoint (including 4xx).
	OutcomeSuccess Outcome = iota
	// OutcomeFailure is a failure of the endpoint that is not a gateway failure, such as 500.
	OutcomeFailure
	// OutcomeGatewayFailure is a connect error, a reset before the answer, or 502, 503, 504:
	// what Envoy's consecutive_gateway_failure counts.
	OutcomeGatewayFailure
	// OutcomeIgnore is a request that tells nothing about the endpoint, such as one the caller
	// cancelled. Only the in-flight count is updated.
	OutcomeIgnore
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeFailure:
		return "failure"
	case OutcomeGatewayFailure:
		return "gateway_failure"
	case OutcomeIgnore:
		return "ignore"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// DoneInfo reports how a picked request went.
type DoneInfo struct {
	// Now is when the request ended. The zero value means time.Now().
	Now time.Time
	// Latency is the request's latency; 0 means Now minus the time of the pick.
	Latency time.Duration
	// Outcome classifies the result.
	Outcome Outcome
	// RetryAfter, when positive, steers picks away from the endpoint for that long (capped by
	// Config.MaxRetryAfter), for backends that answer 429 or send Retry-After. It is honoured
	// whatever the Outcome.
	RetryAfter time.Duration
	// MinLatency, for a request with Outcome OutcomeIgnore that was cut short (its caller
	// gave up, or another attempt won), is how long it had waited: the endpoint's latency is
	// at least that. It raises the latency average when above it (never lowers it) and
	// counts as neither a success nor a failure. An endpoint that hangs thus becomes the
	// slowest rather than one never measured.
	MinLatency time.Duration
}

// Done reports the request's result: it releases the in-flight slot and feeds the latency
// average, the outlier detector and Retry-After steering. It allocates nothing and is safe for
// concurrent use; call it exactly once per Pick.
func (p Pick) Done(info DoneInfo) {
	e := p.state
	if e == nil {
		return
	}
	e.inflight.Add(-1)
	b := e.b
	if info.Outcome == OutcomeIgnore && info.RetryAfter <= 0 && info.MinLatency <= 0 {
		return
	}
	if info.Now.IsZero() {
		info.Now = time.Now()
	}
	now := info.Now.UnixNano()
	if info.Outcome == OutcomeIgnore && info.MinLatency > 0 {
		if cost := math.Float64frombits(e.cost.Load()); float64(info.MinLatency) > cost {
			e.observe(now, float64(info.MinLatency), b.tau, true)
		}
	}
	if info.RetryAfter > 0 {
		until := now + int64(min(info.RetryAfter, b.cfg.MaxRetryAfter))
		for {
			old := e.backoffUntil.Load()
			if old >= until || e.backoffUntil.CompareAndSwap(old, until) {
				break
			}
		}
	}
	if info.Outcome == OutcomeIgnore {
		return
	}
	lat := info.Latency
	if lat <= 0 {
		lat = info.Now.Sub(p.start)
	}
	e.requests.Add(1)
	o := &b.cfg.Outlier
	switch info.Outcome {
	case OutcomeSuccess:
		// Only answers make the typical latency: a hang's timeout must not make an endpoint
		// not yet measured look as slow as the hung one.
		b.observeTypical(float64(lat))
		if e.consecGateway.Load() != 0 {
			e.consecGateway.Store(0)
		}
		if e.consecFailure.Load() != 0 {
			e.consecFailure.Store(0)
		}
		e.observe(now, float64(lat), b.tau, false)
	case OutcomeFailure, OutcomeGatewayFailure:
		e.failures.Add(1)
		e.observe(now, float64(lat), b.tau, true)
		trip := false
		if info.Outcome == OutcomeGatewayFailure {
			trip = e.consecGateway.Add(1) == int64(o.ConsecutiveGatewayFailure)
		} else if e.consecGateway.Load() != 0 {
			e.consecGateway.Store(0)
		}
		if f := e.consecFailure.Add(1); o.ConsecutiveFailure > 0 && f == int64(o.ConsecutiveFailure) {
			trip = true
		}
		if trip {
			b.tryEject(e, now)
		}
	}
}

// typicalWeight is the weight of a new sample in the balancer's typical latency.
const typicalWeight = 1.0 / 64

// observeTypical folds one latency sample into the balancer's typical latency. Two samples
// racing may lose one, which an average shrugs off.
func (b *Balancer) observeTypical(lat float64) {
	t := math.Float64frombits(b.typical.Load())
	if t == 0 {
		t = lat
	} else {
		t += (lat - t) * typicalWeight
	}
	b.typical.Store(math.Float64bits(max(t, 1)))
}
