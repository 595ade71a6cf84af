package middleware_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/tracing"
)

// consumerApp answers what it was handed: the consumer the gateway identified, and the API
// key and consumer headers it sees.
var consumerApp = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, ok := auth.ConsumerFromContext(r.Context())
	_, _ = fmt.Fprintf(w, "%s|%s|%v|key=%s|consumer=%s", c.Name, c.Plan, ok, r.Header.Get("X-API-Key"), r.Header.Get("X-Consumer"))
})

// apiKey is the key of a test consumer.
func apiKey(name string) string { return "key-" + name + "-0123456789abcdef" }

// registryDoc replaces each {name} of doc by the stored hash of apiKey(name).
func registryDoc(doc string, names ...string) string {
	var pairs []string
	for _, n := range names {
		pairs = append(pairs, "{"+n+"}", auth.HashAPIKey(apiKey(n)))
	}
	return strings.NewReplacer(pairs...).Replace(doc)
}

func newRegistry(t *testing.T, doc string, names ...string) *auth.Consumers {
	t.Helper()
	cfg, err := auth.ParseConsumersConfig([]byte(registryDoc(doc, names...)))
	require.NoError(t, err)
	reg, err := auth.NewConsumers(cfg)
	require.NoError(t, err)
	return reg
}

const gatewayDoc = `plans:
  gold: {perSecond: 1000}
  silver: {perSecond: 1000, routes: [catalog]}
consumers:
  - {name: alice, plan: gold, keys: ["{alice}"], revokedKeys: ["{alice-old}"]}
  - {name: carol, plan: silver, keys: ["{carol}"], subjects: [carol-sub]}
`

var gatewayNames = []string{"alice", "alice-old", "carol"}

func gatewayRouter(t *testing.T) *route.Router {
	t.Helper()
	r, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{
		{Name: "catalog", Match: route.Match{Path: &route.StringMatch{Prefix: "/catalog"}}},
		{Name: "admin", Match: route.Match{Path: &route.StringMatch{Prefix: "/admin"}}},
	}})
	require.NoError(t, err)
	return r
}

// Unknown, revoked, ambiguous and missing keys are refused 401 alike; a good key reaches the
// handler with the consumer in the context, without the key, and with the consumer header
// the gateway set, not the caller's.
func TestConsumersIdentifyByKey(t *testing.T) {
	otel := newOtelSDK(t)
	reg := newRegistry(t, gatewayDoc, gatewayNames...)
	srv := startHTTP(t, consumerApp, middleware.WithMeterProvider(otel.mp),
		middleware.WithConsumers(reg, middleware.ConsumerPolicy{Router: gatewayRouter(t), ConsumerHeader: "X-Consumer"}))
	c := srv.Client()

	for _, tc := range []struct {
		name   string
		header []string
		policy string
	}{
		{"missing", nil, "consumer.missing"},
		{"unknown", []string{"X-API-Key", apiKey("mallory")}, "consumer.unknown"},
		{"revoked", []string{"X-API-Key", apiKey("alice-old")}, "consumer.revoked"},
		{"empty", []string{"X-API-Key", ""}, "consumer.unknown"},
		{"stored hash", []string{"X-API-Key", auth.HashAPIKey(apiKey("alice"))}, "consumer.unknown"},
		{"oversized", []string{"X-API-Key", apiKey("alice") + strings.Repeat("x", 300)}, "consumer.unknown"},
		{"two keys", []string{"X-API-Key", apiKey("alice"), "X-API-Key", apiKey("carol")}, "consumer.unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, h := do(t, c, srv.URL+"/catalog", tc.header...)
			assert.Equal(t, http.StatusUnauthorized, code)
			assert.Equal(t, `APIKey header="X-API-Key"`, h.Get("WWW-Authenticate"))
			assert.Equal(t, "no-store", h.Get("Cache-Control"))
			assert.Equal(t, "application/json", h.Get("Content-Type"))
			assert.JSONEq(t, `{"error":"unauthorized"}`, body, "the answer does not say why")
		})
	}
	ms := otel.collect(t)
	for policy, want := range map[string]int64{"consumer.missing": 1, "consumer.revoked": 1, "consumer.unknown": 5} {
		assert.Equal(t, want, counter(ms, tracing.MetricLimitDecisions, tracing.KeyLimitPolicy.String(policy),
			tracing.KeyLimitDecision.String("refused")), policy)
	}

	code, body, _ := do(t, c, srv.URL+"/catalog", "X-API-Key", apiKey("alice"), "X-Consumer", "mallory")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "alice|gold|true|key=|consumer=alice", body, "key removed, consumer header the gateway's")
}

// Without an API key, the verified JWT subject identifies the consumer; a valid token whose
// subject is no consumer is forbidden; a key wins over a token.
func TestConsumersIdentifyBySubject(t *testing.T) {
	idp := newIDP(t)
	reg := newRegistry(t, gatewayDoc, gatewayNames...)
	srv := startHTTP(t, consumerApp, middleware.WithJWT(idp.v, auth.WithOptionalToken()),
		middleware.WithConsumers(reg, middleware.ConsumerPolicy{Router: gatewayRouter(t), Header: "X-Gateway-Key", KeepKey: true}))
	c := srv.Client()
	bearer := func(sub string) string { return "Bearer " + idp.token(t, sub, "") }

	code, body, _ := do(t, c, srv.URL+"/catalog/1", "Authorization", bearer("carol-sub"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "carol|silver|true|key=|consumer=", body)

	code, body, _ = do(t, c, srv.URL+"/catalog/1", "Authorization", bearer("somebody-else"))
	assert.Equal(t, http.StatusForbidden, code)
	assert.JSONEq(t, `{"error":"forbidden"}`, body)

	code, _, h := do(t, c, srv.URL+"/catalog/1")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Equal(t, []string{`APIKey header="X-Gateway-Key"`, "Bearer"}, h.Values("WWW-Authenticate"))

	code, body, _ = do(t, c, srv.URL+"/", "Authorization", bearer("carol-sub"), "X-Gateway-Key", apiKey("alice"))
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, strings.HasPrefix(body, "alice|gold|true|"), body)

	code, _, _ = do(t, c, srv.URL+"/catalog/1", "Authorization", bearer("carol-sub")+"x")
	assert.Equal(t, http.StatusUnauthorized, code, "a bad token stops at the token check")
}

// A plan that lists routes admits only requests whose matched route is one of them.
func TestConsumersPlanRoutes(t *testing.T) {
	reg := newRegistry(t, gatewayDoc, gatewayNames...)
	srv := startHTTP(t, consumerApp, middleware.WithConsumers(reg, middleware.ConsumerPolicy{Router: gatewayRouter(t)}))
	c := srv.Client()
	for _, tc := range []struct {
		consumer, path string
		want           int
	}{
		{"carol", "/catalog/items", http.StatusOK},
		{"carol", "/admin/users", http.StatusForbidden},
		{"carol", "/elsewhere", http.StatusForbidden}, // no route matches
		{"alice", "/admin/users", http.StatusOK},      // gold lists no routes: all of them
		{"alice", "/elsewhere", http.StatusOK},
	} {
		code, body, _ := do(t, c, srv.URL+tc.path, "X-API-Key", apiKey(tc.consumer))
		assert.Equal(t, tc.want, code, "%s %s", tc.consumer, tc.path)
		if tc.want == http.StatusForbidden {
			assert.JSONEq(t, `{"error":"forbidden"}`, body)
		}
	}
}

type quotaBody struct {
	Error      string `json:"error"`
	Consumer   string `json:"consumer"`
	Plan       string `json:"plan"`
	Window     string `json:"window"`
	RetryAfter int    `json:"retryAfter"`
}

// Over a quota: 429 with Retry-After, the RateLimit-* headers of the quota that refused, and
// the plan's name in RateLimit-Policy and the body.
func TestConsumersOverQuotaAnswer(t *testing.T) {
	otel := newOtelSDK(t)
	reg := newRegistry(t, `plans:
  gold: {perSecond: 0.5, burst: 3}
  daily: {perSecond: 100, perDay: 2}
consumers:
  - {name: alice, plan: gold, keys: ["{alice}"]}
  - {name: dave, plan: daily, keys: ["{dave}"]}
`, "alice", "dave")
	srv := startHTTP(t, consumerApp, middleware.WithMeterProvider(otel.mp), middleware.WithConsumers(reg, middleware.ConsumerPolicy{}))
	c := srv.Client()

	for i := range 3 {
		code, _, h := do(t, c, srv.URL, "X-API-Key", apiKey("alice"))
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, "3", h.Get("RateLimit-Limit"))
		assert.Equal(t, fmt.Sprint(2-i), h.Get("RateLimit-Remaining"))
		assert.Equal(t, `"gold";q=5;w=10`, h.Get("RateLimit-Policy"), "0.5/s is 5 per 10 s")
	}
	code, body, h := do(t, c, srv.URL, "X-API-Key", apiKey("alice"))
	require.Equal(t, http.StatusTooManyRequests, code)
	assert.Equal(t, "2", h.Get("Retry-After"), "one request every 2 s")
	assert.Equal(t, "3", h.Get("RateLimit-Limit"))
	assert.Equal(t, "0", h.Get("RateLimit-Remaining"))
	assert.Equal(t, "6", h.Get("RateLimit-Reset"))
	assert.Equal(t, `"gold";q=5;w=10`, h.Get("RateLimit-Policy"))
	assert.Equal(t, "application/json", h.Get("Content-Type"))
	var qb quotaBody
	require.NoError(t, json.Unmarshal([]byte(body), &qb))
	assert.Equal(t, quotaBody{Error: "quota_exceeded", Consumer: "alice", Plan: "gold", Window: "second", RetryAfter: 2}, qb)

	// The daily quota: 2 a day, one back every 12 hours.
	for range 2 {
		code, _, h = do(t, c, srv.URL, "X-API-Key", apiKey("dave"))
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, `"daily";q=2;w=86400`, h.Get("RateLimit-Policy"), "the daily quota has the fewest left")
	}
	code, body, h = do(t, c, srv.URL, "X-API-Key", apiKey("dave"))
	require.Equal(t, http.StatusTooManyRequests, code)
	assert.Equal(t, `"daily";q=2;w=86400`, h.Get("RateLimit-Policy"))
	assert.Equal(t, "2", h.Get("RateLimit-Limit"))
	assert.Equal(t, "0", h.Get("RateLimit-Remaining"))
	assert.InDelta(t, 43200, atoi(t, h.Get("Retry-After")), 1)
	require.NoError(t, json.Unmarshal([]byte(body), &qb))
	assert.Equal(t, "daily", qb.Plan)
	assert.Equal(t, "day", qb.Window)

	ms := otel.collect(t)
	refused := tracing.KeyLimitDecision.String("refused")
	admitted := tracing.KeyLimitDecision.String("admitted")
	assert.EqualValues(t, 1, counter(ms, tracing.MetricLimitDecisions, tracing.KeyLimitPolicy.String("consumer.second"), refused))
	assert.EqualValues(t, 6, counter(ms, tracing.MetricLimitDecisions, tracing.KeyLimitPolicy.String("consumer.second"), admitted))
	assert.EqualValues(t, 1, counter(ms, tracing.MetricLimitDecisions, tracing.KeyLimitPolicy.String("consumer.day"), refused))
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	_, err := fmt.Sscan(s, &n)
	require.NoError(t, err, "%q", s)
	return n
}

// A reload keeps the limiters (and the consumers' buckets) of the plans it does not change,
// and gives a changed plan new ones.
func TestConsumersReloadRebuildsOnlyChangedPlans(t *testing.T) {
	const doc = `plans:
  gold: {perSecond: 0.001, burst: %d}
  silver: {perSecond: 0.001, burst: 1}
consumers:
  - {name: alice, plan: gold, keys: ["{alice}"]}
  - {name: carol, plan: silver, keys: ["{carol}"]}
`
	names := []string{"alice", "carol"}
	reg := newRegistry(t, fmt.Sprintf(doc, 1), names...)
	srv := startHTTP(t, consumerApp, middleware.WithConsumers(reg, middleware.ConsumerPolicy{}))
	get := func(who string) int {
		code, _, _ := do(t, srv.Client(), srv.URL, "X-API-Key", apiKey(who))
		return code
	}
	for _, who := range names {
		assert.Equal(t, http.StatusOK, get(who), who)
		assert.Equal(t, http.StatusTooManyRequests, get(who), who)
	}
	require.NoError(t, reg.Load([]byte(registryDoc(fmt.Sprintf(doc, 2), names...))))
	assert.Equal(t, http.StatusTooManyRequests, get("carol"), "silver did not change: carol's bucket is still empty")
	assert.Equal(t, http.StatusOK, get("alice"), "gold changed: a new bucket of 2")
	assert.Equal(t, http.StatusOK, get("alice"))
	assert.Equal(t, http.StatusTooManyRequests, get("alice"))
}

func TestWithConsumersErrors(t *testing.T) {
	reg := newRegistry(t, gatewayDoc, gatewayNames...)
	failing := func(string, ratelimit.Quota) (ratelimit.Limiter, error) { return nil, errors.New("no redis client") }
	nilLimiter := func(string, ratelimit.Quota) (ratelimit.Limiter, error) { return nil, nil }
	daily := newRegistry(t, "plans: {metered: {perDay: 10}}\nconsumers: []")
	for _, tc := range []struct {
		reg  *auth.Consumers
		p    middleware.ConsumerPolicy
		want string
	}{
		{nil, middleware.ConsumerPolicy{}, "registry is nil"},
		{reg, middleware.ConsumerPolicy{}, `plan "silver" lists routes, and ConsumerPolicy.Router is nil`},
		{daily, middleware.ConsumerPolicy{Header: "X API"}, `ConsumerPolicy.Header "X API" is not a header name`},
		{daily, middleware.ConsumerPolicy{ConsumerHeader: "x-api-key"}, `ConsumerPolicy.ConsumerHeader is the API key header`},
		{daily, middleware.ConsumerPolicy{DailyLimiter: failing}, `plan "metered" daily limiter: no redis client`},
		{daily, middleware.ConsumerPolicy{DailyLimiter: nilLimiter}, `plan "metered" daily limiter: DailyLimiter returned a nil limiter`},
	} {
		_, err := middleware.NewHandler(consumerApp, middleware.WithConsumers(tc.reg, tc.p))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "middleware: WithConsumers: "+tc.want)
	}
}
