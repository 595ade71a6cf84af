package connect

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/route"
)

// maxChainDepth bounds how deep compileNode follows a chain's nodes (splitters of splitters).
const maxChainDepth = 8

// compileChain turns a compiled discovery chain into routes for the requests whose host is
// the chain's service. A default chain (no router, splitter or resolver entry) gives none:
// such requests keep the service as they are. It understands routers (path, header, query
// and method matches; request timeout, retries, prefix rewrite, header changes), splitters and
// resolvers (subsets by filter, default subsets and redirects, which the agent has already
// resolved into targets); anything else is an error, so that the last good chain stays.
func compileChain(c *api.CompiledDiscoveryChain) ([]route.RouteConfig, error) {
	if c == nil || c.ServiceName == "" {
		return nil, errors.New("connect: discovery chain: empty answer")
	}
	if c.Default {
		return nil, nil
	}
	start := c.Nodes[c.StartNode]
	if start == nil {
		return nil, fmt.Errorf("connect: discovery chain of %q: no start node %q", c.ServiceName, c.StartNode)
	}
	name := "consul:" + c.ServiceName
	hosts := []string{c.ServiceName}
	if start.Type != api.DiscoveryGraphNodeTypeRouter {
		rc := route.RouteConfig{Name: name, Match: route.Match{Hosts: hosts}}
		if err := chainTarget(c, c.StartNode, &rc, 0); err != nil {
			return nil, err
		}
		return []route.RouteConfig{rc}, nil
	}
	var out []route.RouteConfig
	for i, r := range start.Routes {
		if r == nil {
			return nil, fmt.Errorf("connect: discovery chain of %q: routes[%d] is empty", c.ServiceName, i)
		}
		rc, err := chainRoute(c, r, fmt.Sprintf("%s:routes[%d]", name, i), hosts)
		if err != nil {
			return nil, err
		}
		out = append(out, rc)
	}
	return out, nil
}

// chainRoute compiles one router route.
func chainRoute(c *api.CompiledDiscoveryChain, r *api.DiscoveryRoute, name string, hosts []string) (route.RouteConfig, error) {
	rc := route.RouteConfig{Name: name, Match: route.Match{Hosts: hosts}}
	if def := r.Definition; def != nil {
		if def.Match != nil && def.Match.HTTP != nil {
			m, err := chainMatch(def.Match.HTTP)
			if err != nil {
				return rc, fmt.Errorf("connect: discovery chain of %q: %s: %w", c.ServiceName, name, err)
			}
			m.Hosts = hosts
			rc.Match = m
		}
		if d := def.Destination; d != nil {
			chainDestination(d, &rc)
		}
	}
	if err := chainTarget(c, r.NextNode, &rc, 0); err != nil {
		return rc, err
	}
	return rc, nil
}

// chainDestination carries a router destination's request settings over.
func chainDestination(d *api.ServiceRouteDestination, rc *route.RouteConfig) {
	rc.Timeout = route.Duration(d.RequestTimeout)
	if d.NumRetries > 0 || len(d.RetryOnStatusCodes) > 0 {
		rc.Retry = &route.RetryOverride{MaxRetries: int(min(d.NumRetries, 10))}
		for _, s := range d.RetryOnStatusCodes {
			rc.Retry.Statuses = append(rc.Retry.Statuses, int(s))
		}
	}
	if d.PrefixRewrite != "" {
		rc.Rewrite = &route.Rewrite{Prefix: d.PrefixRewrite}
	}
	if h := d.RequestHeaders; h != nil {
		rc.RequestHeaders = route.HeaderRewrite{Set: h.Set, Add: h.Add, Remove: h.Remove}
	}
	if h := d.ResponseHeaders; h != nil {
		rc.ResponseHeaders = route.HeaderRewrite{Set: h.Set, Add: h.Add, Remove: h.Remove}
	}
}

// chainMatch translates a router match.
func chainMatch(h *api.ServiceRouteHTTPMatch) (route.Match, error) {
	var m route.Match
	p := func(exact, prefix, regex string) *route.StringMatch {
		return &route.StringMatch{Exact: exact, Prefix: prefix, Regex: regex}
	}
	switch {
	case h.CaseInsensitive && h.PathExact != "":
		m.Path = p("", "", "(?i)"+regexp.QuoteMeta(h.PathExact))
	case h.CaseInsensitive && h.PathPrefix != "":
		m.Path = p("", "", "(?i)"+regexp.QuoteMeta(h.PathPrefix)+".*")
	case h.CaseInsensitive && h.PathRegex != "":
		m.Path = p("", "", "(?i)"+h.PathRegex)
	case h.PathExact != "" || h.PathPrefix != "" || h.PathRegex != "":
		m.Path = p(h.PathExact, h.PathPrefix, h.PathRegex)
	}
	for i, hd := range h.Header {
		hm := route.HeaderMatch{Name: hd.Name, Exact: hd.Exact, Prefix: hd.Prefix, Regex: hd.Regex, Present: hd.Present}
		if hd.Suffix != "" {
			hm.Regex = ".*" + regexp.QuoteMeta(hd.Suffix)
		}
		if hd.Invert {
			if !hd.Present {
				return m, fmt.Errorf("Header[%d]: only Present may be inverted", i)
			}
			hm.Present, hm.Absent = false, true
		}
		m.Headers = append(m.Headers, hm)
	}
	for _, q := range h.QueryParam {
		m.Query = append(m.Query, route.QueryMatch{Name: q.Name, Exact: q.Exact, Regex: q.Regex, Present: q.Present})
	}
	m.Methods = slices.Clone(h.Methods)
	return m, nil
}

// chainTarget sets rc's destination (or split) from the node named id.
func chainTarget(c *api.CompiledDiscoveryChain, id string, rc *route.RouteConfig, depth int) error {
	arms, err := chainArms(c, id, 1, depth)
	if err != nil {
		return err
	}
	if len(arms) == 1 {
		d := arms[0].Destination
		rc.Destination = &d
		return nil
	}
	rc.Split = arms
	return nil
}

// chainArms returns the weighted destinations below node id, weight being the node's share
// (splitters of splitters multiply). Weights are hundredths of a percent: Consul's precision.
func chainArms(c *api.CompiledDiscoveryChain, id string, share float64, depth int) ([]route.WeightedDestination, error) {
	n := c.Nodes[id]
	if n == nil || depth > maxChainDepth {
		return nil, fmt.Errorf("connect: discovery chain of %q: node %q missing or too deep", c.ServiceName, id)
	}
	switch n.Type {
	case api.DiscoveryGraphNodeTypeResolver:
		if n.Resolver == nil {
			return nil, fmt.Errorf("connect: discovery chain of %q: resolver node %q is empty", c.ServiceName, id)
		}
		d, err := chainDest(c, n.Resolver.Target)
		if err != nil {
			return nil, err
		}
		return []route.WeightedDestination{{Destination: d, Weight: uint32(math.Round(share * 10000))}}, nil
	case api.DiscoveryGraphNodeTypeSplitter:
		var out []route.WeightedDestination
		for _, s := range n.Splits {
			if s == nil || s.Weight < 0 || s.Weight > 100 {
				return nil, fmt.Errorf("connect: discovery chain of %q: splitter %q has a bad split", c.ServiceName, id)
			}
			arms, err := chainArms(c, s.NextNode, share*float64(s.Weight)/100, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, arms...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("connect: discovery chain of %q: node %q of type %q where a splitter or resolver belongs", c.ServiceName, id, n.Type)
}

// chainDest is the destination of a target: its service and subset. Targets in another
// datacenter or namespace, and external ones, are not supported.
func chainDest(c *api.CompiledDiscoveryChain, id string) (route.Destination, error) {
	t := c.Targets[id]
	if t == nil {
		return route.Destination{}, fmt.Errorf("connect: discovery chain of %q: no target %q", c.ServiceName, id)
	}
	if (t.Datacenter != "" && t.Datacenter != c.Datacenter) || !defaultTenancy(t.Namespace) || t.External {
		return route.Destination{}, fmt.Errorf("connect: discovery chain of %q: target %q is in another datacenter or namespace, or external: not supported", c.ServiceName, id)
	}
	sub, err := ParseSubsetFilter(t.Subset.Filter)
	if err != nil {
		return route.Destination{}, fmt.Errorf("connect: discovery chain of %q: target %q: %w", c.ServiceName, id, err)
	}
	return route.Destination{Service: t.Service, Subset: sub}, nil
}

// Subset filter terms ParseSubsetFilter understands.
var (
	metaTerm = regexp.MustCompile(`^Service\.Meta\.([A-Za-z0-9_-]+)\s*==\s*("(?:[^"\\]|\\.)*"|[A-Za-z0-9_.-]+)$`)
	tagIn    = regexp.MustCompile(`^("(?:[^"\\]|\\.)*")\s+in\s+Service\.Tags$`)
	tagHas   = regexp.MustCompile(`^Service\.Tags\s+contains\s+("(?:[^"\\]|\\.)*")$`)
)

// maxFilterLen bounds a subset filter.
const maxFilterLen = 1024

// ParseSubsetFilter translates a service-resolver subset filter into a route.Subset. It
// understands conjunctions ("and") of `Service.Meta.<key> == <value>`, `"<tag>" in
// Service.Tags` and `Service.Tags contains "<tag>"`, which select the mesh endpoints (whose
// sidecars carry their service's tags and metadata); any other expression is an error naming
// the term. An empty filter selects every endpoint.
func ParseSubsetFilter(filter string) (route.Subset, error) {
	var s route.Subset
	filter = strings.TrimSpace(filter)
	if filter == "" {
		return s, nil
	}
	if len(filter) > maxFilterLen {
		return s, fmt.Errorf("subset filter longer than %d bytes", maxFilterLen)
	}
	for _, term := range strings.Split(filter, " and ") {
		term = strings.TrimSpace(term)
		if m := metaTerm.FindStringSubmatch(term); m != nil {
			v, err := unquote(m[2])
			if err != nil {
				return s, fmt.Errorf("subset filter term %q: %w", term, err)
			}
			if s.Meta == nil {
				s.Meta = map[string]string{}
			}
			if old, ok := s.Meta[m[1]]; ok && old != v {
				return s, fmt.Errorf("subset filter term %q contradicts an earlier one", term)
			}
			s.Meta[m[1]] = v
			continue
		}
		m := tagIn.FindStringSubmatch(term)
		if m == nil {
			m = tagHas.FindStringSubmatch(term)
		}
		if m == nil {
			return s, fmt.Errorf("subset filter term %q is not supported (want Service.Meta.<key> == <value> or a tag in Service.Tags, joined by and)", term)
		}
		v, err := unquote(m[1])
		if err != nil {
			return s, fmt.Errorf("subset filter term %q: %w", term, err)
		}
		if !slices.Contains(s.Tags, v) {
			s.Tags = append(s.Tags, v)
		}
	}
	slices.SortFunc(s.Tags, cmp.Compare)
	return s, nil
}

func unquote(v string) (string, error) {
	if strings.HasPrefix(v, `"`) {
		return strconv.Unquote(v)
	}
	return v, nil
}
