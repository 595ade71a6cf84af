package tracing

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of proxyless's tracer and meter: the import path.
const ScopeName = "github.com/proxyless/proxyless/tracing"

// An Option configures [New].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	tp    trace.TracerProvider // nil: the global one, looked up at use time
	mp    metric.MeterProvider // nil: the global one, looked up at use time
	prop  propagation.TextMapPropagator
	state func(now time.Time) State
	errs  []error
}

// WithTracerProvider sets the tracer provider. Default: the global one, looked up on every
// request, so that an SDK installed after New is used.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp == nil {
			c.errs = append(c.errs, errors.New("tracing: WithTracerProvider: provider is nil"))
		}
		c.tp = tp
	})
}

// WithMeterProvider sets the meter provider. Default: the global one, looked up on every
// request, so that an SDK installed after New is used.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) {
		if mp == nil {
			c.errs = append(c.errs, errors.New("tracing: WithMeterProvider: provider is nil"))
		}
		c.mp = mp
	})
}

// WithPropagators sets how trace context is injected into requests and extracted from them.
// Default: the global propagator once the application has set one, W3C trace context and
// baggage until then.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) {
		if p == nil {
			c.errs = append(c.errs, errors.New("tracing: WithPropagators: propagator is nil"))
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
			c.errs = append(c.errs, errors.New("tracing: WithState: function is nil"))
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
	cfg      config // immutable
	globalTP bool   // immutable: the tracer provider is looked up globally on each use
	globalMP bool   // immutable: likewise for the meter provider

	cur atomic.Pointer[state]

	mu     sync.Mutex // serialises rebuilds, Close, and writers of dests
	closed bool       // guarded by mu
	dests  atomic.Pointer[map[string]*Destination]
}

// New returns a Telemetry. It validates its options and returns an error naming a bad one.
func New(opts ...Option) (*Telemetry, error) {
	var c config
	for _, o := range opts {
		if o == nil {
			c.errs = append(c.errs, errors.New("tracing: nil Option"))
			continue
		}
		o.apply(&c)
	}
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	t := &Telemetry{cfg: c}
	// An explicit provider that is the global delegate behaves like the global provider: it
	// forwards to whatever the application installs later, so look that up instead.
	if c.tp == nil || isGlobalDelegate(c.tp) {
		t.cfg.tp, t.globalTP = nil, true
	}
	if c.mp == nil || isGlobalDelegate(c.mp) {
		t.cfg.mp, t.globalMP = nil, true
	}
	m := map[string]*Destination{}
	t.dests.Store(&m)
	t.cur.Store(t.build(t.providers()))
	return t, nil
}

// state is what a Telemetry resolved from one pair of providers. Immutable once published.
type state struct {
	tp           trace.TracerProvider
	mp           metric.MeterProvider
	tpCmp, mpCmp bool // the providers' dynamic types are comparable

	tracing, metrics bool
	on               bool // tracing || metrics

	tracer trace.Tracer
	ins    instruments
	reg    metric.Registration // the observable callback, nil when none
}

// off is the state of a nil or closed Telemetry.
var off = &state{}

// providers returns the providers in use now.
func (t *Telemetry) providers() (trace.TracerProvider, metric.MeterProvider) {
	tp, mp := t.cfg.tp, t.cfg.mp
	if t.globalTP {
		tp = otel.GetTracerProvider()
	}
	if t.globalMP {
		mp = otel.GetMeterProvider()
	}
	return tp, mp
}

// load returns the current state, rebuilding it when a global provider has changed. The check
// is two atomic loads and two interface comparisons.
func (t *Telemetry) load() *state {
	if t == nil {
		return off
	}
	s := t.cur.Load()
	if !t.globalTP && !t.globalMP {
		return s
	}
	tp, mp := t.providers()
	if same(s.tp, tp, s.tpCmp) && same(s.mp, mp, s.mpCmp) {
		return s
	}
	return t.rebuild()
}

// same reports whether a and b are the same provider. Providers of a type that cannot be
// compared are taken to be the same when their types are.
func same[T any](a, b T, comparable bool) bool {
	if comparable {
		return any(a) == any(b)
	}
	return reflect.TypeOf(a) == reflect.TypeOf(b)
}

func (t *Telemetry) rebuild() *state {
	t.mu.Lock()
	tp, mp := t.providers()
	s := t.cur.Load()
	if same(s.tp, tp, s.tpCmp) && same(s.mp, mp, s.mpCmp) {
		t.mu.Unlock()
		return s // another goroutine rebuilt it
	}
	var next *state
	if t.closed {
		next = &state{tp: tp, mp: mp, tpCmp: isComparable(tp), mpCmp: isComparable(mp)}
	} else {
		next = t.build(tp, mp)
	}
	t.cur.Store(next)
	t.mu.Unlock()
	if s.reg != nil {
		_ = s.reg.Unregister()
	}
	return next
}

// isComparable reports whether v can be compared with ==, as the providers are to tell a
// change of state.
func isComparable(v any) bool { return v == nil || reflect.TypeOf(v).Comparable() }

// build resolves the tracer and instruments of a pair of providers. It holds no lock of the
// Telemetry's that the metric callback takes.
func (t *Telemetry) build(tp trace.TracerProvider, mp metric.MeterProvider) *state {
	s := &state{tp: tp, mp: mp, tpCmp: isComparable(tp), mpCmp: isComparable(mp)}
	s.tracing = !isNoop(tp)
	s.metrics = !isNoop(mp)
	s.on = s.tracing || s.metrics
	if s.tracing {
		s.tracer = tp.Tracer(ScopeName)
	}
	if s.metrics {
		m := mp.Meter(ScopeName)
		s.ins = newInstruments(m, otel.Handle)
		if t.cfg.state != nil {
			s.reg = s.ins.register(m, t, otel.Handle)
		}
	}
	return s
}

// Enabled reports whether the providers in use now record anything.
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
	t.cur.Store(&state{tp: s.tp, mp: s.mp, tpCmp: s.tpCmp, mpCmp: s.mpCmp})
	t.mu.Unlock()
	if s.reg != nil {
		return s.reg.Unregister()
	}
	return nil
}

// Packages whose providers record nothing.
const (
	otelGlobalPkg = "go.opentelemetry.io/otel/internal/global" // the delegates before an SDK is set
	traceNoopPkg  = "go.opentelemetry.io/otel/trace/noop"
	metricNoopPkg = "go.opentelemetry.io/otel/metric/noop"
	tracePkg      = "go.opentelemetry.io/otel/trace" // the deprecated trace.NewNoopTracerProvider
)

// isNoop reports whether a provider records nothing: the types of the noop packages, the
// deprecated trace.NewNoopTracerProvider, and the global delegates while no SDK is installed.
// (Once an SDK is installed, otel.GetTracerProvider returns it rather than the delegate.)
// It is called once per provider, not per request.
func isNoop(p any) bool {
	if p == nil {
		return true
	}
	typ := reflect.TypeOf(p)
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.PkgPath() {
	case traceNoopPkg, metricNoopPkg, otelGlobalPkg:
		return true
	case tracePkg:
		return typ.Name() == "noopTracerProvider"
	}
	return false
}

// isGlobalDelegate reports whether p is one of otel's global delegating providers or
// propagators.
func isGlobalDelegate(p any) bool {
	typ := reflect.TypeOf(p)
	if typ == nil {
		return false
	}
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	return typ.PkgPath() == otelGlobalPkg
}

// defaultPropagator is used while neither WithPropagators nor otel.SetTextMapPropagator set one.
var defaultPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// propagator resolves the propagator at each use, so that one set globally later is used.
type propagator struct{ t *Telemetry }

func (p propagator) get() propagation.TextMapPropagator {
	if p.t.cfg.prop != nil {
		return p.t.cfg.prop
	}
	if g := otel.GetTextMapPropagator(); !isGlobalDelegate(g) {
		return g
	}
	return defaultPropagator
}

func (p propagator) Inject(ctx context.Context, c propagation.TextMapCarrier) { p.get().Inject(ctx, c) }
func (p propagator) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return p.get().Extract(ctx, c)
}
func (p propagator) Fields() []string { return p.get().Fields() }
