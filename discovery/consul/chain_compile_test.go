package consul_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

func TestParseSubsetFilter(t *testing.T) {
	good := []struct {
		in   string
		want route.Subset
	}{
		{"", route.Subset{}},
		{"Service.Meta.version == v1", route.Subset{Meta: map[string]string{"version": "v1"}}},
		{`Service.Meta.version == "v 2"`, route.Subset{Meta: map[string]string{"version": "v 2"}}},
		{`"v1" == Service.Meta.version`, route.Subset{Meta: map[string]string{"version": "v1"}}},
		{`"canary" in Service.Tags`, route.Subset{Tags: []string{"canary"}}},
		{`Service.Tags contains "canary"`, route.Subset{Tags: []string{"canary"}}},
		{"Service.Meta.version==v1 and \"blue\" in Service.Tags AND Service.Meta.zone == `a`",
			route.Subset{Meta: map[string]string{"version": "v1", "zone": "a"}, Tags: []string{"blue"}}},
		// Tags come sorted, each once, whatever the order of the clauses.
		{`Service.Tags contains "b" and "a" in Service.Tags and "b" in Service.Tags and Service.Meta.zone == z1`,
			route.Subset{Tags: []string{"a", "b"}, Meta: map[string]string{"zone": "z1"}}},
	}
	for _, tc := range good {
		got, err := consul.ParseSubsetFilter(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	bad := []string{
		"Service.Meta.version != v1",
		"Service.Meta.version == v1 or Service.Meta.version == v2",
		"not \"x\" in Service.Tags",
		"Node.Meta.rack == r1",
		"(Service.Meta.version == v1)",
		"Service.Meta.version matches \"v.*\"",
		"Service.Meta.version == v1 and",
		"Service.Meta.version ==",
		`"x" in Service.Meta`,
		`Service.Meta.v == "unterminated`,
		"Service.Meta.v == a and Service.Meta.v == b",
		"Service.Meta. == v1",
		string(make([]byte, 2000)),
		strings.Repeat(`"t" in Service.Tags and `, 200) + `"t" in Service.Tags`, // longer than 4096 bytes
	}
	for _, in := range bad {
		_, err := consul.ParseSubsetFilter(in)
		require.Error(t, err, in)
		assert.True(t, errors.Is(err, consul.ErrUnsupportedFilter), "%q: %v", in, err)
	}
}

// chainFixture is a router (/v2 to api, the rest to the splitter) over a splitter 90/10 of
// web's subsets, web's resolver failing over to web-dr.
func chainFixture() *api.CompiledDiscoveryChain {
	return &api.CompiledDiscoveryChain{
		ServiceName: "web", Datacenter: "dc1", Protocol: "http", StartNode: "router:web",
		Nodes: map[string]*api.DiscoveryGraphNode{
			"router:web": {Type: "router", Name: "web", Routes: []*api.DiscoveryRoute{
				{Definition: &api.ServiceRoute{
					Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{
						PathPrefix: "/v2", Methods: []string{"get"},
						Header:     []api.ServiceRouteHTTPMatchHeader{{Name: "x-env", Suffix: ".prod"}, {Name: "x-debug", Present: true, Invert: true}},
						QueryParam: []api.ServiceRouteHTTPMatchQueryParam{{Name: "beta", Exact: "1"}},
					}},
					Destination: &api.ServiceRouteDestination{Service: "api", PrefixRewrite: "/", RequestTimeout: 2 * time.Second, RetryOnConnectFailure: true, RetryOnStatusCodes: []uint32{503}},
				}, NextNode: "resolver:api"},
				{Definition: &api.ServiceRoute{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/"}}}, NextNode: "splitter:web"},
			}},
			"splitter:web": {Type: "splitter", Name: "web", Splits: []*api.DiscoverySplit{
				{Weight: 90, NextNode: "resolver:v1.web"}, {Weight: 10, NextNode: "resolver:v2.web"},
			}},
			"resolver:api": {Type: "resolver", Name: "api", Resolver: &api.DiscoveryResolver{Target: "api.dc1", ConnectTimeout: 5 * time.Second}},
			"resolver:v1.web": {Type: "resolver", Name: "v1.web",
				Resolver:     &api.DiscoveryResolver{Target: "v1.web.dc1", Failover: &api.DiscoveryFailover{Targets: []string{"web-dr.dc1"}}},
				LoadBalancer: &api.LoadBalancer{Policy: "ring_hash", HashPolicies: []api.HashPolicy{{Field: "header", FieldValue: "x-user"}}}},
			"resolver:v2.web": {Type: "resolver", Name: "v2.web", Resolver: &api.DiscoveryResolver{Target: "v2.web.dc1"}},
		},
		Targets: map[string]*api.DiscoveryTarget{
			"api.dc1":    {ID: "api.dc1", Service: "api", Datacenter: "dc1"},
			"v1.web.dc1": {ID: "v1.web.dc1", Service: "web", ServiceSubset: "v1", Datacenter: "dc1", Subset: api.ServiceResolverSubset{Filter: "Service.Meta.version == v1"}},
			"v2.web.dc1": {ID: "v2.web.dc1", Service: "web", ServiceSubset: "v2", Datacenter: "dc1", Subset: api.ServiceResolverSubset{Filter: `"v2" in Service.Tags`}},
			"web-dr.dc1": {ID: "web-dr.dc1", Service: "web-dr", Datacenter: "dc1"},
		},
	}
}

func TestCompileChain(t *testing.T) {
	rules, err := consul.CompileChain(chainFixture(), nil)
	require.NoError(t, err)
	_, err = route.Compile(route.Config{Routes: rules.Routes})
	require.NoError(t, err, "the routes compile")
	require.Len(t, rules.Routes, 2)

	r0 := rules.Routes[0]
	assert.Equal(t, []string{"web"}, r0.Match.Hosts)
	assert.Equal(t, &route.StringMatch{Prefix: "/v2"}, r0.Match.Path)
	assert.Equal(t, []string{"GET"}, r0.Match.Methods)
	assert.Equal(t, []route.HeaderMatch{{Name: "x-env", Regex: `.*\.prod`}, {Name: "x-debug", Absent: true}}, r0.Match.Headers)
	assert.Equal(t, []route.QueryMatch{{Name: "beta", Exact: "1"}}, r0.Match.Query)
	assert.Equal(t, &route.Destination{Service: "api"}, r0.Destination)
	assert.Equal(t, route.Duration(2*time.Second), r0.Timeout)
	assert.Equal(t, &route.RetryOverride{MaxRetries: 1, Statuses: []int{503}}, r0.Retry)
	assert.Equal(t, &route.Rewrite{Prefix: "/"}, r0.Rewrite)

	r1 := rules.Routes[1]
	require.Len(t, r1.Split, 2)
	assert.Equal(t, uint32(9000), r1.Split[0].Weight)
	assert.Equal(t, route.Destination{Service: "web", Subset: route.Subset{Meta: map[string]string{"version": "v1"}}}, r1.Split[0].Destination)
	assert.Equal(t, route.Destination{Service: "web", Subset: route.Subset{Tags: []string{"v2"}}}, r1.Split[1].Destination)

	assert.Equal(t, map[string]balancer.Config{"web": {Policy: balancer.PolicyRingHash, HashPolicy: []balancer.HashPolicy{{Header: "x-user"}}}}, rules.Balancers)
	assert.Equal(t, map[string]time.Duration{"api": 5 * time.Second}, rules.ConnectTimeouts)
	assert.Equal(t, []string{"web", "web-dr"}, rules.Failover)
	assert.Empty(t, rules.Warnings, "ring_hash and its header hash policy are applied")
}

func TestCompileChainFailover(t *testing.T) {
	downSet := map[string]bool{}
	down := func(svc string, s route.Subset) bool { return downSet[svc+"|"+s.Key()] }
	split := func() route.Destination {
		rules, err := consul.CompileChain(chainFixture(), down)
		require.NoError(t, err)
		return rules.Routes[1].Split[0].Destination
	}
	assert.Equal(t, "web", split().Service)
	downSet["web|meta=version=v1"] = true
	assert.Equal(t, route.Destination{Service: "web-dr"}, split(), "the primary subset is down")
	downSet["web-dr|"] = true
	assert.Equal(t, "web", split().Service, "everything down: stay on the primary")
}

func TestCompileChainRefusals(t *testing.T) {
	cases := map[string]struct {
		edit  func(c *api.CompiledDiscoveryChain)
		where string
	}{
		"unsupported filter": {func(c *api.CompiledDiscoveryChain) {
			c.Targets["v1.web.dc1"].Subset.Filter = "Service.Meta.version != v2"
		}, `target "v1.web.dc1" subset "v1" filter`},
		"other datacenter": {func(c *api.CompiledDiscoveryChain) { c.Targets["api.dc1"].Datacenter = "dc2" }, `target "api.dc1"`},
		"missing node":     {func(c *api.CompiledDiscoveryChain) { delete(c.Nodes, "splitter:web") }, `node "router:web" routes[1].nextNode`},
		"missing target":   {func(c *api.CompiledDiscoveryChain) { delete(c.Targets, "web-dr.dc1") }, `failover.targets[0]`},
		"inverted exact": {func(c *api.CompiledDiscoveryChain) {
			c.Nodes["router:web"].Routes[0].Definition.Match.HTTP.Header[1] = api.ServiceRouteHTTPMatchHeader{Name: "a", Exact: "b", Invert: true}
		}, `routes[0].match.http.header[1]`},
		"rewrite without prefix": {func(c *api.CompiledDiscoveryChain) {
			m := c.Nodes["router:web"].Routes[0].Definition.Match.HTTP
			m.PathPrefix, m.PathExact = "", "/v2"
		}, `routes[0].destination.prefixRewrite`},
		"unknown balancer": {func(c *api.CompiledDiscoveryChain) {
			c.Nodes["resolver:v1.web"].LoadBalancer.Policy = "fastest"
		}, `loadBalancer.policy`},
		"bad weight": {func(c *api.CompiledDiscoveryChain) { c.Nodes["splitter:web"].Splits[0].Weight = 101 }, `splits[0]`},
		"no start":   {func(c *api.CompiledDiscoveryChain) { c.StartNode = "" }, `startNode`},
		"bad name":   {func(c *api.CompiledDiscoveryChain) { c.Targets["api.dc1"].Service = "a/b" }, `service`},
		"bad regex": {func(c *api.CompiledDiscoveryChain) {
			c.Nodes["router:web"].Routes[0].Definition.Match.HTTP.QueryParam[0] = api.ServiceRouteHTTPMatchQueryParam{Name: "q", Regex: "("}
		}, `routes`},
		"other namespace": {func(c *api.CompiledDiscoveryChain) { c.Targets["api.dc1"].Namespace = "team-a" }, `target "api.dc1"`},
		"external target": {func(c *api.CompiledDiscoveryChain) { c.Targets["api.dc1"].External = true }, `target "api.dc1"`},
		"splitter loop": {func(c *api.CompiledDiscoveryChain) {
			c.Nodes["splitter:web"].Splits[1].NextNode = "splitter:web"
		}, `node "splitter:web"`},
		"router in a splitter": {func(c *api.CompiledDiscoveryChain) {
			c.Nodes["splitter:web"].Splits[1].NextNode = "router:web"
		}, `node "splitter:web" splits[1]`},
		"splitters fanning out": {func(c *api.CompiledDiscoveryChain) {
			// 64 splits of 64 splits of ...: refused at once, not after 64^8 steps.
			for i := range 8 {
				n := &api.DiscoveryGraphNode{Type: "splitter"}
				for range 64 {
					n.Splits = append(n.Splits, &api.DiscoverySplit{Weight: 1, NextNode: fmt.Sprintf("splitter:%d", i+1)})
				}
				c.Nodes[fmt.Sprintf("splitter:%d", i)] = n
			}
			c.Nodes["splitter:web"].Splits[1].NextNode = "splitter:0"
		}, `node "splitter:`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := chainFixture()
			tc.edit(c)
			_, err := consul.CompileChain(c, nil)
			var ce *consul.ChainError
			require.True(t, errors.As(err, &ce), "%v", err)
			assert.Equal(t, "web", ce.Service)
			assert.Contains(t, ce.Where, tc.where)
			assert.Contains(t, err.Error(), "consul: discovery chain web: ")
		})
	}
	_, err := consul.CompileChain(nil, nil)
	require.Error(t, err)
}

// Splitters of splitters multiply their weights out; a case-insensitive prefix becomes a
// case-insensitive regular expression; a router's retry count is kept.
func TestCompileChainNestedSplitsAndMatches(t *testing.T) {
	c := &api.CompiledDiscoveryChain{
		ServiceName: "api", Datacenter: "dc1", StartNode: "router:api",
		Nodes: map[string]*api.DiscoveryGraphNode{
			"router:api": {Type: "router", Routes: []*api.DiscoveryRoute{
				{Definition: &api.ServiceRoute{
					Match:       &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/Admin", CaseInsensitive: true}},
					Destination: &api.ServiceRouteDestination{NumRetries: 3, RetryOnStatusCodes: []uint32{503}},
				}, NextNode: "resolver:v1"},
				{Definition: &api.ServiceRoute{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/"}}}, NextNode: "splitter:api"},
			}},
			"splitter:api":   {Type: "splitter", Splits: []*api.DiscoverySplit{{Weight: 90, NextNode: "resolver:v1"}, {Weight: 10, NextNode: "splitter:inner"}}},
			"splitter:inner": {Type: "splitter", Splits: []*api.DiscoverySplit{{Weight: 50, NextNode: "resolver:v1"}, {Weight: 50, NextNode: "resolver:v2"}}},
			"resolver:v1":    {Type: "resolver", Resolver: &api.DiscoveryResolver{Target: "v1.api.default.dc1"}},
			"resolver:v2":    {Type: "resolver", Resolver: &api.DiscoveryResolver{Target: "v2.api.default.dc1"}},
		},
		Targets: map[string]*api.DiscoveryTarget{
			"v1.api.default.dc1": {Service: "api", Namespace: "default", Datacenter: "dc1", Subset: api.ServiceResolverSubset{Filter: "Service.Meta.version == v1"}},
			"v2.api.default.dc1": {Service: "api", Namespace: "default", Datacenter: "dc1", Subset: api.ServiceResolverSubset{Filter: "Service.Meta.version == v2"}},
		},
	}
	rules, err := consul.CompileChain(c, nil)
	require.NoError(t, err)
	require.Len(t, rules.Routes, 2)
	r0 := rules.Routes[0]
	assert.Equal(t, &route.StringMatch{Regex: `(?i)/Admin.*`}, r0.Match.Path)
	assert.Equal(t, &route.RetryOverride{MaxRetries: 3, Statuses: []int{503}}, r0.Retry)
	assert.Equal(t, "v1", r0.Destination.Subset.Meta["version"])
	arms := rules.Routes[1].Split
	require.Len(t, arms, 3)
	assert.Equal(t, []uint32{9000, 500, 500}, []uint32{arms[0].Weight, arms[1].Weight, arms[2].Weight})
	assert.Equal(t, []string{"v1", "v1", "v2"}, []string{arms[0].Subset.Meta["version"], arms[1].Subset.Meta["version"], arms[2].Subset.Meta["version"]})
	tbl, err := route.Compile(route.Config{Routes: rules.Routes})
	require.NoError(t, err)
	req := route.FromHTTP(httptest.NewRequest(http.MethodGet, "http://api/aDmIn/users", nil))
	if r := tbl.Match(&req); assert.NotNil(t, r) {
		assert.Equal(t, "consul:api:routes[0]", r.Name(), "case-insensitive prefix")
	}
}

// A default chain (Consul's defaults, no router, splitter or resolver entry) adds no route:
// requests to the service keep what the local configuration says.
func TestCompileDefaultChain(t *testing.T) {
	rules, err := consul.CompileChain(&api.CompiledDiscoveryChain{
		ServiceName: "api", Datacenter: "dc1", Default: true, StartNode: "resolver:api",
		Nodes: map[string]*api.DiscoveryGraphNode{"resolver:api": {Type: "resolver",
			Resolver: &api.DiscoveryResolver{Default: true, Target: "api.default.dc1", ConnectTimeout: 5 * time.Second}}},
		Targets: map[string]*api.DiscoveryTarget{"api.default.dc1": {Service: "api", Datacenter: "dc1"}},
	}, nil)
	require.NoError(t, err)
	assert.Equal(t, "api", rules.Service)
	assert.Empty(t, rules.Routes)
	assert.Empty(t, rules.Balancers)
	_, err = consul.CompileChain(&api.CompiledDiscoveryChain{ServiceName: "", Default: true}, nil)
	assert.Error(t, err, "a default chain still names its service")
}

// FuzzCompileChain feeds arbitrary chain answers through the compiler: it must never panic,
// and the routes of every chain it accepts must compile.
func FuzzCompileChain(f *testing.F) {
	seed, _ := json.Marshal(api.DiscoveryChainResponse{Chain: chainFixture()})
	f.Add(seed)
	f.Add([]byte(`{"Chain":{"ServiceName":"a","StartNode":"r","Nodes":{"r":{"Type":"resolver","Resolver":{"Target":"t","RequestTimeout":5}}},"Targets":{"t":{"Service":"a"}}}}`))
	f.Add([]byte(`{"Chain":{"ServiceName":"a","StartNode":"s","Nodes":{"s":{"Type":"splitter","Splits":[{"Weight":50,"NextNode":"s"}]}}}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := consul.CompileChainAnswer(data, func(string, route.Subset) bool { return true })
		if err != nil {
			var ce *consul.ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ChainError", err)
			}
			return
		}
		var c api.DiscoveryChainResponse
		if err := json.Unmarshal(data, &c); err != nil || c.Chain == nil {
			t.Fatalf("accepted an answer that does not decode to a chain: %v", err)
		}
		if _, err := route.Compile(route.Config{Routes: rules.Routes}); err != nil {
			t.Fatalf("accepted a chain whose routes do not compile: %v", err)
		}
		for _, r := range rules.Routes {
			if len(r.Match.Hosts) != 1 || r.Match.Hosts[0] != c.Chain.ServiceName {
				t.Fatalf("route %q matches hosts %v, want only %q", r.Name, r.Match.Hosts, c.Chain.ServiceName)
			}
		}
	})
}

// FuzzParseSubsetFilter: never panics; what it accepts selects by tags and meta only.
func FuzzParseSubsetFilter(f *testing.F) {
	for _, s := range []string{"", "Service.Meta.version == v1", `"a" in Service.Tags and Service.Tags contains "b"`, `Service.Meta.x == "\"q\""`, "a != b", "((", "`raw` == Service.Meta.k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sub, err := consul.ParseSubsetFilter(s)
		if err != nil {
			if !errors.Is(err, consul.ErrUnsupportedFilter) {
				t.Fatalf("%q: error %v does not match ErrUnsupportedFilter", s, err)
			}
			return
		}
		if len(sub.Tags)+len(sub.Meta) > len(s) {
			t.Fatalf("%q gave more terms than bytes: %+v", s, sub)
		}
		if !slices.IsSorted(sub.Tags) || len(slices.Compact(slices.Clone(sub.Tags))) != len(sub.Tags) {
			t.Fatalf("%q: tags not sorted and unique: %v", s, sub.Tags)
		}
		_ = sub.Key()
	})
}

func TestChainAnswerDecoding(t *testing.T) {
	c := chainFixture()
	c.StartNode = "resolver:api"
	raw, err := json.Marshal(api.DiscoveryChainResponse{Chain: c})
	require.NoError(t, err)
	// Consul 1.14 writes the resolver's request timeout in nanoseconds; the api types drop it.
	withTimeout := strings.Replace(string(raw), `"Target":"api.dc1"`, `"Target":"api.dc1","RequestTimeout":1500000000`, 1)
	require.NotEqual(t, string(raw), withTimeout)
	rules, err := consul.CompileChainAnswer([]byte(withTimeout), nil)
	require.NoError(t, err)
	assert.Equal(t, route.Duration(1500*time.Millisecond), rules.Routes[0].Timeout)
	rules, err = consul.CompileChainAnswer([]byte(strings.Replace(withTimeout, "1500000000", `"2s"`, 1)), nil)
	require.NoError(t, err)
	assert.Equal(t, route.Duration(2*time.Second), rules.Routes[0].Timeout)

	for _, bad := range []string{`{`, `{"Chain":{"ServiceName":"web","StartNode":"n","Nodes":{"n":{"Type":"resolver","Resolver":{"RequestTimeout":"soon"}}}}}`, `[]`} {
		_, err := consul.CompileChainAnswer([]byte(bad), nil)
		var ce *consul.ChainError
		assert.True(t, errors.As(err, &ce), "%s: %v", bad, err)
	}
}

func TestWatchChainsArguments(t *testing.T) {
	target, err := middleware.NewConfig(middleware.Document{})
	require.NoError(t, err)
	cfg := consul.Config{Address: "127.0.0.1:1"}
	cases := map[string]struct {
		services []string
		target   consul.ChainTarget
		opts     []consul.ChainOption
		want     string
	}{
		"nil target":       {[]string{"web"}, nil, nil, "nil target"},
		"no services":      {nil, target, nil, "no services"},
		"bad name":         {[]string{"web", "a/b"}, target, nil, "services[1]"},
		"twice":            {[]string{"web", "web"}, target, nil, "named twice"},
		"local syntax":     {[]string{"web"}, target, []consul.ChainOption{consul.WithLocalDocument([]byte("routes: [\n"))}, "WithLocalDocument"},
		"local route":      {[]string{"web"}, target, []consul.ChainOption{consul.WithLocalDocument([]byte("routes:\n  - match: {path: {regex: '('}}\n"))}, "routes[0].match.path.regex"},
		"local unknown":    {[]string{"web"}, target, []consul.ChainOption{consul.WithLocalDocument([]byte("routez: []\n"))}, "routez"},
		"local dest shape": {[]string{"web"}, target, []consul.ChainOption{consul.WithLocalDocument([]byte("destinations: [1]\n"))}, "destinations: want a mapping"},
		"bad address":      {[]string{"web"}, target, nil, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := cfg
			if name == "bad address" {
				c.Address = "ftp://x:1"
				tc.want = "unknown scheme"
			}
			w, err := consul.WatchChains(c, tc.services, tc.target, tc.opts...)
			if w != nil {
				_ = w.Close()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
