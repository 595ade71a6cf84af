package route

// fallbackTarget compiles rc's Fallback into r, whose split or canary is compiled: the
// canary's stable side, or the split's heaviest arm (the first of the heaviest), unless
// Fallback is false.
func (c *compiler) fallbackTarget(rc RouteConfig, path string, r *Route) bool {
	if rc.Fallback != nil && r.split == nil && r.canary == nil {
		c.fail(path+".fallback", "applies only to a route with a split or a canary")
		return false
	}
	if rc.Fallback != nil && !*rc.Fallback {
		return true
	}
	switch {
	case r.canary != nil:
		r.fallback = &r.canary.stable
	case r.split != nil:
		best, bestW, prev := 0, uint64(0), uint64(0)
		for i, cum := range r.split.cum {
			if w := cum - prev; w > bestW {
				best, bestW = i, w
			}
			prev = cum
		}
		r.fallback = &r.split.dests[best]
	}
	return true
}

// Fallback returns where the route sends a request whose chosen split arm or canary side can
// take none (see [Decision].Fallback): the canary's stable destination or the split's heaviest
// arm; nil when the route has neither or its Fallback is false. The caller must not modify it.
func (r *Route) Fallback() *Destination { return r.fallback }

// fallbackFor returns the decision's fallback: the route's, unless the request already goes
// there or a trusted caller pinned its side.
func (r *Route) fallbackFor(d *Decision) *Destination {
	if r.fallback == nil || d.Pinned || d.Destination == r.fallback {
		return nil
	}
	return r.fallback
}
