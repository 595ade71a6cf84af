package telemetry

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/proxyless/proxyless/tracing"
)

// An Option configures [New].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	tp    trace.TracerProvider          // nil: the global one when New runs
	mp    metric.MeterProvider          // nil: the global one when New runs
	prop  propagation.TextMapPropagator // nil: the global one when New runs, or the default
	state func(now time.Time) State
	errs  []error
}

// WithTracerProvider sets the tracer provider. Default: the global one at the time New runs
// (otel.GetTracerProvider()); an SDK installed globally after New is not used.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp == nil {
			c.errs = append(c.errs, errors.New("telemetry: WithTracerProvider: provider is nil"))
		}
		c.tp = tp
	})
}

// WithMeterProvider sets the meter provider. Default: the global one at the time New runs
// (otel.GetMeterProvider()); an SDK installed globally after New is not used.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) {
		if mp == nil {
			c.errs = append(c.errs, errors.New("telemetry: WithMeterProvider: provider is nil"))
		}
		c.mp = mp
	})
}

// WithPropagators sets how trace context is injected into requests and extracted from them.
// Default: the global propagator at the time New runs (otel.GetTextMapPropagator()), unless
// it propagates nothing (no fields, as the global one before the application sets one): then
// W3C trace context and baggage.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) {
		if p == nil {
			c.errs = append(c.errs, errors.New("telemetry: WithPropagators: propagator is nil"))
		}
		c.prop = p
	})
}

// WithState sets where the observable instruments (endpoints known and healthy, breaker
// states, ejections, discovery staleness, adaptive limits, canary weights) read their values.
// fn is called at each metric collection, never on the request path and never while the
// Telemetry holds a lock. Default: none, and those instruments report nothing.
func WithState(fn func(now time.Time) State) Option {
	return optionFunc(func(c *config) {
		if fn == nil {
			c.errs = append(c.errs, errors.New("telemetry: WithState: function is nil"))
		}
		c.state = fn
	})
}

// Telemetry records the spans and metrics of one middleware component.
//
// Create it with [New]; the zero value is not usable, but a nil *Telemetry is, and records
// nothing. It is safe for concurrent use. It starts no goroutines; Close unregisters its
// metric callbacks.
type Telemetry struct {
	cfg  config                        // immutable
	prop propagation.TextMapPropagator // immutable: resolved by New

	cur atomic.Pointer[state] // what New resolved; off once closed

	mu     sync.Mutex // serialises Close and writers of dests
	closed bool       // guarded by mu
	dests  atomic.Pointer[map[string]*Destination]
}

// New returns a Telemetry. It validates its options and returns an error naming a bad one.
//
// The providers are resolved here, once: those of the options, else the global ones as they
// are now. Telemetry is off (every method returns at once and allocates nothing) for a
// provider that records nothing: one from the trace/noop or metric/noop packages, or the
// global one while no SDK has been installed.
func New(opts ...Option) (*Telemetry, error) {
	var c config
	for _, o := range opts {
		if o == nil {
			c.errs = append(c.errs, errors.New("telemetry: nil Option"))
			continue
		}
		o.apply(&c)
	}
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	tp, mp := c.tp, c.mp
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	t := &Telemetry{cfg: c, prop: c.prop}
	if t.prop == nil {
		t.prop = DefaultPropagator()
	}
	m := map[string]*Destination{}
	t.dests.Store(&m)
	t.cur.Store(t.build(tp, mp))
	return t, nil
}

// DefaultPropagator returns the propagator a Telemetry uses without WithPropagators: the
// global one as it is now, unless it propagates nothing (it has no fields, as the global one
// before the application sets one), and then W3C trace context and baggage.
func DefaultPropagator() propagation.TextMapPropagator {
	if g := otel.GetTextMapPropagator(); len(g.Fields()) > 0 {
		return g
	}
	return w3c
}

var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// state is what a Telemetry resolved from its providers. Immutable once published.
type state struct {
	tp trace.TracerProvider
	mp metric.MeterProvider

	tracing, metrics bool
	on               bool // tracing || metrics

	tracer trace.Tracer
	ins    instruments
	reg    metric.Registration // the observable callback, nil when none
}

// off is the state of a nil or closed Telemetry.
var off = &state{}

// load returns the current state: one atomic load.
func (t *Telemetry) load() *state {
	if t == nil {
		return off
	}
	return t.cur.Load()
}

// build resolves the tracer and instruments of the providers and whether each records.
func (t *Telemetry) build(tp trace.TracerProvider, mp metric.MeterProvider) *state {
	s := &state{tp: tp, mp: mp}
	s.tracing = tracerRecords(tp)
	if s.tracing {
		s.tracer = tp.Tracer(tracing.ScopeName)
	}
	if !isNoopMeter(mp) {
		m := mp.Meter(tracing.ScopeName)
		ins := newInstruments(m, otel.Handle)
		if ins.enabled() {
			s.metrics, s.ins = true, ins
			if t.cfg.state != nil {
				s.reg = s.ins.register(m, t, otel.Handle)
			}
		}
	}
	s.on = s.tracing || s.metrics
	return s
}

// Enabled reports whether the providers record anything.
func (t *Telemetry) Enabled() bool { return t.load().on }

// Close unregisters the Telemetry's metric callbacks; afterwards it records nothing. It is
// idempotent.
func (t *Telemetry) Close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	s := t.cur.Load()
	t.cur.Store(off)
	t.mu.Unlock()
	if s.reg != nil {
		return s.reg.Unregister()
	}
	return nil
}

// initialTP is the global tracer provider as it was when this package was initialised: the
// API's delegating provider, which records nothing until an SDK is installed (and from then
// on forwards to it, while otel.GetTracerProvider returns the SDK itself).
var initialTP = otel.GetTracerProvider()

// tracerRecords reports whether tp records spans. It is called once per Telemetry, never
// on the request path, and uses only the API's public behaviour:
//
//   - the providers of package trace/noop record nothing;
//   - the global provider of the package's start, while it is still the global one, has no
//     SDK behind it unless one was installed before this package was initialised: it is
//     asked for one span, under a remote parent that is not sampled. A provider without an
//     SDK hands back a span with the parent's identity and records nothing (the API's
//     specified behaviour); an SDK makes a span of its own, with a new span ID, which its
//     default, parent-based sampler does not record;
//   - any other provider records.
func tracerRecords(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil, tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return false
	}
	if !sameProvider(tp, initialTP) || !sameProvider(otel.GetTracerProvider(), initialTP) {
		return true
	}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), probeParent)
	_, span := tp.Tracer(tracing.ScopeName).Start(ctx, "proxyless.telemetry.probe")
	defer span.End()
	sc := span.SpanContext()
	return span.IsRecording() || (sc.IsValid() && sc.SpanID() != probeParent.SpanID())
}

// probeParent is the parent of tracerRecords's probe: remote, and not sampled.
var probeParent = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID: trace.TraceID{0x70, 0x72, 0x6f, 0x78, 0x79, 0x6c, 0x65, 0x73, 0x73, 1},
	SpanID:  trace.SpanID{0x70, 0x72, 0x6f, 0x62, 0x65, 1},
	Remote:  true,
})

// sameProvider reports whether a and b are the same provider. Providers of a type that
// cannot be compared are not the global one, whose type can.
func sameProvider(a, b any) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// isNoopMeter reports whether mp is one of package metric/noop's, which record nothing. Any
// other provider's instruments say whether they record (Enabled): the global provider's do
// not while no SDK is installed.
func isNoopMeter(mp metric.MeterProvider) bool {
	switch mp.(type) {
	case nil, metricnoop.MeterProvider, *metricnoop.MeterProvider:
		return true
	}
	return false
}
