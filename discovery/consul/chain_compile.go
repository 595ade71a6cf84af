package consul

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/route"
)

// Bounds on what one compiled chain may ask for.
const (
	maxChainNodes  = 256
	maxChainRoutes = 256
	maxChainSplits = 64
	maxChainDepth  = 8 // splitters of splitters
)

// ChainError is a compiled discovery chain that cannot be turned into routes: a malformed
// chain or one that asks for what the library does not do (an unsupported subset filter, a
// cross-datacenter target, an inverted header match). Its message reads
// "consul: discovery chain <service>: <where>: <problem>". The chain in force stays.
type ChainError struct {
	Service string // the chain's service
	Where   string // the part of the chain, e.g. `node "router:web.default.default.dc1" routes[0].match.header[1]`
	Err     error
}

// Error returns "consul: discovery chain <service>: <where>: <problem>".
func (e *ChainError) Error() string {
	if e.Where == "" {
		return fmt.Sprintf("consul: discovery chain %s: %v", e.Service, e.Err)
	}
	return fmt.Sprintf("consul: discovery chain %s: %s: %v", e.Service, e.Where, e.Err)
}

// Unwrap returns the problem, such as an error matching ErrUnsupportedFilter.
func (e *ChainError) Unwrap() error { return e.Err }

// ChainRules is what one service's compiled discovery chain says, in the library's terms.
type ChainRules struct {
	// Service is the chain's service: its routes match requests whose host is this name.
	Service string
	// Routes are the chain's routes, in order (a router's routes, its catch-all last; or a
	// single route to the chain's splitter or resolver).
	Routes []route.RouteConfig
	// Balancers are the load-balancer policies of the destination services, by service.
	Balancers map[string]balancer.Config
	// ConnectTimeouts are the resolvers' connect timeouts, by destination service: a
	// ChainWatcher makes each the destination's connectTimeout (see
	// middleware.DestinationPolicy).
	ConnectTimeouts map[string]time.Duration
	// Failover lists the services whose health decides a failover.
	Failover []string
	// Warnings name what the chain asks for that is mapped only approximately or not
	// applied (cookie hash policies' cookieConfig, idle timeouts).
	Warnings []string
}

// HealthFunc reports whether a destination (a service and a subset of its instances) has no
// instance that can take traffic: every one critical, or none at all. A chain compiler asks
// it for the primary of each resolver that has a failover. Unknown health is not down.
type HealthFunc func(service string, subset route.Subset) (down bool)

// CompileChain turns a compiled discovery chain (as /v1/discovery-chain/<service> answers it)
// into routes and destination policies. Requests are matched by host: every route matches
// hosts equal to the chain's service name. A default chain (no router, splitter or resolver
// config entry: Consul's own defaults) gives no route, so that requests to the service keep
// what the local configuration says. down decides failovers (nil: no primary is down). An
// unsupported or malformed chain is a *ChainError.
func CompileChain(c *api.CompiledDiscoveryChain, down HealthFunc) (*ChainRules, error) {
	if c == nil {
		return nil, &ChainError{Err: errors.New("no chain in the answer")}
	}
	if down == nil {
		down = func(string, route.Subset) bool { return false }
	}
	cc := &chainCompiler{c: c, down: down, rules: &ChainRules{
		Service:         c.ServiceName,
		Balancers:       map[string]balancer.Config{},
		ConnectTimeouts: map[string]time.Duration{},
	}}
	if err := cc.compile(); err != nil {
		var ce *ChainError
		if errors.As(err, &ce) {
			ce.Service = c.ServiceName
			return nil, ce
		}
		return nil, &ChainError{Service: c.ServiceName, Err: err}
	}
	// What the route package refuses (an invalid regular expression, say) is refused here,
	// so that an accepted chain always loads.
	if _, err := route.Compile(route.Config{Routes: cc.rules.Routes}); err != nil {
		return nil, &ChainError{Service: c.ServiceName, Where: "routes", Err: err}
	}
	return cc.rules, nil
}

type chainCompiler struct {
	c     *api.CompiledDiscoveryChain
	down  HealthFunc
	rules *ChainRules
}

func (cc *chainCompiler) compile() error {
	c := cc.c
	if err := validName("serviceName", c.ServiceName); err != nil {
		return err
	}
	if len(c.Nodes) > maxChainNodes {
		return fmt.Errorf("%d nodes, more than %d", len(c.Nodes), maxChainNodes)
	}
	if c.Default {
		return nil
	}
	start, err := cc.node(c.StartNode, "startNode")
	if err != nil {
		return err
	}
	host := []string{c.ServiceName}
	if start.Type != api.DiscoveryGraphNodeTypeRouter {
		rc := route.RouteConfig{Name: "consul:" + c.ServiceName, Match: route.Match{Hosts: host}}
		if err := cc.action(&rc, c.StartNode, "startNode"); err != nil {
			return err
		}
		cc.rules.Routes = append(cc.rules.Routes, rc)
		return nil
	}
	if len(start.Routes) > maxChainRoutes {
		return fmt.Errorf("node %q: %d routes, more than %d", c.StartNode, len(start.Routes), maxChainRoutes)
	}
	for i, r := range start.Routes {
		where := fmt.Sprintf("node %q routes[%d]", c.StartNode, i)
		if r == nil {
			return &ChainError{Where: where, Err: errors.New("empty route")}
		}
		rc, err := cc.routerRoute(r, where)
		if err != nil {
			return err
		}
		rc.Name = fmt.Sprintf("consul:%s:routes[%d]", c.ServiceName, i)
		rc.Match.Hosts = host
		cc.rules.Routes = append(cc.rules.Routes, rc)
	}
	return nil
}

// validName accepts a service name of letters, digits, '-', '_' and '.', as Consul's DNS
// interface does, up to 253 bytes.
func validName(field, s string) error {
	ok := s != "" && len(s) <= 253
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c == '-' || c == '_' || c == '.' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
	}
	if !ok {
		return &ChainError{Where: field, Err: fmt.Errorf("bad service name %q", truncateFilter(s))}
	}
	return nil
}

// node returns the chain's node named name.
func (cc *chainCompiler) node(name, where string) (*api.DiscoveryGraphNode, error) {
	n := cc.c.Nodes[name]
	if n == nil {
		return nil, &ChainError{Where: where, Err: fmt.Errorf("node %q is not in the chain", name)}
	}
	return n, nil
}

// action fills rc's destination (or split) from the splitter or resolver node named next.
func (cc *chainCompiler) action(rc *route.RouteConfig, next, where string) error {
	n, err := cc.node(next, where)
	if err != nil {
		return err
	}
	switch n.Type {
	case api.DiscoveryGraphNodeTypeResolver:
		d, err := cc.resolver(n, next)
		if err != nil {
			return err
		}
		rc.Destination = &d
	case api.DiscoveryGraphNodeTypeSplitter:
		return cc.split(rc, n, next, 1, 0)
	default:
		return &ChainError{Where: where, Err: fmt.Errorf("next node %q is a %q, want a splitter or resolver", next, n.Type)}
	}
	return nil
}

// split appends to rc's split the destinations below the splitter node n (named name), each
// weighted by its share of the requests: share is n's own (splitters of splitters multiply;
// Consul flattens them, but an answer need not be). Weights are hundredths of a percent,
// Consul's own precision. The work is bounded: the first error (nesting deeper than
// maxChainDepth, more than maxChainSplits destinations) ends the walk.
func (cc *chainCompiler) split(rc *route.RouteConfig, n *api.DiscoveryGraphNode, name string, share float64, depth int) error {
	if depth >= maxChainDepth {
		return &ChainError{Where: fmt.Sprintf("node %q", name), Err: fmt.Errorf("splitters nested more than %d deep", maxChainDepth)}
	}
	if len(n.Splits) == 0 || len(n.Splits) > maxChainSplits {
		return &ChainError{Where: fmt.Sprintf("node %q", name), Err: fmt.Errorf("splitter with %d splits (want 1 to %d)", len(n.Splits), maxChainSplits)}
	}
	for i, s := range n.Splits {
		sw := fmt.Sprintf("node %q splits[%d]", name, i)
		if s == nil || math.IsNaN(float64(s.Weight)) || s.Weight < 0 || s.Weight > 100 {
			return &ChainError{Where: sw, Err: errors.New("weight must be 0 to 100")}
		}
		rn, err := cc.node(s.NextNode, sw)
		if err != nil {
			return err
		}
		sub := share * float64(s.Weight) / 100
		switch rn.Type {
		case api.DiscoveryGraphNodeTypeResolver:
			d, err := cc.resolver(rn, s.NextNode)
			if err != nil {
				return err
			}
			rc.Split = append(rc.Split, route.WeightedDestination{Destination: d, Weight: uint32(math.Round(sub * 10000))})
		case api.DiscoveryGraphNodeTypeSplitter:
			if err := cc.split(rc, rn, s.NextNode, sub, depth+1); err != nil {
				return err
			}
		default:
			return &ChainError{Where: sw, Err: fmt.Errorf("next node %q is a %s, want a splitter or resolver", s.NextNode, rn.Type)}
		}
		if len(rc.Split) > maxChainSplits {
			return &ChainError{Where: sw, Err: fmt.Errorf("more than %d destinations in one split", maxChainSplits)}
		}
	}
	return nil
}

// resolver returns the destination of a resolver node: its target, or the first failover
// target whose instances are not all down when the primary's are.
func (cc *chainCompiler) resolver(n *api.DiscoveryGraphNode, name string) (route.Destination, error) {
	where := fmt.Sprintf("node %q", name)
	r := n.Resolver
	if r == nil {
		return route.Destination{}, &ChainError{Where: where, Err: errors.New("resolver node without a resolver")}
	}
	primary, err := cc.target(r.Target, where+" target")
	if err != nil {
		return route.Destination{}, err
	}
	if err := cc.policies(n, r, primary.Service, where); err != nil {
		return route.Destination{}, err
	}
	if r.Failover == nil || len(r.Failover.Targets) == 0 {
		return primary, nil
	}
	cc.rules.Failover = appendNew(cc.rules.Failover, primary.Service)
	alts := make([]route.Destination, 0, len(r.Failover.Targets))
	for i, id := range r.Failover.Targets {
		d, err := cc.target(id, fmt.Sprintf("%s failover.targets[%d]", where, i))
		if err != nil {
			return route.Destination{}, err
		}
		cc.rules.Failover = appendNew(cc.rules.Failover, d.Service)
		alts = append(alts, d)
	}
	if !cc.down(primary.Service, primary.Subset) {
		return primary, nil
	}
	for _, d := range alts {
		if !cc.down(d.Service, d.Subset) {
			return d, nil
		}
	}
	return primary, nil // everything is down: stay on the primary
}

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// target returns the destination of the chain's target id.
func (cc *chainCompiler) target(id, where string) (route.Destination, error) {
	t := cc.c.Targets[id]
	if t == nil {
		return route.Destination{}, &ChainError{Where: where, Err: fmt.Errorf("target %q is not in the chain", id)}
	}
	where = fmt.Sprintf("target %q", id)
	if err := validName(where+" service", t.Service); err != nil {
		return route.Destination{}, err
	}
	if t.Datacenter != "" && cc.c.Datacenter != "" && t.Datacenter != cc.c.Datacenter {
		return route.Destination{}, &ChainError{Where: where, Err: fmt.Errorf("datacenter %q: only targets in the chain's datacenter %q are supported", t.Datacenter, cc.c.Datacenter)}
	}
	if t.Namespace != "" && t.Namespace != "default" {
		return route.Destination{}, &ChainError{Where: where, Err: fmt.Errorf("namespace %q: only targets in the default namespace are supported", t.Namespace)}
	}
	if t.External {
		return route.Destination{}, &ChainError{Where: where, Err: errors.New("external (terminating gateway) targets are not supported")}
	}
	sub, err := ParseSubsetFilter(t.Subset.Filter)
	if err != nil {
		return route.Destination{}, &ChainError{Where: fmt.Sprintf("%s subset %q filter", where, t.ServiceSubset), Err: err}
	}
	return route.Destination{Service: t.Service, Subset: sub}, nil
}

// policies records the resolver's load balancer and connect timeout for service.
func (cc *chainCompiler) policies(n *api.DiscoveryGraphNode, r *api.DiscoveryResolver, service, where string) error {
	if r.ConnectTimeout > 0 {
		cc.rules.ConnectTimeouts[service] = r.ConnectTimeout
	}
	lb := n.LoadBalancer
	if lb == nil {
		return nil
	}
	var p balancer.Policy
	switch lb.Policy {
	case "":
		return nil
	case "random":
		p = balancer.PolicyRandom
	case "round_robin":
		p = balancer.PolicyWeightedRoundRobin // Envoy's round robin honours weights
	case "least_request":
		p = balancer.PolicyLeastRequest
	case "maglev":
		p = balancer.PolicyMaglev
	case "ring_hash":
		p = balancer.PolicyRingHash
	default:
		return &ChainError{Where: where + " loadBalancer.policy", Err: fmt.Errorf("unknown policy %q", lb.Policy)}
	}
	cfg := balancer.Config{Policy: p}
	if err := cc.chainHashing(&cfg, lb, where); err != nil {
		return err
	}
	if old, ok := cc.rules.Balancers[service]; ok && old.Policy != p {
		cc.warn("%s: service %s has load balancers %s and %s; %s kept", where, service, old.Policy, p, old.Policy)
		return nil
	}
	cc.rules.Balancers[service] = cfg
	return nil
}

func (cc *chainCompiler) warn(format string, args ...any) {
	cc.rules.Warnings = append(cc.rules.Warnings, fmt.Sprintf(format, args...))
}

// routerRoute translates one route of a router node.
func (cc *chainCompiler) routerRoute(r *api.DiscoveryRoute, where string) (route.RouteConfig, error) {
	var rc route.RouteConfig
	def := r.Definition
	if def == nil {
		return rc, &ChainError{Where: where, Err: errors.New("route without a definition")}
	}
	if def.Match != nil && def.Match.HTTP != nil {
		m, err := httpMatch(def.Match.HTTP, where+".match.http")
		if err != nil {
			return rc, err
		}
		rc.Match = m
	}
	if err := cc.action(&rc, r.NextNode, where+".nextNode"); err != nil {
		return rc, err
	}
	if d := def.Destination; d != nil {
		if err := cc.routeDestination(&rc, d, where+".destination"); err != nil {
			return rc, err
		}
	}
	return rc, nil
}

// routeDestination applies a router destination's timeouts, retries, rewrites and headers.
func (cc *chainCompiler) routeDestination(rc *route.RouteConfig, d *api.ServiceRouteDestination, where string) error {
	if d.RequestTimeout < 0 {
		return &ChainError{Where: where + ".requestTimeout", Err: errors.New("negative")}
	}
	rc.Timeout = route.Duration(d.RequestTimeout)
	if d.IdleTimeout > 0 {
		cc.warn("%s: idleTimeout %v is not applied", where, d.IdleTimeout)
	}
	if d.NumRetries > 0 || d.RetryOnConnectFailure || len(d.RetryOnStatusCodes) > 0 {
		ro := &route.RetryOverride{MaxRetries: int(min(d.NumRetries, 100))}
		if d.NumRetries == 0 {
			ro.MaxRetries = 1 // Envoy's default when a retry condition is set
		}
		for _, s := range d.RetryOnStatusCodes {
			if s < 100 || s > 599 {
				return &ChainError{Where: where + ".retryOnStatusCodes", Err: fmt.Errorf("status %d out of range", s)}
			}
			ro.Statuses = append(ro.Statuses, int(s))
		}
		rc.Retry = ro
	}
	if len(d.RetryOn) > 0 {
		cc.warn("%s: retryOn %v is not applied (the transport retries connection failures and its retryable statuses)", where, d.RetryOn)
	}
	if d.PrefixRewrite != "" {
		if rc.Match.Path == nil || rc.Match.Path.Prefix == "" {
			return &ChainError{Where: where + ".prefixRewrite", Err: errors.New("supported only on a route matched by pathPrefix")}
		}
		rc.Rewrite = &route.Rewrite{Prefix: d.PrefixRewrite}
	}
	rc.RequestHeaders = headerRewrite(d.RequestHeaders)
	rc.ResponseHeaders = headerRewrite(d.ResponseHeaders)
	return nil
}

func headerRewrite(h *api.HTTPHeaderModifiers) route.HeaderRewrite {
	if h == nil {
		return route.HeaderRewrite{}
	}
	return route.HeaderRewrite{Set: h.Set, Add: h.Add, Remove: h.Remove}
}

// httpMatch translates a router route's HTTP match.
func httpMatch(h *api.ServiceRouteHTTPMatch, where string) (route.Match, error) {
	var m route.Match
	n := 0
	for _, s := range []string{h.PathExact, h.PathPrefix, h.PathRegex} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return m, &ChainError{Where: where, Err: errors.New("more than one of pathExact, pathPrefix, pathRegex")}
	}
	switch {
	case h.CaseInsensitive && h.PathExact != "":
		m.Path = &route.StringMatch{Regex: "(?i)" + regexp.QuoteMeta(h.PathExact)}
	case h.CaseInsensitive && h.PathPrefix != "":
		m.Path = &route.StringMatch{Regex: "(?i)" + regexp.QuoteMeta(h.PathPrefix) + ".*"}
	case h.CaseInsensitive && h.PathRegex != "":
		m.Path = &route.StringMatch{Regex: "(?i)" + h.PathRegex}
	case n == 1:
		m.Path = &route.StringMatch{Exact: h.PathExact, Prefix: h.PathPrefix, Regex: h.PathRegex}
	}
	for _, meth := range h.Methods {
		m.Methods = append(m.Methods, strings.ToUpper(meth))
	}
	for i, hm := range h.Header {
		x, err := headerMatch(hm)
		if err != nil {
			return m, &ChainError{Where: fmt.Sprintf("%s.header[%d]", where, i), Err: err}
		}
		m.Headers = append(m.Headers, x)
	}
	for i, q := range h.QueryParam {
		if q.Name == "" {
			return m, &ChainError{Where: fmt.Sprintf("%s.queryParam[%d]", where, i), Err: errors.New("no name")}
		}
		m.Query = append(m.Query, route.QueryMatch{Name: q.Name, Exact: q.Exact, Regex: q.Regex, Present: q.Present})
	}
	return m, nil
}

func headerMatch(h api.ServiceRouteHTTPMatchHeader) (route.HeaderMatch, error) {
	if h.Name == "" {
		return route.HeaderMatch{}, errors.New("no name")
	}
	x := route.HeaderMatch{Name: h.Name, Exact: h.Exact, Prefix: h.Prefix, Regex: h.Regex, Present: h.Present}
	if h.Suffix != "" {
		if h.Exact != "" || h.Prefix != "" || h.Regex != "" || h.Present {
			return x, errors.New("suffix with another condition")
		}
		x.Regex = ".*" + regexp.QuoteMeta(h.Suffix)
	}
	if h.Invert {
		if !h.Present || h.Exact != "" || h.Prefix != "" || h.Regex != "" || h.Suffix != "" {
			return x, errors.New("invert is supported only with present (an absent header)")
		}
		x.Present, x.Absent = false, true
	}
	return x, nil
}
