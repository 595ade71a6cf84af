package middleware

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/route"
)

// DefaultAPIKeyHeader is the header ConsumerPolicy.Header defaults to.
const DefaultAPIKeyHeader = "X-API-Key"

// RateLimitPolicyHeader names the quota a RateLimit-* answer describes, as the IETF draft
// "RateLimit header fields for HTTP" writes it: `"gold";q=100;w=1` is the plan "gold", 100
// requests per 1 second.
const RateLimitPolicyHeader = "Ratelimit-Policy"

// dayWindow is the window of a plan's daily quota, in seconds.
const dayWindow = 86400

// ConsumerPolicy configures WithConsumers. The zero value of each field means its default.
type ConsumerPolicy struct {
	// Header is the request header that carries a consumer's API key. Default "X-API-Key".
	// Keys are never read from the query string, where they would end up in access logs.
	Header string
	// Router is the route table whose route names plans list (auth.Plan.Routes): a request
	// is matched against its current table, and the matched route's name must be one of the
	// plan's. Give the Router the gateway routes its requests with, so that the route checked
	// is the route taken; behind NewGateway the request is matched with the gateway's
	// service as its Host, as the request the gateway sends (GatewayConfig). Default nil: a consumer whose plan lists routes is refused (403),
	// and NewHandler refuses a registry that has such a plan when it starts.
	Router *route.Router
	// DailyLimiter returns the limiter of one plan's daily quota q (auth.Plan.PerDay as a
	// token bucket of PerDay requests refilled at PerDay per 86400 s), keyed by consumer
	// name. To share daily quotas among gateway instances, return a ratelimit/redis.Limiter
	// with q as its Default and a Prefix of the plan's own; its local fallback keeps the
	// gateway serving while Redis is away. It is called for each plan when WithConsumers is
	// given and again for a plan whose quotas change on a registry reload; if it fails on a
	// reload, the plan's daily quota is kept locally and the error logged (WithLogger).
	// Default nil: a local ratelimit.Keyed per plan, one quota per gateway instance.
	DailyLimiter func(plan string, q ratelimit.Quota) (ratelimit.Limiter, error)
	// ConsumerHeader, when set, is a request header the handler (and the upstream a gateway
	// proxies to) receives with the consumer's name. Whatever the caller sent in it (or in
	// its name spelled with '_' for '-') is removed first. Default "": none; the handler finds the consumer with
	// auth.ConsumerFromContext either way.
	ConsumerHeader string
	// KeepKey leaves the API key header on the request the handler receives. Default false:
	// the header is removed once the consumer is identified, so that a gateway does not
	// forward consumers' keys to internal services.
	KeepKey bool
}

// WithConsumers makes NewHandler serve only the consumers of reg, each within its plan
// (auth.Plan): the API gateway's side of authentication and rate limiting. It runs after
// token validation (WithJWT) and before the per-subject limits. For each request:
//
//  1. The consumer is identified by the API key in p.Header, or, when that header is
//     absent, by the subject of the verified token (auth.SubjectFromContext). A missing,
//     unknown or revoked key, or no credential at all, is answered 401 with
//     WWW-Authenticate (APIKey, and Bearer when WithJWT is given); a valid token whose
//     subject is no consumer, 403. No answer says why.
//  2. The plan's routes, if it lists any, must include the name of the route the request
//     matches in p.Router: 403 otherwise. A path with a "." or ".." segment (decoded, and
//     "..;" too) is refused 403 then, since the service may resolve it to another route.
//  3. The plan's quotas for this consumer: PerSecond and Burst in a local bucket per
//     consumer, PerDay in p.DailyLimiter's. Over either, 429 with Retry-After, the
//     RateLimit-Limit, -Remaining and -Reset headers of the quota that refused, a
//     RateLimit-Policy naming the plan (`"gold";q=100;w=1`, w=86400 for the daily quota)
//     and a JSON body {"error":"quota_exceeded","consumer":...,"plan":...,"window":"second"
//     or "day","retryAfter":seconds}. An admitted request carries the same headers for the
//     quota with the fewest requests left.
//  4. The handler runs with the consumer in the request context (auth.ConsumerFromContext)
//     and in p.ConsumerHeader if set; the API key header is removed unless p.KeepKey.
//
// Every refusal, and every quota decision, is counted in the metric
// proxyless.ratelimit.decisions under the policy "consumer.missing", "consumer.unknown",
// "consumer.revoked", "consumer.subject", "consumer.route", "consumer.second" or
// "consumer.day".
//
// reg may be reloaded while the server runs (route/reload.File or Consul with reg as the
// target): a revoked key is refused from the reload on, and only the plans whose quotas
// changed get new limiters (whose local buckets start full). Default: no consumers.
//
// Taken by NewHandler.
func WithConsumers(reg *auth.Consumers, p ConsumerPolicy) HandlerOption {
	return consumersOption(func(c *config) {
		s, err := newConsumerStage(reg, p)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithConsumers: %w", err))
			return
		}
		c.server.consumers = s
	})
}

// consumersOption is an option NewHandler alone takes.
type consumersOption func(*config)

func (f consumersOption) applyHandler(c *config) { f(c) }

// consumerStage is WithConsumers' state, shared by the handler's requests.
type consumerStage struct {
	reg       *auth.Consumers      // immutable
	pol       ConsumerPolicy       // immutable; Header as given
	keyHeader string               // immutable; Header, canonical
	tel       *telemetry.Telemetry // set by buildConsumers
	logger    *slog.Logger         // set by buildConsumers
	challenge []string             // immutable; the WWW-Authenticate values of a 401

	limits atomic.Pointer[planLimitSet]
	mu     sync.Mutex // serialises rebuilding limits
}

// planLimitSet is the limiters of every plan, as of a registry version. Immutable.
type planLimitSet struct {
	version uint64
	plans   map[string]*planLimits
}

// planLimits are the limiters of one plan. Immutable.
type planLimits struct {
	perSecond float64 // the settings they were built for
	burst     int
	perDay    int64
	quotas    []consumerQuota // per second, then per day; those the plan sets
}

// consumerQuota is one of a plan's limiters.
type consumerQuota struct {
	lim    ratelimit.Limiter // keyed by consumer name
	window string            // "second" or "day"
	policy string            // the RateLimit-Policy value
	metric string            // the telemetry policy
}

func newConsumerStage(reg *auth.Consumers, p ConsumerPolicy) (*consumerStage, error) {
	if reg == nil {
		return nil, errors.New("registry is nil")
	}
	p.Header = cmp.Or(p.Header, DefaultAPIKeyHeader)
	for _, h := range []struct{ field, name string }{{"Header", p.Header}, {"ConsumerHeader", p.ConsumerHeader}} {
		if h.name != "" && !httpguts.ValidHeaderFieldName(h.name) {
			return nil, fmt.Errorf("ConsumerPolicy.%s %q is not a header name", h.field, h.name)
		}
	}
	keyHeader := textproto.CanonicalMIMEHeaderKey(p.Header)
	if p.ConsumerHeader != "" {
		p.ConsumerHeader = textproto.CanonicalMIMEHeaderKey(p.ConsumerHeader)
		if p.ConsumerHeader == keyHeader {
			return nil, fmt.Errorf("ConsumerPolicy.ConsumerHeader is the API key header %q", p.Header)
		}
	}
	version, cfg := reg.Version(), reg.Config()
	if p.Router == nil {
		for _, name := range slices.Sorted(maps.Keys(cfg.Plans)) {
			if len(cfg.Plans[name].Routes) > 0 {
				return nil, fmt.Errorf("plan %q lists routes, and ConsumerPolicy.Router is nil", name)
			}
		}
	}
	s := &consumerStage{reg: reg, pol: p, keyHeader: keyHeader, logger: slog.New(slog.DiscardHandler)}
	set := &planLimitSet{version: version, plans: make(map[string]*planLimits, len(cfg.Plans))}
	for name, plan := range cfg.Plans {
		pl, err := s.newPlanLimits(name, plan, p.DailyLimiter)
		if err != nil {
			return nil, err
		}
		set.plans[name] = pl
	}
	s.limits.Store(set)
	return s, nil
}

// consumerMaxKeys bounds the local limiters of a plan. Their keys are the registry's consumer
// names, which the registry bounds, not the callers: the limiters must never forget a
// consumer (an LRU eviction past ratelimit.DefaultMaxKeys would hand it a full day again).
// Maps grow as keys come, so the bound costs nothing.
const consumerMaxKeys = 1 << 30

// newPlanLimits builds the limiters of a plan; daily makes its daily limiter (nil: local).
func (s *consumerStage) newPlanLimits(name string, p auth.Plan, daily func(string, ratelimit.Quota) (ratelimit.Limiter, error)) (*planLimits, error) {
	pl := &planLimits{perSecond: p.PerSecond, burst: p.Burst, perDay: p.PerDay}
	if p.PerSecond > 0 {
		lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: p.PerSecond, Burst: p.Burst}, MaxKeys: consumerMaxKeys})
		if err != nil {
			return nil, fmt.Errorf("plan %q per second: %w", name, err)
		}
		q, w := policyWindow(p.PerSecond)
		pl.quotas = append(pl.quotas, consumerQuota{lim: lim, window: "second", metric: "consumer.second",
			policy: strconv.Quote(name) + ";q=" + strconv.FormatInt(q, 10) + ";w=" + strconv.FormatInt(w, 10)})
	}
	if p.PerDay > 0 {
		q := ratelimit.Quota{Rate: float64(p.PerDay) / dayWindow, Burst: int(p.PerDay)}
		var lim ratelimit.Limiter
		var err error
		if daily != nil {
			lim, err = daily(name, q)
			if err == nil && lim == nil {
				err = errors.New("DailyLimiter returned a nil limiter")
			}
		} else {
			lim, err = ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: q, MaxKeys: consumerMaxKeys})
		}
		if err != nil {
			return nil, fmt.Errorf("plan %q daily limiter: %w", name, err)
		}
		pl.quotas = append(pl.quotas, consumerQuota{lim: lim, window: "day", metric: "consumer.day",
			policy: strconv.Quote(name) + ";q=" + strconv.FormatInt(p.PerDay, 10) + ";w=" + strconv.Itoa(dayWindow)})
	}
	return pl, nil
}

// policyWindow writes a rate per second as q requests per w seconds, both whole: the
// smallest power-of-ten window in which the rate is a whole number (or the first at least a
// day long).
func policyWindow(perSecond float64) (q, w int64) {
	w = 1
	for w < dayWindow {
		x := perSecond * float64(w)
		if math.Abs(x-math.Round(x)) < 1e-9*x {
			break
		}
		w *= 10
	}
	return int64(math.Round(perSecond * float64(w))), w
}

// limitsFor returns the limiters of plan as the registry has it now, rebuilding those of the
// plans whose quotas changed since the last look. It returns nil for a plan the registry no
// longer has.
func (s *consumerStage) limitsFor(plan string) *planLimits {
	set := s.limits.Load()
	if set.version == s.reg.Version() {
		if pl := set.plans[plan]; pl != nil {
			return pl
		}
	}
	return s.refresh().plans[plan]
}

// refresh brings the limiters in step with the registry: a plan whose quotas are unchanged
// keeps its limiters (and the consumers' buckets), a changed or new plan gets new ones, a
// removed plan's are dropped.
func (s *consumerStage) refresh() *planLimitSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.limits.Load()
	version, cfg := s.reg.Version(), s.reg.Config() // the table may be newer than version: harmless
	next := &planLimitSet{version: version, plans: make(map[string]*planLimits, len(cfg.Plans))}
	for name, p := range cfg.Plans {
		if pl := old.plans[name]; pl != nil && pl.perSecond == p.PerSecond && pl.burst == p.Burst && pl.perDay == p.PerDay {
			next.plans[name] = pl
			continue
		}
		pl, err := s.newPlanLimits(name, p, s.pol.DailyLimiter)
		if err != nil {
			s.logger.Error("middleware: consumers: daily limiter refused; keeping the plan's daily quota locally", "plan", name, "error", err)
			if pl, err = s.newPlanLimits(name, p, nil); err != nil {
				continue // the registry validated the plan: not reached
			}
		}
		next.plans[name] = pl
	}
	s.limits.Store(next)
	return next
}

func buildConsumers(c *config, next http.Handler) http.Handler {
	s := c.server.consumers
	if s == nil {
		return nil
	}
	s.tel, s.logger = c.server.tel, c.logger
	s.challenge = []string{`APIKey header="` + s.pol.Header + `"`}
	if c.server.jwt != nil {
		s.challenge = append(s.challenge, "Bearer")
	}
	s.challenge = slices.Clip(s.challenge) // a header Add must not write into it
	return &consumerHandler{s: s, next: next, routeHost: c.server.routeHost}
}

// consumerHandler is the WithConsumers stage of NewHandler.
type consumerHandler struct {
	s    *consumerStage // immutable
	next http.Handler   // immutable
	// routeHost is the Host routes are matched with (NewGateway's service); "": r.Host.
	routeHost string // immutable
}

func (h *consumerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s, ctx := h.s, r.Context()
	c, refusal := s.identify(r)
	if refusal != "" {
		s.tel.RateLimited(ctx, refusal, 0, false)
		if refusal == "consumer.subject" {
			writeJSONError(w, http.StatusForbidden, `{"error":"forbidden"}`)
			return
		}
		s.unauthorized(w)
		return
	}
	if !s.routeAllowed(r, c, h.routeHost) {
		s.tel.RateLimited(ctx, "consumer.route", 0, false)
		writeJSONError(w, http.StatusForbidden, `{"error":"forbidden"}`)
		return
	}
	pl := s.limitsFor(c.Plan)
	if pl == nil { // the plan left the registry since the lookup: the consumer did too
		s.tel.RateLimited(ctx, "consumer.unknown", 0, false)
		s.unauthorized(w)
		return
	}
	shown, refused, err := s.admit(ctx, pl, c.Name)
	if err != nil {
		// The request's context is done: the client has gone. Nobody reads the answer.
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if refused {
		s.overQuota(w, c, shown)
		return
	}
	if shown.q != nil {
		setRateLimitHeaders(w.Header(), shown.d)
		w.Header()[RateLimitPolicyHeader] = []string{shown.q.policy}
	}
	h.next.ServeHTTP(w, s.forward(r, c))
}

// unauthorized answers 401 with the stage's challenges.
func (s *consumerStage) unauthorized(w http.ResponseWriter) {
	hd := w.Header()
	hd["Www-Authenticate"] = s.challenge
	hd.Set("Cache-Control", "no-store")
	writeJSONError(w, http.StatusUnauthorized, `{"error":"unauthorized"}`)
}

// identify returns the request's consumer, or the telemetry policy of its refusal.
func (s *consumerStage) identify(r *http.Request) (auth.Consumer, string) {
	keys := r.Header[s.keyHeader]
	switch {
	case len(keys) > 1: // which one would the upstream read? Refuse the ambiguity.
		return auth.Consumer{}, "consumer.unknown"
	case len(keys) == 1:
		c, err := s.reg.ByKey(keys[0])
		switch {
		case errors.Is(err, auth.ErrRevokedAPIKey):
			return c, "consumer.revoked"
		case err != nil:
			return c, "consumer.unknown"
		}
		return c, ""
	}
	sub := auth.SubjectFromContext(r.Context())
	if sub == "" {
		return auth.Consumer{}, "consumer.missing"
	}
	c, err := s.reg.BySubject(sub)
	if err != nil {
		return c, "consumer.subject"
	}
	return c, ""
}

// routeAllowed reports whether c's plan allows the route r matches, with host as its Host
// when not "" (see consumerHandler.routeHost).
func (s *consumerStage) routeAllowed(r *http.Request, c auth.Consumer, host string) bool {
	if len(c.Limits.Routes) == 0 {
		return true
	}
	if s.pol.Router == nil || hasDotSegment(r.URL.Path) {
		return false
	}
	rq := routeRequest(r, host) // gateway_routehost.go
	rt := s.pol.Router.Table().Match(&rq)
	return rt != nil && slices.Contains(c.Limits.Routes, rt.Name())
}

// hasDotSegment reports whether path has a "." or ".." segment, which the service behind a
// gateway may resolve (/catalog/../admin is /admin there) although the route was matched on
// the path as sent. A segment ends at '/' or '\' (which some servers read as '/'), and its
// ";parameters" are ignored (Tomcat reads "..;" as "..").
func hasDotSegment(path string) bool {
	for len(path) > 0 {
		i := strings.IndexAny(path, "/\\")
		seg := path
		if i >= 0 {
			seg, path = path[:i], path[i+1:]
		} else {
			path = ""
		}
		if j := strings.IndexByte(seg, ';'); j >= 0 {
			seg = seg[:j]
		}
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// quotaDecision is one quota's decision on a request.
type quotaDecision struct {
	d ratelimit.Decision
	q *consumerQuota // nil when no quota decided
}

// admit takes a request from each of the plan's quotas for consumer, in order, and returns
// the decision to show: the refusal, or the admission with the fewest requests left.
func (s *consumerStage) admit(ctx context.Context, pl *planLimits, consumer string) (shown quotaDecision, refused bool, err error) {
	for i := range pl.quotas {
		q := &pl.quotas[i]
		d, err := q.lim.Take(ctx, consumer)
		if err != nil {
			return quotaDecision{}, false, err
		}
		s.tel.RateLimited(ctx, q.metric, 0, d.Allowed)
		if !d.Allowed {
			return quotaDecision{d: d, q: q}, true, nil
		}
		if d.Limit > 0 && (shown.q == nil || d.Remaining < shown.d.Remaining) {
			shown = quotaDecision{d: d, q: q}
		}
	}
	return shown, false, nil
}

// overQuota answers 429 for the quota that refused.
func (s *consumerStage) overQuota(w http.ResponseWriter, c auth.Consumer, refused quotaDecision) {
	hd := w.Header()
	setRateLimitHeaders(hd, refused.d)
	hd[RateLimitPolicyHeader] = []string{refused.q.policy}
	retry := ceilSeconds(refused.d.RetryAfter)
	if retry > 0 {
		hd[retryAfterHeader] = []string{strconv.FormatInt(retry, 10)}
	}
	// Names are letters, digits and ".-_@:" (the registry refuses others): nothing to escape.
	body := `{"error":"quota_exceeded","consumer":"` + c.Name + `","plan":"` + c.Plan +
		`","window":"` + refused.q.window + `","retryAfter":` + strconv.FormatInt(retry, 10) + "}"
	writeJSONError(w, http.StatusTooManyRequests, body)
}

// forward returns r as the handler gets it: the consumer in its context, the key header
// removed (unless KeepKey) and ConsumerHeader set (if configured). r itself is not changed.
func (s *consumerStage) forward(r *http.Request, c auth.Consumer) *http.Request {
	r2 := r.WithContext(auth.ContextWithConsumer(r.Context(), c))
	if s.pol.KeepKey && s.pol.ConsumerHeader == "" {
		return r2
	}
	r2.Header = r.Header.Clone()
	if !s.pol.KeepKey {
		delete(r2.Header, s.keyHeader)
	}
	if s.pol.ConsumerHeader != "" {
		// The header spelled with '_' (X_Consumer) reads as the same variable in CGI, WSGI,
		// Rack and PHP services: a caller's must not pass for the gateway's.
		for k := range r2.Header {
			if strings.Contains(k, "_") && strings.EqualFold(strings.ReplaceAll(k, "_", "-"), s.pol.ConsumerHeader) {
				delete(r2.Header, k)
			}
		}
		r2.Header[s.pol.ConsumerHeader] = []string{c.Name}
	}
	return r2
}

// writeJSONError answers code with a small JSON body.
func writeJSONError(w http.ResponseWriter, code int, body string) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body + "\n"))
}
