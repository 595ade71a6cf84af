package route

import (
	"fmt"
	"math"
	"net/http"
	"net/textproto"
	"reflect"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
)

// Limits that keep a table cheap to match and safe to load.
const (
	maxRoutes     = 10000
	maxRegexBytes = 4096
	maxArms       = 64
)

// compiler validates a Config while compiling it; it keeps the first error.
type compiler struct {
	err  error
	lim  limits
	gate *delayGate // shared by the injectors of the table (and of the tables before it)

	checkService func(service string) error // WithServiceCheck's; nil: none
}

// limits are a Config's Limits with their defaults filled in.
type limits struct {
	maxDelay   time.Duration
	maxHeld    int64
	maxProgram int
}

// The ceilings of a document's limits.
const (
	ceilingFaultDelay       = 5 * time.Minute
	ceilingDelayedRequests  = 100_000
	ceilingRegexProgramSize = 10_000
)

func defaultLimits() limits {
	return limits{maxDelay: DefaultMaxFaultDelay, maxHeld: DefaultMaxDelayedRequests, maxProgram: DefaultMaxRegexProgramSize}
}

// newCompiler returns a compiler for a document with the limits l, or nil after recording
// the error when l is invalid.
func newCompiler(l Limits, gate *delayGate) *compiler {
	c := &compiler{lim: defaultLimits(), gate: gate}
	if c.gate == nil {
		c.gate = &delayGate{}
	}
	switch {
	case l.MaxFaultDelay < 0:
		c.fail("limits.maxFaultDelay", "must not be negative, got %v", l.MaxFaultDelay)
	case l.MaxDelayedRequests < 0:
		c.fail("limits.maxDelayedRequests", "must not be negative, got %d", l.MaxDelayedRequests)
	case l.MaxRegexProgramSize < 0:
		c.fail("limits.maxRegexProgramSize", "must not be negative, got %d", l.MaxRegexProgramSize)
	// A document may tighten its limits or loosen them up to a ceiling, never past it: the
	// limits protect the process from the document.
	case l.MaxFaultDelay.Std() > ceilingFaultDelay:
		c.fail("limits.maxFaultDelay", "must be at most %v, got %v", ceilingFaultDelay, l.MaxFaultDelay.Std())
	case l.MaxDelayedRequests > ceilingDelayedRequests:
		c.fail("limits.maxDelayedRequests", "must be at most %d, got %d", ceilingDelayedRequests, l.MaxDelayedRequests)
	case l.MaxRegexProgramSize > ceilingRegexProgramSize:
		c.fail("limits.maxRegexProgramSize", "must be at most %d, got %d", ceilingRegexProgramSize, l.MaxRegexProgramSize)
	}
	if l.MaxFaultDelay > 0 {
		c.lim.maxDelay = l.MaxFaultDelay.Std()
	}
	if l.MaxDelayedRequests > 0 {
		c.lim.maxHeld = int64(l.MaxDelayedRequests)
	}
	if l.MaxRegexProgramSize > 0 {
		c.lim.maxProgram = l.MaxRegexProgramSize
	}
	return c
}

func (c *compiler) fail(path string, format string, args ...any) bool {
	if c.err == nil {
		c.err = &ConfigError{Path: path, Err: fmt.Errorf(format, args...)}
	}
	return false
}

func compile(cfg Config, o *options, prev *Table) (*Table, error) {
	if o == nil {
		o = &options{}
	}
	var gate *delayGate
	if prev != nil {
		gate = prev.gate // requests held by the previous table's delays still count
	}
	c := newCompiler(cfg.Limits, gate)
	if c.err != nil {
		return nil, c.err
	}
	c.checkService = o.checkService
	t := &Table{trust: o.trust, cfg: cfg, byHost: map[string][]*Route{}, gate: c.gate}
	if len(cfg.Routes) > maxRoutes {
		c.fail("routes", "%d routes is over the limit of %d", len(cfg.Routes), maxRoutes)
		return nil, c.err
	}
	names := map[string]string{}
	for i := range cfg.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		r := c.route(cfg.Routes[i], path, path, o, prev)
		if r == nil {
			return nil, c.err
		}
		if other, dup := names[r.name]; dup {
			c.fail(path+".name", "%q is also the name of %s", r.name, other)
			return nil, c.err
		}
		names[r.name] = path
		r.index = i
		if r.fault != nil && !cfg.Routes[i].Fault.AllCallers && r.m.callerControlled() {
			// Untrusted callers get the route without its fault (see Table.Match).
			tw := *r
			tw.fault = nil
			r.untrusted = &tw
		}
		t.routes = append(t.routes, r)
	}
	if cfg.Default != nil {
		if !reflect.DeepEqual(cfg.Default.Match, Match{}) {
			c.fail("default.match", "the default route takes no match conditions")
			return nil, c.err
		}
		r := c.route(*cfg.Default, "default", "default", o, prev)
		if r == nil {
			return nil, c.err
		}
		r.index = -1
		t.def = r
	}
	// Index routes by exact host so that a request only walks the routes that can match it:
	// those naming its host (byHost), merged in order with those that can match any host
	// (anyHost). Each host of each route is visited once: linear in the document.
	for _, r := range t.routes {
		if len(r.m.suffixHosts) > 0 || !r.m.hasHostCondition() {
			t.anyHost = append(t.anyHost, r)
			continue
		}
		for _, h := range r.m.exactHosts {
			list := t.byHost[h]
			if n := len(list); n > 0 && list[n-1] == r {
				continue // the route names the host twice
			}
			t.byHost[h] = append(list, r)
		}
	}
	return t, nil
}

// route compiles the route rc at path, or records the first error and returns nil.
func (c *compiler) route(rc RouteConfig, path, defName string, o *options, prev *Table) *Route {
	r := &Route{name: rc.Name, timeout: rc.Timeout.Std(), attemptTimeout: rc.AttemptTimeout.Std(),
		noAttemptTimeout: rc.DisableAttemptTimeout, idleTimeout: rc.IdleTimeout.Std(), noIdleTimeout: rc.DisableIdleTimeout}
	if r.name == "" {
		r.name = defName
	}
	if !c.matcher(rc.Match, path+".match", &r.m) {
		return nil
	}
	if !c.routeTarget(rc, path, r, o, prev) {
		return nil
	}
	if rc.Sticky != nil {
		if r.sticky = c.stickyPolicy(rc.Sticky, path+".sticky", r); r.sticky == nil {
			return nil
		}
	}
	if !c.routeOverrides(rc, path, r) {
		return nil
	}
	if !c.routeActions(rc, path, r) {
		return nil
	}
	return r
}

// routeTarget compiles rc's destination, split or canary (at most one) into r.
func (c *compiler) routeTarget(rc RouteConfig, path string, r *Route, o *options, prev *Table) bool {
	set := 0
	if rc.Destination != nil {
		set++
		d := *rc.Destination
		if !c.destination(&d, path+".destination", true) {
			return false
		}
		r.dest = &d
	}
	if len(rc.Split) > 0 {
		set++
		if !c.split(rc.Split, path+".split", r) {
			return false
		}
	}
	if rc.Canary != nil {
		set++
		if !c.canary(rc.Canary, path+".canary", r, o, prev) {
			return false
		}
	}
	if set > 1 {
		c.fail(path, "set at most one of destination, split and canary")
		return false
	}
	return c.fallbackTarget(rc, path, r) // fallback.go
}

// stickyPolicy compiles s at p for r, whose split or canary must already be compiled.
func (c *compiler) stickyPolicy(s *Sticky, p string, r *Route) *sticky {
	if r.split == nil && r.canary == nil {
		c.fail(p, "needs a split or canary to stick to")
		return nil
	}
	if s.Header == "" && s.Cookie == "" && !s.Key {
		c.fail(p, "set key, header or cookie")
		return nil
	}
	if s.Header != "" && s.Cookie != "" {
		c.fail(p, "set header or cookie, not both")
		return nil
	}
	if s.Header != "" && !validHeaderName(s.Header) {
		c.fail(p+".header", "%q is not a valid header name", truncate(s.Header, 64))
		return nil
	}
	if s.Cookie != "" && !validToken(s.Cookie) {
		c.fail(p+".cookie", "%q is not a valid cookie name", truncate(s.Cookie, 64))
		return nil
	}
	st := &sticky{key: s.Key, cookie: s.Cookie}
	if s.Header != "" {
		st.canon = textproto.CanonicalMIMEHeaderKey(s.Header)
		st.lower = strings.ToLower(s.Header)
	}
	return st
}

// routeOverrides checks rc's timeouts and compiles its retry and hedge overrides into r.
func (c *compiler) routeOverrides(rc RouteConfig, path string, r *Route) bool {
	if rc.Timeout < 0 {
		c.fail(path+".timeout", "must not be negative, got %v", rc.Timeout)
		return false
	}
	if rc.AttemptTimeout < 0 {
		c.fail(path+".attemptTimeout", "must not be negative, got %v", rc.AttemptTimeout)
		return false
	}
	if rc.AttemptTimeout > 0 && rc.DisableAttemptTimeout {
		c.fail(path+".disableAttemptTimeout", "cannot be set with attemptTimeout")
		return false
	}
	if rc.IdleTimeout < 0 {
		c.fail(path+".idleTimeout", "must not be negative, got %v", rc.IdleTimeout)
		return false
	}
	if rc.IdleTimeout > 0 && rc.DisableIdleTimeout {
		c.fail(path+".disableIdleTimeout", "cannot be set with idleTimeout")
		return false
	}
	if rc.Retry != nil {
		if r.retry = c.retryOverride(*rc.Retry, path+".retry"); r.retry == nil {
			return false
		}
	}
	if rc.Hedge != nil {
		if r.hedge = c.hedgeOverride(*rc.Hedge, path+".hedge"); r.hedge == nil {
			return false
		}
	}
	return c.hashPolicy(rc.HashPolicy, path+".hashPolicy", r)
}

// hashPolicy checks the hash policies hp at p and gives r a copy of them.
func (c *compiler) hashPolicy(hp []balancer.HashPolicy, p string, r *Route) bool {
	if len(hp) > balancer.MaxHashPolicies {
		return c.fail(p, "%d policies is over the limit of %d", len(hp), balancer.MaxHashPolicies)
	}
	for i, h := range hp {
		if err := h.Validate(); err != nil {
			return c.fail(fmt.Sprintf("%s[%d]", p, i), "%v", err)
		}
	}
	r.hashPolicy = slices.Clone(hp)
	return true
}

// retryOverride checks the retry override rp at p and returns a copy that owns its statuses.
func (c *compiler) retryOverride(rp RetryOverride, p string) *RetryOverride {
	rp.Statuses = append([]int(nil), rp.Statuses...)
	switch {
	case rp.MaxRetries < 0:
		c.fail(p+".maxRetries", "must not be negative, got %d", rp.MaxRetries)
	case rp.BackoffBase < 0:
		c.fail(p+".backoffBase", "must not be negative, got %v", rp.BackoffBase)
	case rp.BackoffMax < 0:
		c.fail(p+".backoffMax", "must not be negative, got %v", rp.BackoffMax)
	case rp.BackoffMax != 0 && rp.BackoffBase > rp.BackoffMax:
		c.fail(p+".backoffBase", "%v is above backoffMax %v", rp.BackoffBase, rp.BackoffMax)
	}
	for i, s := range rp.Statuses {
		if s < 100 || s > 599 {
			c.fail(fmt.Sprintf("%s.statuses[%d]", p, i), "%d is not an HTTP status", s)
		}
	}
	if c.err != nil {
		return nil
	}
	return &rp
}

// hedgeOverride checks the hedge override hp at p and returns it with maxHedges defaulted.
func (c *compiler) hedgeOverride(hp HedgeOverride, p string) *HedgeOverride {
	switch {
	case hp.MaxHedges < 0:
		c.fail(p+".maxHedges", "must not be negative, got %d", hp.MaxHedges)
	case hp.Delay < 0:
		c.fail(p+".delay", "must not be negative, got %v", hp.Delay)
	case !hp.Disable && hp.Delay == 0:
		c.fail(p+".delay", "is required unless disable is set")
	}
	if c.err != nil {
		return nil
	}
	if hp.MaxHedges == 0 {
		hp.MaxHedges = 1
	}
	return &hp
}

// routeActions compiles rc's header rewrites, path rewrite, shadow and fault into r.
func (c *compiler) routeActions(rc RouteConfig, path string, r *Route) bool {
	var ok bool
	if r.reqHeaders, ok = c.headerRewrite(rc.RequestHeaders, path+".requestHeaders"); !ok {
		return false
	}
	if r.respHeaders, ok = c.headerRewrite(rc.ResponseHeaders, path+".responseHeaders"); !ok {
		return false
	}
	if rc.Edge != nil && !c.edge(rc.Edge, path+".edge", r) {
		return false
	}
	if rc.Rewrite != nil {
		if !c.rewrite(rc.Rewrite, rc.Match, path+".rewrite", r) {
			return false
		}
	}
	if rc.Shadow != nil {
		if r.shadow = c.shadow(rc.Shadow, path+".shadow", r.name); r.shadow == nil {
			return false
		}
	}
	if rc.Fault != nil {
		if r.fault = c.fault(rc.Fault, path+".fault"); r.fault == nil {
			return false
		}
	}
	return true
}

func (c *compiler) matcher(m Match, path string, out *matcher) bool {
	for i, h := range m.Hosts {
		p := fmt.Sprintf("%s.hosts[%d]", path, i)
		h = strings.ToLower(h)
		if strings.HasPrefix(h, "*.") {
			if discovery.ValidateHost(h[2:]) != nil {
				return c.fail(p, "%q is not a valid wildcard host", truncate(h, 64))
			}
			out.suffixHosts = append(out.suffixHosts, h[1:])
			continue
		}
		if discovery.ValidateHost(h) != nil {
			return c.fail(p, "%q is not a valid host name", truncate(h, 64))
		}
		out.exactHosts = append(out.exactHosts, h)
	}
	if len(out.exactHosts) > 16 {
		out.hostSet = make(map[string]struct{}, len(out.exactHosts))
		for _, h := range out.exactHosts {
			out.hostSet[h] = struct{}{}
		}
	}
	if m.Path != nil {
		sm, ok := c.strMatcher(*m.Path, path+".path")
		if !ok {
			return false
		}
		if sm.kind != kindRegex && !strings.HasPrefix(sm.s, "/") {
			return c.fail(path+".path", "must start with '/', got %q", truncate(sm.s, 64))
		}
		out.path = &sm
	}
	for i, meth := range m.Methods {
		if !validToken(meth) || strings.ToUpper(meth) != meth {
			return c.fail(fmt.Sprintf("%s.methods[%d]", path, i), "%q is not an upper-case HTTP method", truncate(meth, 32))
		}
		out.methods = append(out.methods, meth)
	}
	for i, hm := range m.Headers {
		vm, ok := c.valueMatcher(hm, fmt.Sprintf("%s.headers[%d]", path, i), true)
		if !ok {
			return false
		}
		out.headers = append(out.headers, vm)
	}
	for i, qm := range m.Query {
		vm, ok := c.valueMatcher(HeaderMatch(qm), fmt.Sprintf("%s.query[%d]", path, i), false)
		if !ok {
			return false
		}
		out.query = append(out.query, vm)
	}
	if g := m.GRPC; g != nil {
		p := path + ".grpc"
		if g.Service == "" {
			return c.fail(p+".service", "is required")
		}
		if strings.ContainsAny(g.Service, "/ \t") {
			return c.fail(p+".service", "%q is not a fully qualified service name", truncate(g.Service, 64))
		}
		if strings.ContainsAny(g.Method, "/ \t") {
			return c.fail(p+".method", "%q is not a method name", truncate(g.Method, 64))
		}
		if g.Method == "" {
			out.grpc = &strMatcher{kind: kindPrefix, s: "/" + g.Service + "/"}
		} else {
			out.grpc = &strMatcher{kind: kindExact, s: "/" + g.Service + "/" + g.Method}
		}
	}
	return true
}

func (c *compiler) strMatcher(sm StringMatch, path string) (strMatcher, bool) {
	n := 0
	var out strMatcher
	if sm.Exact != "" {
		n++
		out = strMatcher{kind: kindExact, s: sm.Exact}
	}
	if sm.Prefix != "" {
		n++
		out = strMatcher{kind: kindPrefix, s: sm.Prefix}
	}
	if sm.Regex != "" {
		n++
		re, ok := c.regex(sm.Regex, path+".regex", true)
		if !ok {
			return out, false
		}
		out = strMatcher{kind: kindRegex, re: re}
	}
	if n != 1 {
		return out, c.fail(path, "set exactly one of exact, prefix and regex")
	}
	return out, true
}

func (c *compiler) regex(expr, path string, anchor bool) (*regexp.Regexp, bool) {
	if len(expr) > maxRegexBytes {
		return nil, c.fail(path, "expression of %d bytes is over the limit of %d", len(expr), maxRegexBytes)
	}
	src := expr
	if anchor {
		src = "^(?:" + expr + ")$"
	}
	// Bound what matching costs by the compiled program, not the source ("x{1000}" is seven
	// bytes), and measure it before regexp builds its matcher, which costs far more.
	if n := programSize(src, c.lim.maxProgram); n > c.lim.maxProgram && n != math.MaxInt {
		if n > max(4*c.lim.maxProgram+64, 1<<14) { // estimated, not measured
			return nil, c.fail(path, "compiled program of more than %d instructions is over limits.maxRegexProgramSize (%d)", n-1, c.lim.maxProgram)
		}
		return nil, c.fail(path, "compiled program of %d instructions is over limits.maxRegexProgramSize (%d)", n, c.lim.maxProgram)
	}
	re, err := regexp.Compile(src)
	if err != nil {
		// Report the error against the user's expression, not the anchored one.
		if _, err2 := regexp.Compile(expr); err2 != nil {
			err = err2
		}
		return nil, c.fail(path, "%v", err)
	}
	return re, true
}

// programSize returns the number of instructions of expr's compiled program; expr must be
// valid.
func programSize(expr string, limit int) int {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return math.MaxInt
	}
	// Simplify expands counted repetitions ("x{1000}" into a thousand copies): estimate the
	// program from the parse tree first, without expanding (an overestimate, by at most
	// about 3x), so that an expression far over the limit is refused before it costs its
	// size in memory; one within reach is measured exactly.
	if bound := max(4*limit+64, 1<<14); estimateProgram(re, bound) > bound {
		return bound + 1 // "more than": see compiler.regex
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return math.MaxInt
	}
	return len(prog.Inst)
}

// estimateProgram returns an upper estimate of the instructions re compiles to, at least
// limit+1 when it is over limit (it stops counting there).
func estimateProgram(re *syntax.Regexp, limit int) int {
	capped := func(n int) int { return min(n, limit+1) }
	switch re.Op {
	case syntax.OpLiteral:
		return capped(len(re.Rune) + 1)
	case syntax.OpRepeat:
		sub := estimateProgram(re.Sub[0], limit)
		times := max(re.Max, re.Min, 1)
		if sub > 0 && times > (limit+1)/sub {
			return limit + 1
		}
		return capped(sub*times + times)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpCapture:
		return capped(estimateProgram(re.Sub[0], limit) + 2)
	case syntax.OpConcat, syntax.OpAlternate:
		n := 1
		for _, sub := range re.Sub {
			if n += estimateProgram(sub, limit) + 1; n > limit {
				return limit + 1
			}
		}
		return n
	}
	return 2
}

func (c *compiler) valueMatcher(hm HeaderMatch, path string, header bool) (valueMatcher, bool) {
	var vm valueMatcher
	if hm.Name == "" {
		return vm, c.fail(path+".name", "is required")
	}
	if header && !validHeaderName(hm.Name) {
		return vm, c.fail(path+".name", "%q is not a valid header name", truncate(hm.Name, 64))
	}
	if header {
		vm.canon = textproto.CanonicalMIMEHeaderKey(hm.Name)
		vm.lower = strings.ToLower(hm.Name)
	} else {
		vm.canon, vm.lower = hm.Name, hm.Name
	}
	n := 0
	for _, set := range []bool{hm.Present, hm.Absent, hm.Exact != "", hm.Prefix != "", hm.Regex != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return vm, c.fail(path, "set exactly one of exact, prefix, regex, present and absent")
	}
	switch {
	case hm.Present:
		vm.kind = kindPresent
	case hm.Absent:
		vm.kind = kindAbsent
	default:
		sm, ok := c.strMatcher(StringMatch{Exact: hm.Exact, Prefix: hm.Prefix, Regex: hm.Regex}, path)
		if !ok {
			return vm, false
		}
		vm.strMatcher = sm
	}
	return vm, true
}

func (c *compiler) destination(d *Destination, path string, required bool) bool {
	if d.Service == "" {
		if required {
			return c.fail(path+".service", "is required")
		}
	} else if err := validService(d.Service); err != nil {
		return c.fail(path+".service", "%v", err)
	} else if c.checkService != nil {
		if err := c.checkService(d.Service); err != nil {
			return c.fail(path+".service", "%w", err) // errors.Is finds the check's error
		}
	}
	for i, tag := range d.Subset.Tags {
		if tag == "" {
			return c.fail(fmt.Sprintf("%s.subset.tags[%d]", path, i), "must not be empty")
		}
	}
	for k := range d.Subset.Meta {
		if k == "" {
			return c.fail(path+".subset.meta", "keys must not be empty")
		}
	}
	d.Subset.Tags = append([]string(nil), d.Subset.Tags...)
	if d.Subset.Meta != nil {
		m := make(map[string]string, len(d.Subset.Meta))
		for k, v := range d.Subset.Meta {
			m[k] = v
		}
		d.Subset.Meta = m
	}
	d.key = d.Service
	if sk := d.Subset.Key(); sk != "" {
		d.key += "|" + sk
	}
	return true
}

// validService accepts a host name or IP, optionally with a port.
func validService(s string) error {
	h := s
	if strings.Contains(s, ":") {
		host, port, ok := strings.Cut(s, ":")
		if strings.HasPrefix(s, "[") || strings.Count(s, ":") > 1 {
			i := strings.LastIndex(s, "]:")
			if !strings.HasPrefix(s, "[") || i < 0 {
				return fmt.Errorf("%q is not a service name or host:port", truncate(s, 64))
			}
			host, port, ok = s[1:i], s[i+2:], true
		}
		if !ok || port == "" || strings.Trim(port, "0123456789") != "" || len(port) > 5 {
			return fmt.Errorf("%q has a bad port", truncate(s, 64))
		}
		h = host
	}
	if err := discovery.ValidateHost(h); err != nil {
		return fmt.Errorf("%q is not a service name", truncate(s, 64))
	}
	return nil
}

func (c *compiler) split(arms []WeightedDestination, path string, r *Route) bool {
	if len(arms) > maxArms {
		return c.fail(path, "%d arms is over the limit of %d", len(arms), maxArms)
	}
	sp := &split{}
	for i, a := range arms {
		p := fmt.Sprintf("%s[%d]", path, i)
		d := a.Destination
		if !c.destination(&d, p, true) {
			return false
		}
		sp.total += uint64(a.Weight) // 0: the arm gets nothing
		sp.dests = append(sp.dests, d)
		sp.cum = append(sp.cum, sp.total)
	}
	if sp.total == 0 {
		return c.fail(path, "every arm's weight is 0: give at least one a positive weight")
	}
	r.split = sp
	return true
}

func validPercent(p float64) bool { return !math.IsNaN(p) && p >= 0 && p <= 100 }

// basisPoints converts a percentage to hundredths of a percent.
func basisPoints(p float64) uint32 { return uint32(math.Round(p * 100)) }

// ppm converts a percentage, where 0 means 100, to parts per million.
func ppm(p float64) uint32 {
	if p == 0 {
		return 1_000_000
	}
	return uint32(math.Round(p * 10_000))
}

func (c *compiler) canary(cn *Canary, path string, r *Route, o *options, prev *Table) bool {
	cc := &canary{stable: cn.Stable, canary: cn.Canary}
	if !c.destination(&cc.stable, path+".stable", true) || !c.destination(&cc.canary, path+".canary", true) {
		return false
	}
	if !validPercent(cn.Weight) {
		return c.fail(path+".weight", "must be a percentage from 0 to 100, got %v", cn.Weight)
	}
	cc.bp = basisPoints(cn.Weight)
	if ov := cn.Override; ov != nil {
		p := path + ".override"
		if ov.Header == "" && ov.Cookie == "" {
			return c.fail(p, "set header, cookie or both")
		}
		if ov.Header != "" && !validHeaderName(ov.Header) {
			return c.fail(p+".header", "%q is not a valid header name", truncate(ov.Header, 64))
		}
		if ov.Cookie != "" && !validToken(ov.Cookie) {
			return c.fail(p+".cookie", "%q is not a valid cookie name", truncate(ov.Cookie, 64))
		}
		o2 := &override{cookie: ov.Cookie, canaryValue: ov.CanaryValue, stableValue: ov.StableValue}
		if ov.Header != "" {
			o2.canon = textproto.CanonicalMIMEHeaderKey(ov.Header)
			o2.lower = strings.ToLower(ov.Header)
		}
		if o2.canaryValue == "" {
			o2.canaryValue = "canary"
		}
		if o2.stableValue == "" {
			o2.stableValue = "stable"
		}
		if o2.canaryValue == o2.stableValue {
			return c.fail(p+".stableValue", "must differ from canaryValue")
		}
		cc.override = o2
	}
	if an := cn.Analysis; an != nil {
		a, ok := c.analysis(*an, path+".analysis")
		if !ok {
			return false
		}
		if a.MaxWeight < cn.Weight {
			return c.fail(path+".analysis.maxWeight", "%v is below the starting weight %v", a.MaxWeight, cn.Weight)
		}
		// Keep the running analyzer across a reload that leaves this canary as it was.
		if prev != nil {
			if old := prev.Route(r.name); old != nil && old.canary != nil && old.canary.analyzer != nil &&
				reflect.DeepEqual(old.canaryCfg, cn) {
				cc.analyzer = old.canary.analyzer
			}
		}
		if cc.analyzer == nil {
			cc.analyzer = newAnalyzer(r.name, a, cn.Weight, o.events)
		}
	}
	r.canary = cc
	cp := *cn
	r.canaryCfg = &cp
	return true
}

func (c *compiler) analysis(a Analysis, path string) (Analysis, bool) {
	switch {
	case a.Interval < 0:
		return a, c.fail(path+".interval", "must not be negative, got %v", a.Interval)
	case math.IsNaN(a.Step) || a.Step < 0 || a.Step > 100:
		return a, c.fail(path+".step", "must be a percentage from 0 to 100, got %v", a.Step)
	case !validPercent(a.MaxWeight):
		return a, c.fail(path+".maxWeight", "must be a percentage from 0 to 100, got %v", a.MaxWeight)
	case a.MinRequests < 0:
		return a, c.fail(path+".minRequests", "must not be negative, got %d", a.MinRequests)
	case !validPercent(a.MaxErrorRateIncrease):
		return a, c.fail(path+".maxErrorRateIncrease", "must be a percentage from 0 to 100, got %v", a.MaxErrorRateIncrease)
	case math.IsNaN(a.MaxLatencyRatio) || math.IsInf(a.MaxLatencyRatio, 0) || a.MaxLatencyRatio < 0 || (a.MaxLatencyRatio > 0 && a.MaxLatencyRatio < 1):
		return a, c.fail(path+".maxLatencyRatio", "must be at least 1, got %v", a.MaxLatencyRatio)
	case a.LatencySlack < 0:
		return a, c.fail(path+".latencySlack", "must not be negative, got %v", a.LatencySlack)
	}
	if a.Interval == 0 {
		a.Interval = Duration(time.Minute)
	}
	if a.Step == 0 {
		a.Step = 10
	}
	if a.MaxWeight == 0 {
		a.MaxWeight = 100
	}
	if a.MinRequests == 0 {
		a.MinRequests = 50
	}
	if a.MaxErrorRateIncrease == 0 {
		a.MaxErrorRateIncrease = 1
	}
	if a.MaxLatencyRatio == 0 {
		a.MaxLatencyRatio = 1.5
	}
	if a.LatencySlack == 0 {
		a.LatencySlack = Duration(5 * time.Millisecond)
	}
	return a, true
}

func (c *compiler) headerRewrite(hr HeaderRewrite, path string) (*headerOps, bool) {
	if len(hr.Set) == 0 && len(hr.Add) == 0 && len(hr.Remove) == 0 {
		return nil, true
	}
	ops := &headerOps{}
	for i, name := range hr.Remove {
		if !validHeaderName(name) {
			return nil, c.fail(fmt.Sprintf("%s.remove[%d]", path, i), "%q is not a valid header name", truncate(name, 64))
		}
		ops.remove = append(ops.remove, textproto.CanonicalMIMEHeaderKey(name))
	}
	for _, kv := range []struct {
		m    map[string]string
		dst  *[]headerKV
		name string
	}{{hr.Set, &ops.set, "set"}, {hr.Add, &ops.add, "add"}} {
		for _, k := range sortedKeys(kv.m) {
			v := kv.m[k]
			if !validHeaderName(k) {
				return nil, c.fail(path+"."+kv.name, "%q is not a valid header name", truncate(k, 64))
			}
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, c.fail(path+"."+kv.name+"."+k, "%q is not a valid header value (control characters are not allowed)", truncate(v, 64))
			}
			*kv.dst = append(*kv.dst, headerKV{textproto.CanonicalMIMEHeaderKey(k), v})
		}
	}
	return ops, true
}

func (c *compiler) rewrite(rw *Rewrite, m Match, path string, r *Route) bool {
	switch {
	case rw.Prefix != "" && rw.Regex != "":
		return c.fail(path, "set prefix or regex, not both")
	case rw.Prefix != "":
		if m.Path == nil || m.Path.Prefix == "" {
			return c.fail(path+".prefix", "needs match.path.prefix to replace")
		}
		if !strings.HasPrefix(rw.Prefix, "/") {
			return c.fail(path+".prefix", "must start with '/', got %q", truncate(rw.Prefix, 64))
		}
		r.rewrite = &pathRewrite{from: m.Path.Prefix, to: rw.Prefix}
	case rw.Regex != "":
		re, ok := c.regex(rw.Regex, path+".regex", false)
		if !ok {
			return false
		}
		r.rewrite = &pathRewrite{re: re, sub: rw.Substitution}
	default:
		return c.fail(path, "set prefix or regex")
	}
	if rw.Substitution != "" && rw.Regex == "" {
		return c.fail(path+".substitution", "needs regex")
	}
	return true
}

func (c *compiler) shadow(s *Shadow, path, routeName string) *ShadowPolicy {
	d := s.Destination
	if !c.destination(&d, path+".destination", true) {
		return nil
	}
	switch {
	case !validPercent(s.Percent):
		c.fail(path+".percent", "must be a percentage from 0 to 100, got %v", s.Percent)
	case s.MaxConcurrency < 0:
		c.fail(path+".maxConcurrency", "must not be negative, got %d", s.MaxConcurrency)
	case s.MaxBodyBytes < 0:
		c.fail(path+".maxBodyBytes", "must not be negative, got %d", s.MaxBodyBytes)
	case s.Timeout < 0:
		c.fail(path+".timeout", "must not be negative, got %v", s.Timeout)
	}
	if c.err != nil {
		return nil
	}
	p := &ShadowPolicy{
		route:          routeName,
		dest:           d,
		ppm:            ppm(s.Percent),
		nonIdempotent:  s.AllowNonIdempotent,
		maxConcurrency: int64(s.MaxConcurrency),
		maxBody:        s.MaxBodyBytes,
		timeout:        s.Timeout.Std(),
		compareBody:    s.CompareBody,
	}
	if p.maxConcurrency == 0 {
		p.maxConcurrency = 16
	}
	if p.maxBody == 0 {
		p.maxBody = 64 << 10
	}
	if p.timeout == 0 {
		p.timeout = 5 * time.Second
	}
	return p
}

// faultPPM converts a fault's percentage, where nil means 100, to parts per million.
func faultPPM(p *float64) uint32 {
	if p == nil {
		return 1_000_000
	}
	return uint32(math.Round(*p * 10_000))
}

// fault compiles the fault f at path into an Injector, or records the first error and returns nil.
func (c *compiler) fault(f *Fault, path string) *Injector {
	if f.Delay == nil && f.Abort == nil {
		c.fail(path, "set delay, abort or both")
		return nil
	}
	inj := &Injector{gate: c.gate, maxHeld: c.lim.maxHeld}
	if f.Delay != nil {
		if inj.delay = c.faultDelay(f.Delay, path+".delay"); inj.delay == nil {
			return nil
		}
	}
	if f.Abort != nil {
		if inj.abort = c.faultAbort(f.Abort, path+".abort"); inj.abort == nil {
			return nil
		}
	}
	return inj
}

// faultDelay compiles the delay fault d at p, capping an exponential delay's max at limits.maxFaultDelay.
func (c *compiler) faultDelay(d *DelayFault, p string) *delay {
	n := 0
	if d.Fixed != 0 {
		n++
	}
	if d.Mean != 0 {
		n++
	}
	if d.Mean == 0 && d.Max != 0 {
		n++
	}
	lim := Duration(c.lim.maxDelay)
	switch {
	case d.Percent != nil && !validPercent(*d.Percent):
		c.fail(p+".percent", "must be a percentage from 0 to 100, got %v", *d.Percent)
	case d.Fixed < 0:
		c.fail(p+".fixed", "must not be negative, got %v", d.Fixed)
	case d.Mean < 0:
		c.fail(p+".mean", "must not be negative, got %v", d.Mean)
	case d.Min < 0:
		c.fail(p+".min", "must not be negative, got %v", d.Min)
	case d.Max < 0:
		c.fail(p+".max", "must not be negative, got %v", d.Max)
	case n != 1:
		c.fail(p, "set exactly one of fixed, mean (exponential) and max (uniform from min)")
	case d.Fixed != 0 && (d.Min != 0 || d.Max != 0):
		c.fail(p+".fixed", "takes no min or max")
	case d.Mean == 0 && d.Max != 0 && d.Min > d.Max:
		c.fail(p+".min", "%v is above max %v", d.Min, d.Max)
	case d.Mean != 0 && d.Min != 0:
		c.fail(p+".min", "is for the uniform distribution; the exponential one starts at 0")
	case d.Mean != 0 && d.Max != 0 && d.Max < d.Mean:
		c.fail(p+".max", "%v is below mean %v", d.Max, d.Mean)
	case d.Fixed > lim:
		c.fail(p+".fixed", "%v is over limits.maxFaultDelay (%v)", d.Fixed, lim)
	case d.Mean > lim:
		c.fail(p+".mean", "%v is over limits.maxFaultDelay (%v)", d.Mean, lim)
	case d.Max > lim:
		c.fail(p+".max", "%v is over limits.maxFaultDelay (%v)", d.Max, lim)
	}
	if c.err != nil {
		return nil
	}
	dl := &delay{ppm: faultPPM(d.Percent), fixed: d.Fixed.Std(), mean: d.Mean.Std(), min: d.Min.Std(), max: d.Max.Std()}
	if dl.mean != 0 && dl.max == 0 {
		dl.max = 10 * dl.mean
		if dl.max > c.lim.maxDelay {
			dl.max = c.lim.maxDelay
		}
	}
	return dl
}

// faultAbort compiles the abort fault a at p, defaulting to HTTP 503 and gRPC code 14 (Unavailable).
func (c *compiler) faultAbort(a *AbortFault, p string) *abort {
	switch {
	case a.Percent != nil && !validPercent(*a.Percent):
		c.fail(p+".percent", "must be a percentage from 0 to 100, got %v", *a.Percent)
	case a.HTTPStatus != 0 && (a.HTTPStatus < 200 || a.HTTPStatus > 599):
		c.fail(p+".httpStatus", "%d is not an HTTP status from 200 to 599", a.HTTPStatus)
	case a.GRPCCode < 0 || a.GRPCCode > 16:
		c.fail(p+".grpcCode", "%d is not a gRPC code from 1 to 16", a.GRPCCode)
	}
	if c.err != nil {
		return nil
	}
	ab := &abort{ppm: faultPPM(a.Percent), status: a.HTTPStatus, code: a.GRPCCode}
	if ab.status == 0 {
		ab.status = http.StatusServiceUnavailable
	}
	if ab.code == 0 {
		ab.code = 14
	}
	ab.err = &AbortError{HTTPStatus: ab.status, GRPCCode: ab.code}
	return ab
}

// validToken reports whether s is an RFC 7230 token (header names, methods, cookie names).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0:
		default:
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool { return validToken(s) && httpguts.ValidHeaderFieldName(s) }
