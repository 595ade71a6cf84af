package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/tracing"
)

// State is what the observable instruments report, as returned by the function given to
// [WithState] at each collection.
type State struct {
	Destinations []DestinationState
	Limits       []LimitState  // adaptive concurrency limits in force
	Canaries     []CanaryState // canary weights in force
}

// DestinationState describes one destination service.
type DestinationState struct {
	Name      string
	Endpoints []EndpointState
	Ejections uint64 // outlier ejections since the destination was first used
	// StaleSince is when discovery began serving its last good set because the source
	// failed; zero while the set is fresh (or the source cannot tell).
	StaleSince time.Time
}

// EndpointState describes one endpoint of a destination.
type EndpointState struct {
	Addr       string
	Healthy    bool          // passing active health checks (true without them)
	Ejected    bool          // ejected as an outlier
	HasBreaker bool          // Breaker is meaningful
	Breaker    breaker.State // the endpoint's breaker state
}

// LimitState is the current value of an adaptive concurrency limit.
type LimitState struct {
	Policy string // e.g. "outbound" or the destination's name
	Limit  int64
}

// CanaryState is the share of a route's traffic a canary destination receives.
type CanaryState struct {
	Route       string
	Destination string
	Percent     float64
}

// durationBuckets are the semantic conventions' advice for HTTP durations, in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// instruments are resolved once per meter provider.
type instruments struct {
	reqDuration     metric.Float64Histogram
	attempts        metric.Int64Counter
	retries         metric.Int64Counter
	hedges          metric.Int64Counter
	hedgeWins       metric.Int64Counter
	budgetRefusals  metric.Int64Counter
	breakerRefusals metric.Int64Counter
	breakerTrans    metric.Int64Counter
	limitDecisions  metric.Int64Counter
	limitWait       metric.Float64Histogram
	shadowMismatch  metric.Int64Counter
	overflows       metric.Int64Counter
	shadowResults   metric.Int64Counter

	breakerState     metric.Int64ObservableGauge
	ejections        metric.Int64ObservableCounter
	ejectionsActive  metric.Int64ObservableGauge
	endpointsKnown   metric.Int64ObservableGauge
	endpointsHealthy metric.Int64ObservableGauge
	discoveryStale   metric.Float64ObservableGauge
	concurrencyLimit metric.Int64ObservableGauge
	canaryWeight     metric.Float64ObservableGauge
}

// newInstruments creates the instruments. An instrument the SDK rejects is reported to
// handle and left a no-op (the SDK returns one along with the error).
func newInstruments(m metric.Meter, handle func(error)) instruments {
	var ins instruments
	check := func(err error) {
		if err != nil {
			handle(err)
		}
	}
	var err error
	ins.reqDuration, err = m.Float64Histogram(tracing.MetricRequestDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of logical requests through the mesh client, retries and hedges included, until the response headers."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	check(err)
	ins.attempts, err = m.Int64Counter(tracing.MetricAttempts, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts sent to endpoints: first tries, retries and hedges."))
	check(err)
	ins.retries, err = m.Int64Counter(tracing.MetricRetries, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts that retried a failed one."))
	check(err)
	ins.hedges, err = m.Int64Counter(tracing.MetricHedges, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts sent alongside a slow one."))
	check(err)
	ins.hedgeWins, err = m.Int64Counter(tracing.MetricHedgeWins, metric.WithUnit("{request}"),
		metric.WithDescription("Requests answered by a hedge rather than the first attempt."))
	check(err)
	ins.budgetRefusals, err = m.Int64Counter(tracing.MetricBudgetRefusals, metric.WithUnit("{attempt}"),
		metric.WithDescription("Retries and hedges the retry budget refused."))
	check(err)
	ins.breakerRefusals, err = m.Int64Counter(tracing.MetricBreakerRefusals, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts not sent because the circuit breaker of every endpoint tried refused, counted once each."))
	check(err)
	ins.breakerTrans, err = m.Int64Counter(tracing.MetricBreakerTrans, metric.WithUnit("{transition}"),
		metric.WithDescription("Circuit breaker transitions, by the state entered."))
	check(err)
	ins.limitDecisions, err = m.Int64Counter(tracing.MetricLimitDecisions, metric.WithUnit("{request}"),
		metric.WithDescription("Rate and concurrency limiter decisions: admitted or refused."))
	check(err)
	ins.limitWait, err = m.Float64Histogram(tracing.MetricLimitWait, metric.WithUnit("s"),
		metric.WithDescription("Time limiters made requests wait before admitting them."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	check(err)
	ins.shadowMismatch, err = m.Int64Counter(tracing.MetricShadowMismatches, metric.WithUnit("{request}"),
		metric.WithDescription("Shadowed requests whose response differed from the primary's."))
	check(err)
	ins.overflows, err = m.Int64Counter(tracing.MetricOverflows, metric.WithUnit("{request}"),
		metric.WithDescription("Requests, retries and connections a destination's limits refused, by limit."))
	check(err)
	ins.shadowResults, err = m.Int64Counter(tracing.MetricShadowResults, metric.WithUnit("{request}"),
		metric.WithDescription("Shadowed requests by the result of comparing the shadow's answer with the primary's: matched, mismatched, shadow_failed, unpaired."))
	check(err)

	ins.breakerState, err = m.Int64ObservableGauge(tracing.MetricBreakerState, metric.WithUnit("{state}"),
		metric.WithDescription("Circuit breaker state per endpoint: 0 closed, 1 open, 2 half-open."))
	check(err)
	ins.ejections, err = m.Int64ObservableCounter(tracing.MetricEjections, metric.WithUnit("{ejection}"),
		metric.WithDescription("Outlier ejections since the destination was first used."))
	check(err)
	ins.ejectionsActive, err = m.Int64ObservableGauge(tracing.MetricEjectionsActive, metric.WithUnit("{endpoint}"),
		metric.WithDescription("Endpoints ejected as outliers now."))
	check(err)
	ins.endpointsKnown, err = m.Int64ObservableGauge(tracing.MetricEndpointsKnown, metric.WithUnit("{endpoint}"),
		metric.WithDescription("Endpoints discovery knows for the destination."))
	check(err)
	ins.endpointsHealthy, err = m.Int64ObservableGauge(tracing.MetricEndpointsHealthy, metric.WithUnit("{endpoint}"),
		metric.WithDescription("Endpoints passing health checks and not ejected."))
	check(err)
	ins.discoveryStale, err = m.Float64ObservableGauge(tracing.MetricDiscoveryStale, metric.WithUnit("s"),
		metric.WithDescription("How long discovery has served its last good set because the source failed; 0 when fresh."))
	check(err)
	ins.concurrencyLimit, err = m.Int64ObservableGauge(tracing.MetricConcurrencyLimit, metric.WithUnit("{request}"),
		metric.WithDescription("Current value of an adaptive concurrency limit."))
	check(err)
	ins.canaryWeight, err = m.Float64ObservableGauge(tracing.MetricCanaryWeight, metric.WithUnit("%"),
		metric.WithDescription("Share of a route's traffic sent to its canary destination."))
	check(err)
	return ins
}

// enabled reports whether the provider processes the measurements of any synchronous
// instrument: the SDK's do once a reader is registered, the global provider's do not while
// no SDK is installed.
func (ins *instruments) enabled() bool {
	ctx := context.Background()
	return ins.reqDuration.Enabled(ctx) || ins.attempts.Enabled(ctx) || ins.retries.Enabled(ctx) ||
		ins.hedges.Enabled(ctx) || ins.hedgeWins.Enabled(ctx) || ins.budgetRefusals.Enabled(ctx) ||
		ins.breakerRefusals.Enabled(ctx) || ins.breakerTrans.Enabled(ctx) || ins.limitDecisions.Enabled(ctx) ||
		ins.limitWait.Enabled(ctx) || ins.shadowMismatch.Enabled(ctx) || ins.overflows.Enabled(ctx) ||
		ins.shadowResults.Enabled(ctx)
}

// register registers the callback of the observable instruments.
func (ins *instruments) register(m metric.Meter, t *Telemetry, handle func(error)) metric.Registration {
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.observe(o, ins, time.Now())
		return nil
	}, ins.breakerState, ins.ejections, ins.ejectionsActive, ins.endpointsKnown,
		ins.endpointsHealthy, ins.discoveryStale, ins.concurrencyLimit, ins.canaryWeight)
	if err != nil {
		handle(err)
		return nil
	}
	return reg
}

// observe reports the state function's view. It runs at collection time.
func (t *Telemetry) observe(o metric.Observer, ins *instruments, now time.Time) {
	st := t.cfg.state(now)
	for i := range st.Destinations {
		ds := &st.Destinations[i]
		d := t.Destination(ds.Name)
		dset := metric.WithAttributeSet(d.set)
		var healthy, ejected int64
		for _, es := range ds.Endpoints {
			if es.Ejected {
				ejected++
			} else if es.Healthy {
				healthy++
			}
			if es.HasBreaker {
				o.ObserveInt64(ins.breakerState, int64(es.Breaker), metric.WithAttributeSet(d.endpoint(es.Addr).set))
			}
		}
		o.ObserveInt64(ins.endpointsKnown, int64(len(ds.Endpoints)), dset)
		o.ObserveInt64(ins.endpointsHealthy, healthy, dset)
		o.ObserveInt64(ins.ejectionsActive, ejected, dset)
		o.ObserveInt64(ins.ejections, int64(ds.Ejections), dset)
		var stale float64
		if !ds.StaleSince.IsZero() {
			stale = max(0, now.Sub(ds.StaleSince).Seconds())
		}
		o.ObserveFloat64(ins.discoveryStale, stale, dset)
	}
	for _, l := range st.Limits {
		o.ObserveInt64(ins.concurrencyLimit, l.Limit, metric.WithAttributes(tracing.KeyLimitPolicy.String(l.Policy)))
	}
	for _, c := range st.Canaries {
		o.ObserveFloat64(ins.canaryWeight, c.Percent,
			metric.WithAttributes(tracing.KeyRoute.String(c.Route), tracing.KeyDestination.String(c.Destination)))
	}
}

// limitSets caches the attribute sets of a rate-limit policy.
type limitSets struct {
	admitted, refused, policy attribute.Set
}
