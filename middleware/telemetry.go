package middleware

import (
	"errors"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/tracing"
)

// WithTracerProvider sets where spans go. Default: the global provider at use time, and no
// spans at all (at almost no cost) while it is the no-op one.
//
// Taken by every constructor: NewTransport, NewGRPCClient, NewHandler and NewGRPCServer
// (whose otelgrpc server handler reports to it, unless WithGRPCStatsHandler replaces that).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return option(func(c *config) {
		if tp == nil {
			c.errs = append(c.errs, errors.New("middleware: WithTracerProvider: provider is nil"))
			return
		}
		c.tel = append(c.tel, tracing.WithTracerProvider(tp))
		c.grpc.tp = tp // for otelgrpc: grpc_options.go
	})
}

// WithMeterProvider sets where metrics go. Default: the global provider at use time, and no
// metrics at all (at almost no cost) while it is the no-op one.
//
// Taken by every constructor, as WithTracerProvider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return option(func(c *config) {
		if mp == nil {
			c.errs = append(c.errs, errors.New("middleware: WithMeterProvider: provider is nil"))
			return
		}
		c.tel = append(c.tel, tracing.WithMeterProvider(mp))
		c.grpc.mp = mp // for otelgrpc: grpc_options.go
	})
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
		ds := DestinationStatus{Service: key, Ejections: d.bal.Ejections()}
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
