package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/route"
)

// routedService is a service a route of the table sends requests to, with where the route
// names it.
type routedService struct {
	route, field, service string
}

// routedServices lists the services the routes of t name: destinations, split arms, canary
// sides and shadows (a shadow without a service mirrors to the primary's, which is listed
// already or is the request's host).
func routedServices(t *route.Table) []routedService {
	var out []routedService
	add := func(rt *route.Route, field string, d *route.Destination) {
		if d != nil && d.Service != "" {
			out = append(out, routedService{route: rt.Name(), field: field, service: d.Service})
		}
	}
	routes := t.Routes()
	if def := t.Default(); def != nil {
		routes = append(routes[:len(routes):len(routes)], def)
	}
	for _, rt := range routes {
		add(rt, "destination", rt.Destination())
		for i, arm := range rt.Split() {
			add(rt, fmt.Sprintf("split[%d]", i), &arm.Destination)
		}
		if cs, ok := rt.Canary(); ok {
			add(rt, "canary.stable", &cs.Stable)
			add(rt, "canary.canary", &cs.Canary)
		}
		if sp := rt.Shadow(); sp != nil {
			add(rt, "shadow", sp.Destination())
		}
	}
	return out
}

// checkRoutedServices refuses routes to services a resolver that knows its services up front
// (a discovery.Knower such as discovery.Static) does not serve, naming the route and field.
func checkRoutedServices(r *route.Router, res discovery.Resolver) error {
	k, ok := res.(discovery.Knower)
	if r == nil || !ok {
		return nil
	}
	var errs []error
	for _, s := range routedServices(r.Table()) {
		if !k.Knows(s.service) {
			errs = append(errs, fmt.Errorf("middleware: WithRoutes: route %q %s: service %q: %w", s.route, s.field, s.service, discovery.ErrUnknownService))
		}
	}
	return errors.Join(errs...)
}

// warnUnservedRoutes looks up, in the background, each service the routes name, through a
// resolver that cannot tell without the network whether it serves a service (Consul, DNS),
// and warns through the logger about each one it cannot resolve or finds without endpoints
// within defaultDiscoveryWait. The services looked up stay followed by the cache, ready for
// the first request. It stops when the transport closes.
func (t *Transport) warnUnservedRoutes() {
	if t.cfg.routes == nil || t.cache == nil {
		return
	}
	if _, ok := t.cfg.resolver.(discovery.Knower); ok {
		return // checked when the transport was made
	}
	services := routedServices(t.cfg.routes.Table())
	if len(services) == 0 {
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { // ends the lookups when the transport closes
			select {
			case <-t.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		for _, s := range services {
			if !t.warnIfUnserved(ctx, s, t.cfg.logger) {
				return
			}
		}
	}()
}

// warnIfUnserved looks s up and warns when it has no endpoints; false when the transport is
// closing.
func (t *Transport) warnIfUnserved(ctx context.Context, s routedService, logger *slog.Logger) bool {
	wctx, cancel := context.WithTimeout(ctx, defaultDiscoveryWait)
	defer cancel()
	snap, err := t.cache.Get(wctx, s.service)
	switch {
	case ctx.Err() != nil:
		return false
	case err != nil:
		logger.Warn("middleware: a route names a service the resolver cannot resolve", "route", s.route, "field", s.field, "service", s.service, "error", err)
	case len(snap.Endpoints) == 0:
		logger.Warn("middleware: a route names a service with no endpoints", "route", s.route, "field", s.field, "service", s.service)
	}
	return true
}
