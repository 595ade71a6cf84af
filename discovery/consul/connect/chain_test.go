package connect_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/middleware"
)

// serveVersion runs a Connect-native instance of m's service answering its version, with
// Meta version=<version>.
func serveVersion(t *testing.T, m *connect.Mesh, version string) {
	t.Helper()
	h, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, version)
	}), middleware.WithAuthorizer(m))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, TLSConfig: m.ServerTLS(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: discardLog}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	reg := consulRegistration(ln)
	reg.Meta = map[string]string{"version": version}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dereg, err := m.Register(ctx, reg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = dereg(context.Background()) })
}

func setEntry(t *testing.T, c *api.Client, e api.ConfigEntry) {
	t.Helper()
	ok, _, err := c.ConfigEntries().Set(e, nil)
	require.NoError(t, err)
	require.True(t, ok)
}

// shares sends n requests to url and returns the fraction answered by each version.
func shares(t *testing.T, c *http.Client, url string, n int) map[string]float64 {
	t.Helper()
	counts := map[string]int{}
	for range n {
		code, body, err := get(c, url)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, body)
		counts[body]++
	}
	out := map[string]float64{}
	for k, v := range counts {
		out[k] = float64(v) / float64(n)
	}
	return out
}

// The client follows the service's discovery chain live through the Mesh (consul's chain
// watcher, with the mesh endpoints): a splitter's 90/10 and then 50/50 shares come out within
// a few percent, a router's /v1only route goes to subset v1, and a local route takes
// precedence over the chain. The status page shows the chains fresh.
func TestDiscoveryChainFollowedLive(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	cleanEntries(t, c, [2]string{api.ServiceDefaults, "chainapi"}, [2]string{api.ServiceResolver, "chainapi"},
		[2]string{api.ServiceSplitter, "chainapi"}, [2]string{api.ServiceRouter, "chainapi"})
	srv := newMesh(t, a, "chainapi")
	serveVersion(t, srv, "v1")
	serveVersion(t, srv, "v2")
	setEntry(t, c, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "chainapi", Protocol: "http"})
	setEntry(t, c, &api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "chainapi", DefaultSubset: "v1",
		Subsets: map[string]api.ServiceResolverSubset{
			"v1": {Filter: "Service.Meta.version == v1"}, "v2": {Filter: `Service.Meta.version == "v2"`},
		}})
	split := func(v1, v2 float32) {
		setEntry(t, c, &api.ServiceSplitterConfigEntry{Kind: api.ServiceSplitter, Name: "chainapi", Splits: []api.ServiceSplit{
			{Weight: v1, ServiceSubset: "v1"}, {Weight: v2, ServiceSubset: "v2"},
		}})
	}
	split(90, 10)

	cli := newMesh(t, a, "chainweb")
	rules, err := middleware.NewConfig(middleware.Document{})
	require.NoError(t, err)
	local := []byte(`
routes:
  - name: pinned
    match: {hosts: [chainapi], path: {prefix: /pinned}}
    destination: {service: chainapi, subset: {meta: {version: v2}}}
`)
	chains, err := cli.WatchChains([]string{"chainapi"}, rules, consul.WithLocalDocument(local))
	require.NoError(t, err)
	t.Cleanup(func() { _ = chains.Close() })
	waitDoc := func(what, want string) {
		eventually(t, 5*time.Second, "the chain "+what, func() error {
			if d := string(chains.Document()); !strings.Contains(d, want) {
				return fmt.Errorf("document %s", d)
			}
			return nil
		})
	}
	waitDoc("holds 90/10", `"weight":9000`)
	tr, err := middleware.NewTransport(cli.Transport(nil), middleware.WithResolver(cli.Resolver()), middleware.WithConfig(rules))
	require.NoError(t, err)
	t.Cleanup(func() { tr.CloseIdleConnections(); _ = tr.Close() })
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	eventually(t, 10*time.Second, "both versions are mesh endpoints", func() error {
		s := shares(t, hc, "http://chainapi/", 100)
		if s["v2"] == 0 {
			return fmt.Errorf("%v", s)
		}
		return nil
	})

	s := shares(t, hc, "http://chainapi/", 2000)
	assert.InDelta(t, 0.10, s["v2"], 0.03, "90/10: %v", s)
	split(50, 50)
	waitDoc("holds 50/50", `"weight":5000`)
	s = shares(t, hc, "http://chainapi/", 2000)
	assert.InDelta(t, 0.50, s["v2"], 0.05, "50/50: %v", s)
	assert.Equal(t, map[string]float64{"v2": 1}, shares(t, hc, "http://chainapi/pinned/x", 50), "the local route first")

	setEntry(t, c, &api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "chainapi", Routes: []api.ServiceRoute{{
		Match:       &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/v1only"}},
		Destination: &api.ServiceRouteDestination{ServiceSubset: "v1"},
	}}})
	waitDoc("holds the router", `"prefix":"/v1only"`)
	assert.Equal(t, map[string]float64{"v1": 1}, shares(t, hc, "http://chainapi/v1only/x", 100))
	s = shares(t, hc, "http://chainapi/", 1000)
	assert.InDelta(t, 0.50, s["v2"], 0.06, "other paths still split 50/50: %v", s)
	assert.Equal(t, map[string]float64{"v2": 1}, shares(t, hc, "http://chainapi/pinned/x", 50), "the local route still first")
	assertStatusPage(t, cli, false, chains)
}

// registerLabel runs a Connect-native instance of m's service answering label, registered
// with a TTL check set passing, and returns its registration (for its check ID).
func registerLabel(t *testing.T, m *connect.Mesh, c *api.Client, label string) consul.Registration {
	t.Helper()
	h, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, label)
	}), middleware.WithAuthorizer(m))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, TLSConfig: m.ServerTLS(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: discardLog}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	reg := consulRegistration(ln)
	reg.Name = m.Service()
	reg.Check = &consul.Check{TTL: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dereg, err := m.Register(ctx, reg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = dereg(context.Background()) })
	require.NoError(t, c.Agent().UpdateTTL(reg.CheckID(), "up", api.HealthPassing))
	return reg
}

// A resolver's failover is followed in the mesh: when every mesh endpoint of the primary is
// critical, the client's requests go to the failover service, and back when one passes again;
// the resolver's load-balancer policy reaches the destination's policies.
func TestDiscoveryChainFailoverInMesh(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	cleanEntries(t, c, [2]string{api.ServiceDefaults, "foapi"}, [2]string{api.ServiceDefaults, "foapi-dr"},
		[2]string{api.ServiceResolver, "foapi"})
	primary := newMesh(t, a, "foapi")
	backup := newMesh(t, a, "foapi-dr")
	reg := registerLabel(t, primary, c, "primary")
	registerLabel(t, backup, c, "backup")
	setEntry(t, c, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "foapi", Protocol: "http"})
	setEntry(t, c, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "foapi-dr", Protocol: "http"})
	setEntry(t, c, &api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "foapi",
		Failover:     map[string]api.ServiceResolverFailover{"*": {Service: "foapi-dr"}},
		LoadBalancer: &api.LoadBalancer{Policy: "least_request"}})

	cli := newMesh(t, a, "foweb")
	rules, err := middleware.NewConfig(middleware.Document{})
	require.NoError(t, err)
	chains, err := cli.WatchChains([]string{"foapi"}, rules)
	require.NoError(t, err)
	t.Cleanup(func() { _ = chains.Close() })
	tr, err := middleware.NewTransport(cli.Transport(nil), middleware.WithResolver(cli.Resolver()), middleware.WithConfig(rules))
	require.NoError(t, err)
	t.Cleanup(func() { tr.CloseIdleConnections(); _ = tr.Close() })
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	answers := func(want string) func() error {
		return func() error {
			if s := shares(t, hc, "http://foapi/", 20); s[want] != 1 {
				return fmt.Errorf("answers %v; document %s", s, chains.Document())
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "the primary answers", answers("primary"))
	if pol := rules.Destinations()["foapi"]; assert.NotNil(t, pol.Balancer, "the resolver's load balancer") {
		assert.Equal(t, "least_request", string(pol.Balancer.Policy))
	}

	require.NoError(t, c.Agent().UpdateTTL(reg.CheckID(), "down", api.HealthCritical))
	eventually(t, 10*time.Second, "failed over", answers("backup"))
	require.NoError(t, c.Agent().UpdateTTL(reg.CheckID(), "up", api.HealthPassing))
	eventually(t, 10*time.Second, "failed back", answers("primary"))
	assert.False(t, chains.Status().Stale)
}
