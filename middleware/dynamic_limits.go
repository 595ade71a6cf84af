package middleware

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/proxyless/proxyless/route"
)

// uncountedBase is the registration with a Config of a Transport that follows it over a base
// transport whose connections it cannot count (not an *http.Transport): while it holds, the
// Config refuses a document that sets a destination's maxConnections.
type uncountedBase struct {
	base string // the base transport's type, for the error
}

// configBase returns the base a Transport that follows c sends through: when base (nil for
// http.DefaultTransport) is an *http.Transport, a clone that counts connections (see
// countingClone), as a destination's maxConnections may be set at any update of c. When base
// is not, it returns base itself unless c sets a maxConnections now (an error naming the
// field), and registers it with c, so that c refuses documents that set one until release
// is called.
func (c *Config) configBase(base http.RoundTripper) (_ http.RoundTripper, counted *http.Transport, release func(), _ error) {
	if base == nil {
		base = http.DefaultTransport
	}
	if ht, ok := base.(*http.Transport); ok {
		ht = countingClone(ht) // limits.go
		return ht, ht, func() {}, nil
	}
	tok := &uncountedBase{base: fmt.Sprintf("%T", base)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.cur.Load().dests.connLimitError(tok.base); err != nil {
		return nil, nil, nil, err
	}
	if c.uncounted == nil {
		c.uncounted = map[*uncountedBase]struct{}{}
	}
	c.uncounted[tok] = struct{}{}
	return base, nil, func() {
		c.mu.Lock()
		delete(c.uncounted, tok)
		c.mu.Unlock()
	}, nil
}

// checkCountable returns an error when t sets a destination's maxConnections while a
// Transport that cannot count connections follows c. Call it with c.mu held.
func (c *Config) checkCountable(t *destTable) error {
	for tok := range c.uncounted {
		return t.connLimitError(tok.base)
	}
	return nil
}

// connLimitError returns the error for the first service (by name) of t whose balancer sets
// maxConnections, for a Transport over a base of type base, which cannot count connections;
// nil when none sets it.
func (t *destTable) connLimitError(base string) error {
	var svcs []string
	for svc, e := range t.m {
		if b := e.spec.Balancer; b != nil && b.Limits.MaxConnections > 0 {
			svcs = append(svcs, svc)
		}
	}
	if len(svcs) == 0 {
		return nil
	}
	return &route.ConfigError{
		Path: "destinations." + slices.Min(svcs) + ".balancer.limits.maxConnections",
		Err:  fmt.Errorf("a Transport follows this Config over a base transport of type %s, whose connections it cannot count: give it an *http.Transport (or nil) as its base", base),
	}
}

// transportBase returns the base a Transport made with cfg sends through, the clone of it
// that counts connections (nil when none), and what its Close must call: see limitedBase
// (WithLimits) and Config.configBase (WithConfig).
func transportBase(base http.RoundTripper, cfg *config) (http.RoundTripper, *http.Transport, func(), error) {
	b, counted, err := limitedBase(base, cfg.balancer.Limits) // limits.go
	if err != nil || cfg.dynamic == nil || counted != nil {
		return b, counted, func() {}, err
	}
	return cfg.dynamic.configBase(b)
}
