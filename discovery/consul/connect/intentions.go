package connect

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"
)

// ruleSet is the compiled intentions that apply to one destination service. Immutable.
type ruleSet struct {
	defaultAllow bool
	rules        []rule // highest precedence first
	index        uint64
}

// rule is one source of a service-intentions entry.
type rule struct {
	source     string // a service name, or "*"
	anyNS      bool   // the source's namespace is "*": it matches callers of every namespace
	precedence int    // Consul's: 9 exact→exact ... 4 *→*
	dest       string // the entry's name, for decisions' reasons
	allow      bool   // the L4 action; unused when perms is set
	perms      []perm // L7 permissions, evaluated in order; the first that matches decides
	pathPerms  bool   // a permission looks at the path (a path matcher or a ":path" header)
}

// perm is one L7 permission.
type perm struct {
	allow      bool
	pathExact  string
	pathPrefix string
	pathRegex  *regexp.Regexp
	headers    []headerMatch
	methods    []string
}

type headerMatch struct {
	name       string // canonical; ":authority" and "host" mean the request's host, ":method" its method, ":path" its path
	present    bool
	exact      string
	prefix     string
	suffix     string
	contains   string
	re         *regexp.Regexp
	invert     bool
	ignoreCase bool
	kind       int // which of the above is set: kindPresent...
}

const (
	kindPresent = iota
	kindExact
	kindPrefix
	kindSuffix
	kindContains
	kindRegex
)

// Bounds on what the agent's answer may make this package compile.
const (
	maxRules    = 10000
	maxPerms    = 256
	maxRegexLen = 1024
)

// Request is what L7 permissions look at: the request's path (without the query; for gRPC,
// the full method name "/pkg.Service/Method"), method (gRPC: POST), host and headers. A
// header permission on ":path" sees, as in Envoy, the path with its query for the requests
// Handler authorizes, and Path for a Request made by its caller.
type Request struct {
	Method string
	Path   string
	Host   string
	Header http.Header

	// target is the request target as sent (escaped path and query), what a header
	// permission on ":path" sees, as Envoy's :path header; "" means Path.
	target string
	// ambiguous is set by Handler when the target's path holds an encoded slash or
	// backslash, or a backslash (ambiguousPath): refused when a permission looks at the path.
	ambiguous bool
}

// Decision is the result of authorizing a request.
type Decision struct {
	// Allowed says whether the request may proceed.
	Allowed bool
	// Reason says which intention decided ("web => api", "* => api"), or "default" when none
	// applied and the default policy did.
	Reason string
	// L7 is true when an intention's permissions decided (or none of them matched).
	L7 bool
	// Malformed is true when the request was refused because its path is ambiguous (an
	// encoded slash or backslash, or a backslash) while a permission looks at the path:
	// Handler answers it 400 Bad Request.
	Malformed bool
}

// compileEntries compiles the service-intentions entries whose destination is service or "*".
// Any malformed entry fails the whole answer, so that the last good set stays in use.
func compileEntries(entries []api.ConfigEntry, service string, defaultAllow bool) (*ruleSet, error) {
	rs := &ruleSet{defaultAllow: defaultAllow}
	for i, e := range entries {
		entry, ok := e.(*api.ServiceIntentionsConfigEntry)
		if !ok || entry == nil {
			return nil, fmt.Errorf("connect: intentions: entry %d is not a service-intentions entry", i)
		}
		if entry.Name != service && entry.Name != "*" || !defaultTenancy(entry.Namespace) || !defaultTenancy(entry.Partition) {
			continue
		}
		if entry.JWT != nil {
			return nil, fmt.Errorf("connect: intentions: entry %q: JWT requirements are not supported", entry.Name)
		}
		for j, src := range entry.Sources {
			r, use, err := compileSource(entry.Name, src)
			if err != nil {
				return nil, fmt.Errorf("connect: intentions: entry %q: Sources[%d]: %w", entry.Name, j, err)
			}
			if use {
				rs.rules = append(rs.rules, r)
			}
		}
		if len(rs.rules) > maxRules {
			return nil, fmt.Errorf("connect: intentions: more than %d sources apply to %q", maxRules, service)
		}
	}
	sort.SliceStable(rs.rules, func(i, j int) bool {
		a, b := rs.rules[i], rs.rules[j]
		if a.precedence != b.precedence {
			return a.precedence > b.precedence
		}
		if a.source != b.source {
			return a.source < b.source
		}
		return a.dest < b.dest
	})
	return rs, nil
}

func defaultTenancy(s string) bool { return s == "" || s == "default" }

// compileSource compiles one source. use is false for sources that can never match a caller
// of this cluster's default namespace (peers, other partitions or namespaces).
func compileSource(dest string, src *api.SourceIntention) (rule, bool, error) {
	if src == nil || src.Name == "" {
		return rule{}, false, errors.New("Name is empty")
	}
	if src.Peer != "" || src.SamenessGroup != "" || !defaultTenancy(src.Partition) ||
		!(defaultTenancy(src.Namespace) || src.Namespace == "*") ||
		(src.Type != "" && src.Type != api.IntentionSourceConsul) {
		return rule{}, false, nil
	}
	r := rule{source: src.Name, anyNS: src.Namespace == "*", dest: dest, precedence: precedence(dest, src.Namespace, src.Name)}
	if len(src.Permissions) == 0 {
		switch src.Action {
		case api.IntentionActionAllow:
			r.allow = true
		case api.IntentionActionDeny:
		default:
			return rule{}, false, fmt.Errorf("Action %q is neither allow nor deny", src.Action)
		}
		return r, true, nil
	}
	if src.Action != "" {
		return rule{}, false, errors.New("Action and Permissions are exclusive")
	}
	if len(src.Permissions) > maxPerms {
		return rule{}, false, fmt.Errorf("more than %d Permissions", maxPerms)
	}
	for k, p := range src.Permissions {
		cp, err := compilePerm(p)
		if err != nil {
			return rule{}, false, fmt.Errorf("Permissions[%d]: %w", k, err)
		}
		r.perms = append(r.perms, cp)
		r.pathPerms = r.pathPerms || cp.looksAtPath()
	}
	return r, true, nil
}

// precedence is Consul's intention precedence (agent/structs.Intention.UpdatePrecedence):
// 9 for an exact source to an exact destination, down to 4 for */* to *.
func precedence(dest, srcNS, srcName string) int {
	maxP := 9
	if dest == "*" {
		maxP = 6
	}
	exact := 2
	switch {
	case srcNS == "*":
		exact = 0
	case srcName == "*":
		exact = 1
	}
	return maxP - (2 - exact)
}

func compilePerm(p *api.IntentionPermission) (perm, error) {
	if p == nil {
		return perm{}, errors.New("empty permission")
	}
	var cp perm
	switch p.Action {
	case api.IntentionActionAllow:
		cp.allow = true
	case api.IntentionActionDeny:
	default:
		return perm{}, fmt.Errorf("Action %q is neither allow nor deny", p.Action)
	}
	if p.JWT != nil {
		return perm{}, errors.New("JWT requirements are not supported")
	}
	h := p.HTTP
	if h == nil {
		return cp, nil // matches every request
	}
	paths := 0
	for _, s := range []string{h.PathExact, h.PathPrefix, h.PathRegex} {
		if s != "" {
			paths++
		}
	}
	if paths > 1 {
		return perm{}, errors.New("HTTP: at most one of PathExact, PathPrefix and PathRegex")
	}
	cp.pathExact, cp.pathPrefix = h.PathExact, h.PathPrefix
	if h.PathRegex != "" {
		re, err := compileRegex(h.PathRegex)
		if err != nil {
			return perm{}, fmt.Errorf("HTTP.PathRegex: %w", err)
		}
		cp.pathRegex = re
	}
	for i, hm := range h.Header {
		m, err := compileHeader(hm)
		if err != nil {
			return perm{}, fmt.Errorf("HTTP.Header[%d]: %w", i, err)
		}
		cp.headers = append(cp.headers, m)
	}
	for i, m := range h.Methods {
		if m == "" {
			return perm{}, fmt.Errorf("HTTP.Methods[%d] is empty", i)
		}
		cp.methods = append(cp.methods, m)
	}
	return cp, nil
}

// compileRegex compiles an RE2 expression that must match the whole value, as Envoy's
// safe_regex does.
func compileRegex(s string) (*regexp.Regexp, error) {
	if len(s) > maxRegexLen {
		return nil, fmt.Errorf("longer than %d bytes", maxRegexLen)
	}
	if _, err := regexp.Compile(s); err != nil {
		return nil, err // checked alone, so that no ")|(" can break out of the anchors below
	}
	return regexp.Compile("^(?:" + s + ")$")
}

func compileHeader(h api.IntentionHTTPHeaderPermission) (headerMatch, error) {
	if h.Name == "" {
		return headerMatch{}, errors.New("Name is empty")
	}
	m := headerMatch{name: strings.ToLower(h.Name), present: h.Present, exact: h.Exact, prefix: h.Prefix,
		suffix: h.Suffix, contains: h.Contains, invert: h.Invert, ignoreCase: h.IgnoreCase}
	n := 0
	set := func(ok bool, kind int) {
		if ok {
			n++
			m.kind = kind
		}
	}
	set(h.Present, kindPresent)
	set(h.Exact != "", kindExact)
	set(h.Prefix != "", kindPrefix)
	set(h.Suffix != "", kindSuffix)
	set(h.Contains != "", kindContains)
	set(h.Regex != "", kindRegex)
	if n != 1 {
		return headerMatch{}, errors.New("exactly one of Present, Exact, Prefix, Suffix, Contains and Regex")
	}
	if h.Regex != "" {
		re, err := compileRegex(h.Regex)
		if err != nil {
			return headerMatch{}, fmt.Errorf("Regex: %w", err)
		}
		m.re = re
	}
	return m, nil
}

// match returns the highest-precedence rule whose source is source (or "*"), nil if none.
// source is a service of the default namespace.
func (rs *ruleSet) match(source string) *rule { return rs.matchNS("default", source) }

// matchNS is match for a caller of namespace ns: a caller of another namespace than the
// default one matches only the rules whose source namespace is "*", as Consul's RBAC matches
// the namespace of the caller's SPIFFE ID.
func (rs *ruleSet) matchNS(ns, source string) *rule {
	for i := range rs.rules {
		r := &rs.rules[i]
		if !r.anyNS && !defaultTenancy(ns) {
			continue
		}
		if r.source == "*" || r.source == source {
			return r
		}
	}
	return nil
}

// decide authorizes a request from source. req is asked for only when an L7 intention applies.
// Consul's semantics: the highest-precedence intention whose source matches decides; an
// intention with permissions decides by its first permission that matches the request, and
// by the default policy when none does.
func (rs *ruleSet) decide(source string, req func() *Request) Decision {
	return rs.decideFrom(Identity{Namespace: "default", Service: source}, req)
}

// decideFrom is decide for the verified identity of a caller, whose namespace counts.
func (rs *ruleSet) decideFrom(id Identity, req func() *Request) Decision {
	r := rs.matchNS(id.Namespace, id.Service)
	if r == nil {
		return Decision{Allowed: rs.defaultAllow, Reason: "default"}
	}
	reason := r.source + " => " + r.dest
	if len(r.perms) == 0 {
		return Decision{Allowed: r.allow, Reason: reason}
	}
	q := req()
	if q.ambiguous && r.pathPerms {
		return Decision{Reason: reason + " (ambiguous path: encoded slash or backslash)", L7: true, Malformed: true}
	}
	for i := range r.perms {
		if r.perms[i].matches(q) {
			return Decision{Allowed: r.perms[i].allow, Reason: reason, L7: true}
		}
	}
	return Decision{Allowed: rs.defaultAllow, Reason: reason + " (no permission matched: default)", L7: true}
}

// allowL4 is the decision Consul's /v1/connect/intentions/check gives: an intention with
// permissions counts as a deny, since no request is there to evaluate them.
func (rs *ruleSet) allowL4(source string) bool {
	r := rs.match(source)
	if r == nil {
		return rs.defaultAllow
	}
	return len(r.perms) == 0 && r.allow
}

// looksAtPath reports whether the permission matches on the path.
func (p *perm) looksAtPath() bool {
	if p.pathExact != "" || p.pathPrefix != "" || p.pathRegex != nil {
		return true
	}
	for i := range p.headers {
		if p.headers[i].name == ":path" {
			return true
		}
	}
	return false
}

func (p *perm) matches(q *Request) bool {
	switch {
	case p.pathExact != "" && q.Path != p.pathExact:
		return false
	case p.pathPrefix != "" && !strings.HasPrefix(q.Path, p.pathPrefix):
		return false
	case p.pathRegex != nil && !p.pathRegex.MatchString(q.Path):
		return false
	}
	for i := range p.headers {
		if !p.headers[i].matches(q) {
			return false
		}
	}
	if len(p.methods) == 0 {
		return true
	}
	for _, m := range p.methods {
		if m == q.Method {
			return true
		}
	}
	return false
}

// value returns the value of the header a matcher names, several values joined by "," as
// Envoy joins them.
func (h *headerMatch) value(q *Request) (string, bool) {
	switch h.name {
	case ":authority", "host":
		return q.Host, q.Host != ""
	case ":method":
		return q.Method, true
	case ":path":
		if q.target != "" {
			return q.target, true
		}
		return q.Path, true
	}
	vs := q.Header.Values(h.name)
	if len(vs) == 0 {
		return "", false
	}
	return strings.Join(vs, ","), true
}

func (h *headerMatch) matches(q *Request) bool {
	v, ok := h.value(q)
	if !ok {
		// An absent header matches only an inverted Present (as Envoy's HeaderUtility has it):
		// not "anything but prod" for an inverted Prefix "prod", say.
		return h.invert && h.kind == kindPresent
	}
	var m bool
	cmp := func(a, b string) (string, string) {
		if h.ignoreCase {
			return strings.ToLower(a), strings.ToLower(b)
		}
		return a, b
	}
	switch h.kind {
	case kindPresent:
		m = true
	case kindExact:
		a, b := cmp(v, h.exact)
		m = a == b
	case kindPrefix:
		a, b := cmp(v, h.prefix)
		m = strings.HasPrefix(a, b)
	case kindSuffix:
		a, b := cmp(v, h.suffix)
		m = strings.HasSuffix(a, b)
	case kindContains:
		a, b := cmp(v, h.contains)
		m = strings.Contains(a, b)
	case kindRegex:
		m = h.re.MatchString(v)
	}
	return m != h.invert
}
