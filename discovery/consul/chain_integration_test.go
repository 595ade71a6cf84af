package consul_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/internal/consultest"
	"github.com/proxyless/proxyless/middleware"
)

// backend is a real loopback HTTP server registered in Consul; it answers its label.
type backend struct {
	label string
	reg   consul.Registration
	hb    *consul.Heartbeat
}

// startBackend serves label on a loopback port and registers it as an instance of service
// with meta and a TTL check kept passing.
func startBackend(t *testing.T, cfg consul.Config, service, label string, meta map[string]string) *backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, label)
	}))
	t.Cleanup(srv.Close)
	_, p, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	port, _ := strconv.Atoi(p)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg := consul.Registration{
		ID: service + "-" + label, Name: service, Address: "127.0.0.1", Port: port, Meta: meta,
		Check: &consul.Check{TTL: ttl},
	}
	deregister, err := consul.Register(ctx, cfg, reg)
	require.NoError(t, err)
	hb, err := consul.KeepPassing(cfg, reg.CheckID(), 200*time.Millisecond)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = hb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = deregister(ctx)
	})
	return &backend{label: label, reg: reg, hb: hb}
}

func apiClient(t *testing.T, cfg consul.Config) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: cfg.Address})
	require.NoError(t, err)
	return c
}

// setEntry writes a config entry and removes it at cleanup (in reverse order of writing, so
// that a splitter goes before the resolver it names).
func setEntry(t *testing.T, c *api.Client, e api.ConfigEntry) {
	t.Helper()
	ok, _, err := c.ConfigEntries().Set(e, nil)
	require.NoError(t, err, "set %s %s", e.GetKind(), e.GetName())
	require.True(t, ok)
	t.Cleanup(func() { _, _ = c.ConfigEntries().Delete(e.GetKind(), e.GetName(), nil) })
}

func httpDefaults(t *testing.T, c *api.Client, services ...string) {
	t.Helper()
	for _, s := range services {
		setEntry(t, c, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: s, Protocol: "http"})
	}
}

// chainSetup is a middleware transport following the chains of services through a watcher.
type chainSetup struct {
	tr      *middleware.Transport
	mcfg    *middleware.Config
	w       *consul.ChainWatcher
	mu      sync.Mutex
	results []consul.ChainResult
}

func newChainSetup(t *testing.T, cfg consul.Config, services []string, opts ...consul.ChainOption) *chainSetup {
	t.Helper()
	s := &chainSetup{}
	mcfg, err := middleware.NewConfig(middleware.Document{})
	require.NoError(t, err)
	s.mcfg = mcfg
	opts = append(opts, consul.WithChainHook(func(r consul.ChainResult) {
		s.mu.Lock()
		s.results = append(s.results, r)
		s.mu.Unlock()
	}))
	w, err := consul.WatchChains(cfg, services, mcfg, opts...)
	require.NoError(t, err)
	s.w = w
	res, err := consul.New(cfg)
	require.NoError(t, err)
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(res), middleware.WithConfig(mcfg),
		middleware.WithTimeout(5*time.Second))
	require.NoError(t, err)
	s.tr = tr
	t.Cleanup(func() {
		require.NoError(t, w.Close())
		require.NoError(t, tr.Close())
		require.NoError(t, res.Close())
	})
	return s
}

// waitDoc waits until the loaded document satisfies ok.
func (s *chainSetup) waitDoc(t *testing.T, what string, ok func(doc string) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ok(string(s.w.Document())) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the chain document never %s; last: %s; results: %v", what, s.w.Document(), s.snapshot())
}

func (s *chainSetup) snapshot() []consul.ChainResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]consul.ChainResult(nil), s.results...)
}

// get sends one request through the transport and returns the body (the backend's label).
func (s *chainSetup) get(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := s.tr.RoundTrip(req)
	require.NoError(t, err, url)
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, b)
	return string(b)
}

// shares sends n requests to url and counts the answers by label.
func (s *chainSetup) shares(t *testing.T, url string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		got[s.get(t, url)]++
	}
	return got
}

func assertShare(t *testing.T, got map[string]int, label string, n int, wantPct float64) {
	t.Helper()
	pct := 100 * float64(got[label]) / float64(n)
	t.Logf("%s: %.1f%% of %d requests (want %.0f%%)", label, pct, n, wantPct)
	assert.InDelta(t, wantPct, pct, 4, "share of %s: %.1f%% (counts %v)", label, pct, got)
}

func resolverV1V2(service string) *api.ServiceResolverConfigEntry {
	return &api.ServiceResolverConfigEntry{
		Kind: api.ServiceResolver, Name: service, DefaultSubset: "v1",
		Subsets: map[string]api.ServiceResolverSubset{
			"v1": {Filter: "Service.Meta.version == v1"},
			"v2": {Filter: `Service.Meta.version == "v2"`},
		},
	}
}

func splitter(service string, w1, w2 float32) *api.ServiceSplitterConfigEntry {
	return &api.ServiceSplitterConfigEntry{
		Kind: api.ServiceSplitter, Name: service,
		Splits: []api.ServiceSplit{{Weight: w1, ServiceSubset: "v1"}, {Weight: w2, ServiceSubset: "v2"}},
	}
}

// TestChainSplitterFollowedLive: resolver subsets v1/v2 by Meta (default v1) are honoured;
// a splitter of 90/10 between them, then changed to 50/50, gives request shares within 4
// points through a middleware Transport against real servers registered in Consul.
func TestChainSplitterFollowedLive(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	startBackend(t, cfg, "shop", "v1", map[string]string{"version": "v1"})
	startBackend(t, cfg, "shop", "v2", map[string]string{"version": "v2"})
	httpDefaults(t, c, "shop")
	setEntry(t, c, resolverV1V2("shop"))

	s := newChainSetup(t, cfg, []string{"shop"})
	s.waitDoc(t, "named the v1 subset", func(d string) bool { return strings.Contains(d, `"version":"v1"`) })
	// The default subset: every request goes to v1 although v2 is a healthy instance.
	got := s.shares(t, "http://shop/", 200)
	assert.Equal(t, map[string]int{"v1": 200}, got, "the resolver's default subset v1")

	const n = 2000
	setEntry(t, c, splitter("shop", 90, 10))
	s.waitDoc(t, "held the 90/10 split", func(d string) bool { return strings.Contains(d, `"weight":9000`) })
	got = s.shares(t, "http://shop/", n)
	assertShare(t, got, "v2", n, 10)
	assert.Equal(t, n, got["v1"]+got["v2"])

	setEntry(t, c, splitter("shop", 50, 50))
	s.waitDoc(t, "held the 50/50 split", func(d string) bool { return strings.Contains(d, `"weight":5000`) })
	got = s.shares(t, "http://shop/", n)
	assertShare(t, got, "v2", n, 50)
	assert.Equal(t, n, got["v1"]+got["v2"])
}

// TestChainRouterPrefix: a service-router route of /v2 to another service is honoured, the
// rest going to the chain's own service.
func TestChainRouterPrefix(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	startBackend(t, cfg, "front", "front", nil)
	startBackend(t, cfg, "front-v2", "front-v2", nil)
	httpDefaults(t, c, "front", "front-v2")
	setEntry(t, c, &api.ServiceRouterConfigEntry{
		Kind: api.ServiceRouter, Name: "front",
		Routes: []api.ServiceRoute{{
			Match:       &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/v2"}},
			Destination: &api.ServiceRouteDestination{Service: "front-v2", RequestTimeout: 2 * time.Second, NumRetries: 3, RetryOnStatusCodes: []uint32{503}},
		}},
	})
	s := newChainSetup(t, cfg, []string{"front"})
	s.waitDoc(t, "held the /v2 route", func(d string) bool { return strings.Contains(d, `"prefix":"/v2"`) })
	for range 20 {
		assert.Equal(t, "front-v2", s.get(t, "http://front/v2/items"))
		assert.Equal(t, "front", s.get(t, "http://front/items"))
	}
	doc := string(s.w.Document())
	assert.Contains(t, doc, `"timeout":"2s"`, "the route's request timeout")
	assert.Contains(t, doc, `"maxRetries":3`)
	assert.Contains(t, doc, `"statuses":[503]`)
}

// TestChainFailover: when every instance of the primary is critical (a failing TTL check),
// requests go to the failover service, and back when the primary passes again.
func TestChainFailover(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	primary := startBackend(t, cfg, "ledger2", "primary", nil)
	startBackend(t, cfg, "ledger2-dr", "backup", nil)
	httpDefaults(t, c, "ledger2", "ledger2-dr")
	setEntry(t, c, &api.ServiceResolverConfigEntry{
		Kind: api.ServiceResolver, Name: "ledger2", ConnectTimeout: 3 * time.Second,
		Failover:     map[string]api.ServiceResolverFailover{"*": {Service: "ledger2-dr"}},
		LoadBalancer: &api.LoadBalancer{Policy: "least_request"},
	})
	s := newChainSetup(t, cfg, []string{"ledger2"})
	s.waitDoc(t, "named ledger2", func(d string) bool { return strings.Contains(d, `"service":"ledger2"`) })
	if pol := s.mcfg.Destinations()["ledger2"]; assert.NotNil(t, pol.Balancer, "the resolver's load balancer") {
		assert.Equal(t, "least_request", string(pol.Balancer.Policy))
	}
	for range 20 {
		require.Equal(t, "primary", s.get(t, "http://ledger2/"))
	}

	require.NoError(t, primary.hb.Close())
	require.NoError(t, c.Agent().UpdateTTL(primary.reg.CheckID(), "down", api.HealthCritical))
	s.waitDoc(t, "failed over", func(d string) bool { return strings.Contains(d, `"service":"ledger2-dr"`) })
	for range 20 {
		assert.Equal(t, "backup", s.get(t, "http://ledger2/"))
	}

	require.NoError(t, c.Agent().UpdateTTL(primary.reg.CheckID(), "up", api.HealthPassing))
	s.waitDoc(t, "failed back", func(d string) bool { return !strings.Contains(d, `"service":"ledger2-dr"`) })
	assert.Equal(t, "primary", s.get(t, "http://ledger2/"))
}

// TestChainUnsupportedKeepsLastGood: a chain the library cannot follow (a subset filter with
// !=, which Consul accepts) is reported and the chain in force stays; a good one is then
// followed again.
func TestChainUnsupportedKeepsLastGood(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	startBackend(t, cfg, "cart", "v1", map[string]string{"version": "v1"})
	startBackend(t, cfg, "cart", "v2", map[string]string{"version": "v2"})
	httpDefaults(t, c, "cart")
	setEntry(t, c, resolverV1V2("cart"))
	s := newChainSetup(t, cfg, []string{"cart"})
	s.waitDoc(t, "named the v1 subset", func(d string) bool { return strings.Contains(d, `"version":"v1"`) })
	good := string(s.w.Document())

	bad := resolverV1V2("cart")
	bad.Subsets["v1"] = api.ServiceResolverSubset{Filter: "Service.Meta.version != v2"}
	setEntry(t, c, bad)
	var refused consul.ChainResult
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && refused.Err == nil {
		for _, r := range s.snapshot() {
			if r.Err != nil {
				refused = r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.Error(t, refused.Err, "the unsupported chain was not reported")
	assert.True(t, errors.Is(refused.Err, consul.ErrUnsupportedFilter), "%v", refused.Err)
	var ce *consul.ChainError
	require.True(t, errors.As(refused.Err, &ce))
	assert.Equal(t, "cart", ce.Service)
	assert.Contains(t, refused.Err.Error(), `subset "v1"`)
	assert.Equal(t, "cart", refused.Service)
	assert.Equal(t, good, string(s.w.Document()), "the last good chain stays")
	assert.Equal(t, map[string]int{"v1": 50}, s.shares(t, "http://cart/", 50))

	fixed := resolverV1V2("cart")
	fixed.DefaultSubset = "v2"
	setEntry(t, c, fixed)
	s.waitDoc(t, "took the fixed chain", func(d string) bool { return strings.Contains(d, `"version":"v2"`) })
	assert.Equal(t, map[string]int{"v2": 50}, s.shares(t, "http://cart/", 50))
}

// TestChainLocalRoutesTakePrecedence: a local route matching a request wins over the chain.
func TestChainLocalRoutesTakePrecedence(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	startBackend(t, cfg, "desk", "v1", map[string]string{"version": "v1"})
	startBackend(t, cfg, "desk", "v2", map[string]string{"version": "v2"})
	httpDefaults(t, c, "desk")
	r := resolverV1V2("desk")
	r.LoadBalancer = &api.LoadBalancer{Policy: "least_request"}
	setEntry(t, c, r)
	local := []byte(`
routes:
  - name: local-beta
    match: {hosts: [desk], path: {prefix: /beta}}
    destination: {service: desk, subset: {meta: {version: v2}}}
destinations:
  desk:
    balancer: {policy: round_robin}
`)
	s := newChainSetup(t, cfg, []string{"desk"}, consul.WithLocalDocument(local))
	s.waitDoc(t, "named the v1 subset", func(d string) bool { return strings.Contains(d, `"version":"v1"`) })
	assert.Equal(t, map[string]int{"v2": 20}, s.shares(t, "http://desk/beta/x", 20), "the local route")
	assert.Equal(t, map[string]int{"v1": 20}, s.shares(t, "http://desk/x", 20), "the chain's default subset")
	pol := s.mcfg.Destinations()["desk"]
	require.NotNil(t, pol.Balancer)
	assert.Equal(t, "round_robin", string(pol.Balancer.Policy), "the local destination policy replaces the chain's least_request")
}

// TestChainWatcherCloseStopsQueries: Close returns promptly with blocking queries in flight
// (the package's goleak check finds any goroutine left).
func TestChainWatcherCloseStopsQueries(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	cfg.WaitTime = time.Minute
	mcfg, err := middleware.NewConfig(middleware.Document{})
	require.NoError(t, err)
	loaded := make(chan struct{}, 1)
	w, err := consul.WatchChains(cfg, []string{"idle-a", "idle-b"}, mcfg, consul.WithChainHook(func(r consul.ChainResult) {
		if r.Err == nil {
			select {
			case loaded <- struct{}{}:
			default:
			}
		}
	}))
	require.NoError(t, err)
	select {
	case <-loaded:
	case <-time.After(10 * time.Second):
		t.Fatal("no document loaded")
	}
	time.Sleep(100 * time.Millisecond) // let the loops enter their minute-long queries
	start := time.Now()
	require.NoError(t, w.Close())
	assert.Less(t, time.Since(start), 5*time.Second)
	require.NoError(t, w.Close(), "idempotent")
	assert.Greater(t, mcfg.Version(), uint64(1))
}

// TestChainRedirect: a service-resolver redirect sends the service's requests to another.
func TestChainRedirect(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	startBackend(t, cfg, "old-inv", "old", nil)
	startBackend(t, cfg, "new-inv", "new", nil)
	httpDefaults(t, c, "old-inv", "new-inv")
	s := newChainSetup(t, cfg, []string{"old-inv"})
	// old-inv's chain is Consul's default: it adds no route, and requests go to old-inv itself.
	s.waitDoc(t, "was loaded", func(d string) bool { return d == `{"routes":[]}` })
	assert.Equal(t, "old", s.get(t, "http://old-inv/"))
	setEntry(t, c, &api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "old-inv", Redirect: &api.ServiceResolverRedirect{Service: "new-inv"}})
	s.waitDoc(t, "redirected", func(d string) bool { return strings.Contains(d, `"service":"new-inv"`) })
	assert.Equal(t, map[string]int{"new": 20}, s.shares(t, "http://old-inv/", 20))
}

// TestChainAgentDownKeepsRules: with the agent stopped the rules in force stay and are
// reported stale; after a restart they are fresh again.
func TestChainAgentDownKeepsRules(t *testing.T) {
	a := consultest.ForTest(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	startBackend(t, cfg, "till", "v1", map[string]string{"version": "v1"})
	startBackend(t, cfg, "till", "v2", map[string]string{"version": "v2"})
	httpDefaults(t, c, "till")
	setEntry(t, c, resolverV1V2("till"))
	s := newChainSetup(t, cfg, []string{"till"})
	s.waitDoc(t, "named the v1 subset", func(d string) bool { return strings.Contains(d, `"version":"v1"`) })
	good := string(s.w.Document())
	require.False(t, s.w.Status().Stale)
	assert.Equal(t, map[string]int{"v1": 20}, s.shares(t, "http://till/", 20))

	require.NoError(t, a.Stop())
	deadline := time.Now().Add(10 * time.Second)
	for !s.w.Status().Stale && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := s.w.Status()
	require.True(t, st.Stale, "not stale with the agent down")
	assert.Error(t, st.LastError)
	assert.Equal(t, good, string(s.w.Document()))
	assert.Equal(t, map[string]int{"v1": 20}, s.shares(t, "http://till/", 20), "the last good rules stay")

	require.NoError(t, a.Restart())
	deadline = time.Now().Add(15 * time.Second)
	for s.w.Status().Stale && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.False(t, s.w.Status().Stale, "still stale after the restart")
}

// TestChainFailoverToSubset: a resolver failing its default subset over to another subset of
// the same service, when every instance of the default one is critical.
func TestChainFailoverToSubset(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	v1 := startBackend(t, cfg, "vault2", "v1", map[string]string{"version": "v1"})
	startBackend(t, cfg, "vault2", "v2", map[string]string{"version": "v2"})
	httpDefaults(t, c, "vault2")
	r := resolverV1V2("vault2")
	r.Failover = map[string]api.ServiceResolverFailover{"v1": {ServiceSubset: "v2"}}
	setEntry(t, c, r)
	s := newChainSetup(t, cfg, []string{"vault2"})
	s.waitDoc(t, "named the v1 subset", func(d string) bool { return strings.Contains(d, `"version":"v1"`) })
	assert.Equal(t, map[string]int{"v1": 20}, s.shares(t, "http://vault2/", 20))

	require.NoError(t, v1.hb.Close())
	require.NoError(t, c.Agent().UpdateTTL(v1.reg.CheckID(), "down", api.HealthCritical))
	s.waitDoc(t, "failed over to v2", func(d string) bool { return !strings.Contains(d, `"version":"v1"`) })
	assert.Equal(t, map[string]int{"v2": 20}, s.shares(t, "http://vault2/", 20))
}

// TestChainResolverRequestTimeout: a resolver's request timeout (which Consul applies when
// the chain starts at the resolver) becomes the route's timeout, enforced on a slow backend.
func TestChainResolverRequestTimeout(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	port, _ := strconv.Atoi(srv.URL[strings.LastIndexByte(srv.URL, ':')+1:])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	deregister, err := consul.Register(ctx, cfg, consul.Registration{ID: "slowpoke-1", Name: "slowpoke", Address: "127.0.0.1", Port: port})
	require.NoError(t, err)
	t.Cleanup(func() { _ = deregister(context.Background()) })
	httpDefaults(t, c, "slowpoke")
	setEntry(t, c, &api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "slowpoke", RequestTimeout: 300 * time.Millisecond})
	s := newChainSetup(t, cfg, []string{"slowpoke"})
	s.waitDoc(t, "held the resolver's timeout", func(d string) bool { return strings.Contains(d, `"timeout":"300ms"`) })

	req, err := http.NewRequest(http.MethodGet, "http://slowpoke/", nil)
	require.NoError(t, err)
	start := time.Now()
	resp, err := s.tr.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
	}
	require.Error(t, err, "the slow backend never answers: the route's 300ms timeout ends the request")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 4*time.Second, "ended by the chain's timeout, not the transport's 5s")
}
