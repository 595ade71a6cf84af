package middleware

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/route"
)

// destPolicies caches, for one destTable of the transport's Config, each service's policies
// merged into the transport's own.
type destPolicies struct {
	table *destTable
	m     sync.Map // *destEntry → *policies
}

// dynamicPolicies is what a Transport keeps of its Config (WithConfig); the zero value is
// ready to use.
type dynamicPolicies struct {
	cache atomic.Pointer[destPolicies]
}

// snapshot returns the Config's current routes and destination policies (WithConfig), read
// once per request so that the two always come from one document; nil without a Config.
func (t *Transport) snapshot() *configSnap {
	if t.cfg.dynamic == nil {
		return nil
	}
	return t.cfg.dynamic.cur.Load()
}

// destEntry returns service's policies in the current destination table, or nil.
func (t *Transport) destEntry(service string) *destEntry {
	if t.cfg.dynamic == nil {
		return nil
	}
	return t.cfg.dynamic.cur.Load().dests.m[service]
}

// ownPolicies returns the policies a request to service runs under before any route
// override: the transport's, with the service's destination policies of snap (nil without a
// Config) merged in.
func (t *Transport) ownPolicies(snap *configSnap, service string) *policies {
	if snap == nil {
		return &t.pol
	}
	table := snap.dests
	e := table.m[service]
	if e == nil || (e.retry == nil && e.hedge == nil && !e.spec.DisableHedge && e.spec.Timeout == 0 && e.spec.AttemptTimeout == 0) {
		return &t.pol
	}
	cache := t.dyn.cache.Load()
	if cache == nil || cache.table != table {
		cache = &destPolicies{table: table}
		t.dyn.cache.Store(cache) // a racing request may build it again: harmless
	}
	if p, ok := cache.m.Load(e); ok {
		return p.(*policies)
	}
	p := mergeDest(t.pol, e)
	cache.m.Store(e, p)
	return p
}

// mergeDest applies a destination's policies (validated and normalized when loaded) to the
// transport's own.
func mergeDest(p policies, e *destEntry) *policies {
	if e.retry != nil {
		r := *e.retry
		// The budget is the transport's.
		r.BudgetRatio, r.MinRetriesPerSecond = p.retry.BudgetRatio, p.retry.MinRetriesPerSecond
		p.retry = r
	}
	switch {
	case e.spec.DisableHedge:
		p.hedge = HedgePolicy{}
	case e.hedge != nil:
		p.hedge = *e.hedge
	}
	if e.spec.Timeout > 0 {
		p.timeout = e.spec.Timeout
	}
	if e.spec.AttemptTimeout > 0 {
		p.attemptTO = e.spec.AttemptTimeout
	}
	np := newPolicies(p.retry, p.hedge, p.timeout, p.attemptTO)
	return &np
}

// buildOf returns what service's balancer and breakers are to be made from: nil for the
// transport's own options.
func (t *Transport) buildOf(service string) *destBuild {
	if e := t.destEntry(service); e != nil {
		return e.build
	}
	return nil
}

// newBalancer makes a destination's balancer and breaker set (nil when breakers are off)
// from b, or from the transport's options where b leaves them.
func (t *Transport) newBalancer(b *destBuild, opts ...breaker.Option) (*balancer.Balancer, *breaker.Set, error) {
	bc, kc, off := t.cfg.balancer, t.cfg.breaker, t.cfg.breakerOff
	if b != nil {
		if b.balancer != nil {
			bc = *b.balancer
		}
		if b.breaker != nil {
			kc, off = *b.breaker, false
		}
		off = off || b.breakerOff
	}
	bal, err := balancer.New(bc)
	if err != nil {
		return nil, nil, err
	}
	if off {
		return bal, nil, nil
	}
	set, err := breaker.NewSet(kc, opts...)
	if err != nil {
		_ = bal.Close()
		return nil, nil, err
	}
	return bal, set, nil
}

// current returns d, or when the Config changed d's balancer or breaker settings since d was
// made, a destination made afresh under the new ones (d is dropped; requests in flight on it
// finish normally).
// It compares with the Config's latest settings, not the request's snapshot: a request that
// read the previous document must not drop (and so churn) a destination already rebuilt.
func (t *Transport) current(req *http.Request, rd *route.Destination, d *destination) (*destination, error) {
	if t.cfg.dynamic == nil || t.buildOf(d.service) == d.build {
		return d, nil
	}
	t.drop(d)
	return t.destination(req, rd)
}

// drop removes d from the destination table and releases its follow goroutine and balancer,
// keeping the service's discovery watch for the destination that replaces it.
func (t *Transport) drop(d *destination) {
	t.mu.Lock()
	old := *t.dests.Load()
	next := make(map[string]*destination, len(old))
	found := false
	for k, x := range old {
		if x == d {
			found = true
			continue
		}
		next[k] = x
	}
	if found {
		t.dests.Store(&next)
	}
	t.mu.Unlock()
	if found {
		close(d.stop)
		_ = d.bal.Close()
	}
}

// destLimits returns the limits of snap (nil without a Config) for service, or nil.
func (t *Transport) destLimits(snap *configSnap, service string) *outboundLimits {
	if snap == nil {
		return nil
	}
	if e := snap.dests.m[service]; e != nil {
		return e.limits
	}
	return nil
}
