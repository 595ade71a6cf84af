package route

import (
	"strconv"
	"strings"
	"unicode"
)

// This file holds read-only accessors for status pages and metrics: they describe a compiled
// table as it stands and change nothing. None of them is meant for the request path.

// Current returns the current table together with its version (see [Router.Version]). Unlike
// calling Table and Version one after the other, the pair is consistent even while an Update
// runs; it waits for an Update in progress to finish.
func (r *Router) Current() (*Table, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.Load(), r.version.Load()
}

// Default returns the table's default route, which takes the requests no route matches, or
// nil when the table has none.
func (t *Table) Default() *Route { return t.def }

// Destination returns where the route sends every request it takes, or nil when it splits,
// runs a canary, or leaves each request on the service named by its own host. The caller must
// not modify it.
func (r *Route) Destination() *Destination { return r.dest }

// Split returns the arms of the route's weighted split in order, each with its relative
// weight as configured (0: the arm gets nothing), or nil when the route has no split. The
// slice is new; the subsets in it are shared with the table and must not be modified.
func (r *Route) Split() []WeightedDestination {
	if r.split == nil {
		return nil
	}
	out := make([]WeightedDestination, len(r.split.dests))
	var prev uint64
	for i, d := range r.split.dests {
		out[i] = WeightedDestination{Destination: d, Weight: uint32(r.split.cum[i] - prev)}
		prev = r.split.cum[i]
	}
	return out
}

// CanaryStatus is a route's canary as it stands, from [Route.Canary].
type CanaryStatus struct {
	// Stable receives the requests the canary does not.
	Stable Destination
	// Canary is the new version.
	Canary Destination
	// Weight is the percentage of requests sent to the canary now: the weight the analysis
	// has reached when the canary has analysis, the configured weight otherwise. Requests a
	// trusted caller pins to a side do not count against it.
	Weight float64
	// Analyzed is true when the canary has automated analysis; Analysis is meaningful only
	// then.
	Analyzed bool
	// Analysis is where the analysis is: running, promoted or rolled back.
	Analysis AnalysisState
}

// Canary returns the route's canary with the weight in force now, or ok false when the route
// has no canary. The subsets in it are shared with the table and must not be modified.
func (r *Route) Canary() (cs CanaryStatus, ok bool) {
	c := r.canary
	if c == nil {
		return CanaryStatus{}, false
	}
	cs = CanaryStatus{Stable: c.stable, Canary: c.canary, Weight: float64(c.weight()) / 100}
	if c.analyzer != nil {
		cs.Analyzed, cs.Analysis = true, c.analyzer.State()
	}
	return cs, true
}

// MatchString returns the route's match conditions in a short readable form, one
// space-separated term per condition, for status pages:
//
//	host=api,*.example.com path^=/v1/ method=GET,HEAD header:X-Env=canary !header:X-Debug grpc=/pkg.Svc/*
//
// Operators: "=" exact, "^=" prefix, "~" regular expression (as configured, without the
// anchoring the table adds); a header or query term without an operator requires presence,
// and a leading "!" absence. A value with spaces, quotes or control characters is quoted. A
// route that matches every request (the default route, say) gives "*". The value of a
// credential-like header or query condition (Authorization, Cookie, Proxy-Authorization, or
// a name ending in "key", "token" or "secret", in any case) is shown as "[redacted]", so that
// a status page does not publish an API key a route matches on. The form is for people, not
// for parsing back.
func (r *Route) MatchString() string {
	m := &r.m
	var terms []string
	if m.hasHostCondition() {
		hosts := append([]string(nil), m.exactHosts...)
		for _, s := range m.suffixHosts {
			hosts = append(hosts, "*"+s)
		}
		terms = append(terms, "host="+quoteIfNeeded(strings.Join(hosts, ",")))
	}
	if m.path != nil {
		terms = append(terms, "path"+m.path.describe())
	}
	if len(m.methods) > 0 {
		terms = append(terms, "method="+strings.Join(m.methods, ","))
	}
	for i := range m.headers {
		terms = append(terms, m.headers[i].describe("header:"))
	}
	for i := range m.query {
		terms = append(terms, m.query[i].describe("query:"))
	}
	if g := m.grpc; g != nil {
		if g.kind == kindPrefix {
			terms = append(terms, "grpc="+quoteIfNeeded(g.s+"*"))
		} else {
			terms = append(terms, "grpc="+quoteIfNeeded(g.s))
		}
	}
	if len(terms) == 0 {
		return "*"
	}
	return strings.Join(terms, " ")
}

// describe returns the operator and value of a string condition: "=v", "^=v" or "~expr".
func (m *strMatcher) describe() string {
	switch m.kind {
	case kindExact:
		return "=" + quoteIfNeeded(m.s)
	case kindPrefix:
		return "^=" + quoteIfNeeded(m.s)
	case kindRegex:
		// Compile anchored the user's expression as ^(?:expr)$.
		expr := strings.TrimSuffix(strings.TrimPrefix(m.re.String(), "^(?:"), ")$")
		return "~" + quoteIfNeeded(expr)
	}
	return ""
}

// describe returns a header or query term, such as "header:X-Env=canary".
func (m *valueMatcher) describe(kind string) string {
	name := kind + quoteIfNeeded(m.canon)
	switch m.kind {
	case kindPresent:
		return name
	case kindAbsent:
		return "!" + name
	}
	if credentialLike(m.canon) {
		switch m.kind {
		case kindExact:
			return name + "=" + Redacted
		case kindPrefix:
			return name + "^=" + Redacted
		default:
			return name + "~" + Redacted
		}
	}
	return name + m.strMatcher.describe()
}

// Redacted stands for a credential-like value in [Route.MatchString].
const Redacted = "[redacted]"

// credentialWords are the parts of a header or query parameter name that usually mean it
// carries a secret.
var credentialWords = []string{"auth", "cookie", "key", "token", "secret", "pass", "pwd", "sig", "jwt", "session", "credential", "bearer"}

// credentialLike reports whether a header or query parameter name usually carries a secret:
// it contains one of credentialWords, whatever its case and surrounding spaces. Erring
// towards redaction costs a status page reader a value; the other way costs a credential.
func credentialLike(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, w := range credentialWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// quoteIfNeeded quotes s (Go syntax) when it is empty or holds spaces, quotes, backslashes or
// characters that do not print, so that every term stays one readable word.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r == '"' || r == '\\' || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) {
		return strconv.Quote(s)
	}
	return s
}

// Percent returns the percentage of matched requests the policy mirrors (before the
// idempotency and concurrency limits), from 0 to 100.
func (p *ShadowPolicy) Percent() float64 { return float64(p.ppm) / 10_000 }

// Config returns the faults the injector applies, as a [Fault] with its defaults filled in:
// percentages (100 for an absent one), the abort's HTTP status and gRPC code, and the cap of
// an exponential delay. A nil *Injector gives the zero Fault. The result is a new value.
func (f *Injector) Config() Fault {
	var out Fault
	if f == nil {
		return out
	}
	if d := f.delay; d != nil {
		out.Delay = &DelayFault{Percent: Percent(float64(d.ppm) / 10_000), Fixed: Duration(d.fixed), Mean: Duration(d.mean),
			Min: Duration(d.min), Max: Duration(d.max)}
	}
	if a := f.abort; a != nil {
		out.Abort = &AbortFault{Percent: Percent(float64(a.ppm) / 10_000), HTTPStatus: a.status, GRPCCode: a.code}
	}
	return out
}
