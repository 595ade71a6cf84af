package middleware

import (
	"errors"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/ratelimit/overload"
	"github.com/proxyless/proxyless/route"
)

// WithTracerProvider sets where spans go. Default: the global provider as it is when the
// constructor runs (otel.GetTracerProvider()). Providers are taken once, at construction, as
// otelhttp takes them: an SDK installed globally after the Transport, client, handler or
// server is built is not seen by it. Install the SDK first, or pass its provider here.
//
// A provider that records nothing turns spans off, at almost no cost (no otelhttp or otelgrpc
// on the request path, no allocation): one of package go.opentelemetry.io/otel/trace/noop,
// or the global provider while no SDK is installed. With metrics off too, the constructors
// install none of it.
//
// Taken by every constructor: NewTransport, NewGRPCClient, NewHandler and NewGRPCServer
// (whose otelgrpc server handler reports to it, unless WithGRPCStatsHandler replaces that).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return option(func(c *config) {
		if tp == nil {
			c.errs = append(c.errs, errors.New("middleware: WithTracerProvider: provider is nil"))
			return
		}
		c.tel = append(c.tel, telemetry.WithTracerProvider(tp))
	})
}

// WithMeterProvider sets where metrics go. Default: the global provider as it is when the
// constructor runs (otel.GetMeterProvider()), taken once as for WithTracerProvider. A
// provider that records nothing turns metrics off: one of package
// go.opentelemetry.io/otel/metric/noop, or the global provider while no SDK is installed.
//
// Taken by every constructor, as WithTracerProvider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return option(func(c *config) {
		if mp == nil {
			c.errs = append(c.errs, errors.New("middleware: WithMeterProvider: provider is nil"))
			return
		}
		c.tel = append(c.tel, telemetry.WithMeterProvider(mp))
	})
}

// shadowMismatch counts a mirrored request whose shadow answered differently from the
// primary, in proxyless.shadow.mismatches: the route.Shadower's OnMismatch.
func (t *Transport) shadowMismatch(route, shadow string) { t.tel.ShadowMismatch(route, shadow) }

// limitStates returns the adaptive concurrency limits in force among cfg's, for the
// proxyless.concurrency.limit gauge: WithConcurrencyLimit's, when it is an *overload.Adaptive
// (policy "outbound"). A bulkhead's cap is fixed, and a throttler has none.
func limitStates(cfg *config) []telemetry.LimitState {
	if cfg.outbound == nil {
		return nil
	}
	if a, ok := cfg.outbound.conc.(*overload.Adaptive); ok {
		return []telemetry.LimitState{{Policy: "outbound", Limit: int64(a.Limit())}}
	}
	return nil
}

// limitState is the observable state of a client without destinations of its own to report
// (the gRPC client's are its channels'): its adaptive limits. nil when it has none.
func limitState(cfg *config) telemetry.Option {
	if limitStates(cfg) == nil {
		return nil
	}
	return telemetry.WithState(func(time.Time) telemetry.State { return telemetry.State{Limits: limitStates(cfg)} })
}

var (
	_ StatusSource = (*Transport)(nil)
	_ RouteSource  = (*Transport)(nil)
)

// Router returns the router given to [WithRoutes], whose current table routes the
// transport's requests, or nil when they are not routed. [StatusHandler] shows its table.
func (t *Transport) Router() *route.Router { return t.cfg.routes }

// Destinations describes each destination the transport has used (by key: the service, and
// the subset when a route chose one), sorted by key: endpoints with their balancer and breaker
// state, ejections, and whether discovery serves a stale set. It is meant for status pages and
// tests, not the request path.
func (t *Transport) Destinations() []DestinationStatus {
	dests := *t.dests.Load()
	out := make([]DestinationStatus, 0, len(dests))
	for key, d := range dests {
		ds := DestinationStatus{Service: key, Shadow: d.shadow, Ejections: d.bal.Ejections()}
		states := map[string]*EndpointStatus{}
		for _, e := range d.bal.Endpoints() {
			ds.Endpoints = append(ds.Endpoints, EndpointStatus{EndpointStats: e})
		}
		for i := range ds.Endpoints {
			states[ds.Endpoints[i].Addr] = &ds.Endpoints[i]
		}
		if d.breakers != nil {
			d.breakers.Range(func(addr string, b *breaker.Breaker) bool {
				if es := states[addr]; es != nil {
					es.HasBreaker, es.Breaker = true, b.State()
				}
				return true
			})
		}
		if t.cache != nil {
			if st := t.cache.Status(d.service); st.Stale {
				ds.Stale, ds.StaleSince = true, st.StaleSince
			}
		}
		out = append(out, ds)
	}
	slices.SortFunc(out, func(a, b DestinationStatus) int { return strings.Compare(a.Service, b.Service) })
	return out
}
