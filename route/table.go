package route

import (
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/proxyless/proxyless/balancer"
)

// Option configures [Compile] and [NewRouter].
type Option interface {
	apply(*options)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	trust        func(*Request) bool
	events       func(Event)
	checkService func(string) error
}

func newOptions(opts []Option) *options {
	o := &options{}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(o)
		}
	}
	return o
}

// WithTrust sets the predicate that says whether a request's caller may steer the mesh with
// input it controls: pin itself to a canary side ([CanaryOverride]), or trigger a fault
// matched on a header, cookie, query parameter or host (see [Fault]). It is called only for
// requests that carry an override or match such a fault's route, so it may be moderately
// expensive. Default: no caller is trusted, so overrides are ignored and such faults are not
// injected. See [TrustPrefixes] and [TrustIdentities].
func WithTrust(trusted func(*Request) bool) Option {
	return optionFunc(func(o *options) { o.trust = trusted })
}

// WithEvents sets the callback that receives canary analysis events (steps, rollbacks,
// promotions). It is called without any lock held, on the goroutine that fed the outcome that
// triggered the event; it should return quickly. Default: events are dropped.
func WithEvents(fn func(Event)) Option {
	return optionFunc(func(o *options) { o.events = fn })
}

// WithServiceCheck sets a check that every service a table names (a destination, a split
// arm, a canary side, a shadow) must pass when the table compiles: NewRouter, every Update
// and Load (and so every reload), and Compile. A service it refuses makes the document a
// *[ConfigError] at that service's path, such as "routes[0].canary.canary.service", and a
// reload keeps the table in force. Pair it with the resolver the transport uses, for example
// a discovery.Static:
//
//	route.NewRouter(cfg, route.WithServiceCheck(discovery.CheckKnown(static)))
//
// Default: no check (middleware.NewTransport still checks the table it is given against a
// resolver that knows its services).
func WithServiceCheck(fn func(service string) error) Option {
	return optionFunc(func(o *options) { o.checkService = fn })
}

// Table is a compiled, immutable route table. Lookups are lock-free and do not allocate;
// a Table is safe for concurrent use. The zero value is not usable; build one with [Compile].
// Tables hold no goroutines and need no cleanup.
type Table struct {
	routes  []*Route            // immutable, in config order
	def     *Route              // immutable; nil when there is no default
	byHost  map[string][]*Route // immutable; exact host → the routes naming it (and no wildcard), in order
	anyHost []*Route            // immutable; routes that can match any host: no host condition, or a wildcard
	trust   func(*Request) bool // immutable
	cfg     Config              // immutable; the source document
	gate    *delayGate          // shared with the tables compiled from this one
}

// Compile validates cfg and builds its Table. Errors are *[ConfigError]s naming the field.
func Compile(cfg Config, opts ...Option) (*Table, error) {
	return compile(cfg, newOptions(opts), nil)
}

// Config returns the document the table was built from. The caller must not modify it.
func (t *Table) Config() Config { return t.cfg }

// Routes returns the table's routes in order (without the default). The caller must not
// modify the slice.
func (t *Table) Routes() []*Route { return t.routes }

// Route returns the route with the given name, or nil.
func (t *Table) Route(name string) *Route {
	for _, r := range t.routes {
		if r.name == name {
			return r
		}
	}
	if t.def != nil && t.def.name == name {
		return t.def
	}
	return nil
}

// Lookup matches r against the table and, on a match, decides where it goes: the first
// matching route (or the default) chooses its destination, split arm or canary side, and
// whether to mirror the request. It reports false when nothing matches (no default): the
// request is not routed. Lookup does not allocate.
func (t *Table) Lookup(r *Request) (Decision, bool) {
	rt := t.Match(r)
	if rt == nil {
		return Decision{}, false
	}
	return rt.decide(r, t.trust), true
}

// Match returns the route r matches (or the default), without making a decision. When the
// route's fault is matched on input the caller controls (see [Fault]) and the table's trust
// predicate does not admit r's caller, the route is returned without its fault: its Fault
// method returns nil, the rest is the same.
func (t *Table) Match(r *Request) *Route {
	host := hostOnly(r.Host)
	exact, all := t.candidates(host)
	if all {
		return t.matchIn(r, host, t.routes, nil)
	}
	return t.matchIn(r, host, exact, t.anyHost)
}

// matchIn returns the first route of a and b, merged in table order, that r matches (or the
// default). a and b are each in table order and share no route.
func (t *Table) matchIn(r *Request, host string, a, b []*Route) *Route {
	for len(a) > 0 || len(b) > 0 {
		var rt *Route
		if len(b) == 0 || (len(a) > 0 && a[0].index < b[0].index) {
			rt, a = a[0], a[1:]
		} else {
			rt, b = b[0], b[1:]
		}
		if rt.m.match(r, host) {
			if rt.untrusted != nil && !t.trusted(r) {
				return rt.untrusted
			}
			return rt
		}
	}
	return t.def
}

// trusted asks the trust predicate about r's caller.
func (t *Table) trusted(r *Request) bool { return trustedCopy(r, t.trust) }

// candidates returns the routes naming host exactly, to be merged with t.anyHost; all is true
// when every route must be walked instead (a host too long to lower-case on the stack).
func (t *Table) candidates(host string) (exact []*Route, all bool) {
	if !hasUpper(host) {
		return t.byHost[host], false
	}
	var buf [128]byte
	if len(host) > len(buf) {
		return nil, true
	}
	n := copy(buf[:], host)
	for i := range n {
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	return t.byHost[string(buf[:n])], false
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// Route is one compiled rule. It is immutable and safe for concurrent use; its accessors
// give the middleware what to apply to a request the route took.
type Route struct {
	name  string
	index int // position in Config.Routes; -1 for the default
	m     matcher

	dest      *Destination
	split     *split
	canary    *canary
	canaryCfg *Canary
	sticky    *sticky
	fallback  *Destination // the stable destination; nil without one (fallback.go)

	timeout, attemptTimeout time.Duration
	idleTimeout             time.Duration
	noAttemptTimeout        bool
	noIdleTimeout           bool
	retry                   *RetryOverride
	hedge                   *HedgeOverride
	hashPolicy              []balancer.HashPolicy
	reqHeaders, respHeaders *headerOps
	rewrite                 *pathRewrite
	shadow                  *ShadowPolicy
	fault                   *Injector
	untrusted               *Route // this route without its fault, for untrusted callers; nil when the fault is for all

	edge *EdgePolicy // nil when the route has no edge settings: edge.go
}

// Name returns the route's name.
func (r *Route) Name() string { return r.name }

// Index returns the route's position in Config.Routes, or -1 for the default route.
func (r *Route) Index() int { return r.index }

// Timeout returns the route's overall timeout, or 0 to keep the transport's.
func (r *Route) Timeout() time.Duration { return r.timeout }

// AttemptTimeout returns the route's per-attempt timeout, or 0 to keep the transport's.
func (r *Route) AttemptTimeout() time.Duration { return r.attemptTimeout }

// AttemptTimeoutDisabled reports whether the route turns the per-attempt timeout off.
func (r *Route) AttemptTimeoutDisabled() bool { return r.noAttemptTimeout }

// IdleTimeout returns the route's stream idle timeout, or 0 to keep the transport's.
func (r *Route) IdleTimeout() time.Duration { return r.idleTimeout }

// IdleTimeoutDisabled reports whether the route turns the stream idle timeout off.
func (r *Route) IdleTimeoutDisabled() bool { return r.noIdleTimeout }

// Retry returns the route's retry override, or nil to keep the transport's policy. The
// caller must not modify it.
func (r *Route) Retry() *RetryOverride { return r.retry }

// Hedge returns the route's hedging override, or nil to keep the transport's policy. The
// caller must not modify it.
func (r *Route) Hedge() *HedgeOverride { return r.hedge }

// HashPolicy returns the route's hash policies, which replace those of the destination's
// balancer for the requests the route takes, or nil to keep the destination's. The caller
// must not modify them.
func (r *Route) HashPolicy() []balancer.HashPolicy { return r.hashPolicy }

// Shadow returns the route's shadowing policy, or nil when it mirrors nothing.
func (r *Route) Shadow() *ShadowPolicy { return r.shadow }

// Fault returns the route's fault injector, or nil when it injects nothing.
func (r *Route) Fault() *Injector { return r.fault }

// Analyzer returns the route's canary analyzer, or nil when it has none.
func (r *Route) Analyzer() *Analyzer {
	if r.canary == nil {
		return nil
	}
	return r.canary.analyzer
}

// RewritesRequest reports whether [Route.RewriteRequest] changes anything, so that callers
// can skip cloning requests for routes that do not.
func (r *Route) RewritesRequest() bool { return r.reqHeaders != nil || r.rewrite != nil }

// RewriteRequest applies the route's request header changes and path rewrite to req in
// place. The caller must own req (a clone, for a RoundTripper).
func (r *Route) RewriteRequest(req *http.Request) {
	r.reqHeaders.apply(req.Header)
	if r.rewrite != nil && req.URL != nil {
		if p, ok := r.rewrite.apply(req.URL.Path); ok {
			req.URL.Path = p
			req.URL.RawPath = ""
		}
	}
}

// RewriteResponse applies the route's response header changes to h.
func (r *Route) RewriteResponse(h http.Header) { r.respHeaders.apply(h) }

// RewritePath returns the rewritten path and whether the route changed it.
func (r *Route) RewritePath(path string) (string, bool) {
	if r.rewrite == nil {
		return path, false
	}
	return r.rewrite.apply(path)
}

// Decision is the outcome of a [Table.Lookup]: the route and, for it, where this request goes.
// It is a small value; keep it for the request's life and call Done at the end.
type Decision struct {
	// Route is the route that matched. Never nil in a Decision Lookup returned true for.
	Route *Route
	// Destination is where to send the request; nil means the service named by the request's
	// own host. The caller must not modify it.
	Destination *Destination
	// Arm is the index of the chosen Split arm (for a Canary, 0 is stable and 1 canary), or
	// -1 when the route has neither.
	Arm int
	// Canary is true when the canary side was chosen.
	Canary bool
	// Pinned is true when a trusted caller's override chose the canary side.
	Pinned bool
	// Mirror is true when the request should be shadowed (see [Shadower]).
	Mirror bool
	// Fallback is where to send the attempts Destination cannot take (no endpoint, every
	// breaker open, or no endpoint left that the request did not use): the route's stable
	// destination (see [RouteConfig].Fallback). It is nil when the route has no fallback, when Destination is
	// the fallback already, and for a request a trusted caller pinned to a side. A request
	// sent there is reported with Done as a failure (Outcome.Failed) of the side first chosen.
	// The caller must not modify it.
	Fallback *Destination
}

// Outcome is what the caller learned from one routed request, for canary analysis.
type Outcome struct {
	// Latency of the request as the caller saw it.
	Latency time.Duration
	// Failed is true for a failure the canary should be blamed for (a 5xx, a transport error);
	// callers should not count their own cancellations.
	Failed bool
}

// Done feeds the request's outcome to the route's canary analysis, if it has any; otherwise
// it does nothing. It may call the [WithEvents] callback.
func (d Decision) Done(o Outcome) { d.DoneAt(o, time.Now()) }

// DoneAt is Done with the current time given.
func (d Decision) DoneAt(o Outcome, now time.Time) {
	if d.Route == nil || d.Route.canary == nil || d.Route.canary.analyzer == nil || d.Pinned {
		return
	}
	d.Route.canary.analyzer.Observe(d.Canary, o, now)
}

func (r *Route) decide(req *Request, trust func(*Request) bool) Decision {
	d := Decision{Route: r, Destination: r.dest, Arm: -1}
	switch {
	case r.split != nil:
		d.Arm = r.split.pick(r.point(req, trust))
		d.Destination = &r.split.dests[d.Arm]
	case r.canary != nil:
		c := r.canary
		side, pinned := c.pinned(req, trust)
		if !pinned {
			side = r.point(req, trust)%10_000 < uint64(c.weight())
		}
		d.Canary, d.Pinned = side, pinned
		if side {
			d.Arm, d.Destination = 1, &c.canary
		} else {
			d.Arm, d.Destination = 0, &c.stable
		}
	}
	d.Fallback = r.fallbackFor(&d)
	if s := r.shadow; s != nil {
		d.Mirror = (s.nonIdempotent || idempotent(req.Method)) && sampled(s.ppm)
	}
	return d
}

// point returns the request's position for a split choice: a hash of its sticky key, or a
// random number. A sticky key the caller writes (a header, a cookie) counts only when the
// trust predicate admits the caller: otherwise a caller could choose its arm (the canary,
// say) by choosing the value. Request.Key, which the application sets, always counts.
func (r *Route) point(req *Request, trust func(*Request) bool) uint64 {
	if s := r.sticky; s != nil {
		if k, callerSet := s.keyOf(req); k != "" && (!callerSet || trustedCopy(req, trust)) {
			return hashString(k)
		}
	}
	return rand.Uint64()
}

// trustedCopy asks trust (nil: nobody is trusted) about req's caller. The predicate is opaque
// to escape analysis: it gets a copy, so that the caller's Request stays on its stack.
func trustedCopy(req *Request, trust func(*Request) bool) bool {
	if trust == nil {
		return false
	}
	cp := *req
	return trust(&cp)
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete, "":
		return true
	}
	return false
}

// split is a compiled weighted split.
type split struct {
	dests []Destination
	cum   []uint64 // cumulative weights
	total uint64
}

func (s *split) pick(p uint64) int {
	p %= s.total
	for i, c := range s.cum {
		if p < c {
			return i
		}
	}
	return len(s.cum) - 1
}

// canary is a compiled Canary.
type canary struct {
	stable, canary Destination
	bp             uint32 // fixed weight in basis points, without an analyzer
	override       *override
	analyzer       *Analyzer
}

func (c *canary) weight() uint32 {
	if c.analyzer != nil {
		return c.analyzer.bp.Load()
	}
	return c.bp
}

type override struct {
	canon, lower             string // header; empty when none
	cookie                   string
	canaryValue, stableValue string
}

// pinned returns the side a trusted override asks for.
func (c *canary) pinned(req *Request, trust func(*Request) bool) (canarySide, ok bool) {
	o := c.override
	if o == nil {
		return false, false
	}
	v, found := "", false
	if o.canon != "" {
		if vals := req.headerValues(o.canon, o.lower); len(vals) > 0 {
			v, found = vals[0], true
		}
	}
	if !found && o.cookie != "" {
		v, found = req.cookie(o.cookie)
	}
	if !found || (v != o.canaryValue && v != o.stableValue) {
		return false, false
	}
	if !trustedCopy(req, trust) { // only requests that carry an override pay for the copy
		return false, false
	}
	return v == o.canaryValue, true
}

type sticky struct {
	key          bool
	canon, lower string
	cookie       string
}

// keyOf returns r's sticky key, and whether the caller wrote it (a header or a cookie) rather
// than the application (Request.Key).
func (s *sticky) keyOf(r *Request) (string, bool) {
	if s.key && r.Key != "" {
		return r.Key, false
	}
	if s.canon != "" {
		if vals := r.headerValues(s.canon, s.lower); len(vals) > 0 && vals[0] != "" {
			return vals[0], true
		}
	}
	if s.cookie != "" {
		if v, ok := r.cookie(s.cookie); ok {
			return v, true
		}
	}
	return "", false
}

// hashString is 64-bit FNV-1a followed by a finalizer, so that nearby keys spread evenly.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	// splitmix64 finalizer
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

type headerKV struct{ k, v string }

type headerOps struct {
	remove   []string
	set, add []headerKV
}

func (o *headerOps) apply(h http.Header) {
	if o == nil || h == nil {
		return
	}
	for _, k := range o.remove {
		delete(h, k)
	}
	for _, kv := range o.set {
		h[kv.k] = []string{kv.v}
	}
	for _, kv := range o.add {
		h[kv.k] = append(h[kv.k], kv.v)
	}
}

type pathRewrite struct {
	from, to string // prefix rewrite
	re       *regexp.Regexp
	sub      string
}

func (p *pathRewrite) apply(path string) (string, bool) {
	if p.re != nil {
		out := p.re.ReplaceAllString(path, p.sub)
		return out, out != path
	}
	if !strings.HasPrefix(path, p.from) {
		return path, false
	}
	rest := path[len(p.from):]
	// Avoid "//" when both the replacement ends and the rest starts with '/'.
	if strings.HasSuffix(p.to, "/") && strings.HasPrefix(rest, "/") {
		rest = rest[1:]
	}
	return p.to + rest, true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
