package connect

import (
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/route"
)

func TestParseSubsetFilter(t *testing.T) {
	cases := map[string]route.Subset{
		"":                              {},
		"Service.Meta.version == v1":    {Meta: map[string]string{"version": "v1"}},
		`Service.Meta.version == "v 2"`: {Meta: map[string]string{"version": "v 2"}},
		`"canary" in Service.Tags`:      {Tags: []string{"canary"}},
		`Service.Tags contains "b" and "a" in Service.Tags and Service.Meta.zone == z1`: {
			Tags: []string{"a", "b"}, Meta: map[string]string{"zone": "z1"}},
	}
	for in, want := range cases {
		got, err := ParseSubsetFilter(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{
		"Service.Meta.version != v1", "Service.Meta.version == v1 or Service.Meta.version == v2",
		"Node.Meta.rack == r1", `Service.Meta.v == "unterminated`, "Service.Meta.v == a and Service.Meta.v == b",
		string(make([]byte, 2000)),
	} {
		_, err := ParseSubsetFilter(bad)
		assert.Error(t, err, bad)
	}
}

func FuzzParseSubsetFilter(f *testing.F) {
	f.Add("Service.Meta.version == v1")
	f.Add(`"canary" in Service.Tags and Service.Meta.zone == "a\"b"`)
	f.Add(`Service.Tags contains "x"`)
	f.Fuzz(func(t *testing.T, s string) {
		sub, err := ParseSubsetFilter(s)
		if err != nil {
			return
		}
		if len(sub.Tags)+len(sub.Meta) > len(s) {
			t.Fatalf("%q gave more terms than bytes: %+v", s, sub)
		}
	})
}

func chain(nodes map[string]*api.DiscoveryGraphNode, targets map[string]*api.DiscoveryTarget, start string) *api.CompiledDiscoveryChain {
	return &api.CompiledDiscoveryChain{ServiceName: "api", Datacenter: "dc1", StartNode: start, Nodes: nodes, Targets: targets}
}

func TestCompileChain(t *testing.T) {
	targets := map[string]*api.DiscoveryTarget{
		"v1.api.default.dc1": {Service: "api", Datacenter: "dc1", Subset: api.ServiceResolverSubset{Filter: "Service.Meta.version == v1"}},
		"v2.api.default.dc1": {Service: "api", Datacenter: "dc1", Subset: api.ServiceResolverSubset{Filter: "Service.Meta.version == v2"}},
		"other.default.dc2":  {Service: "other", Datacenter: "dc2"},
	}
	nodes := map[string]*api.DiscoveryGraphNode{
		"router:api": {Type: "router", Routes: []*api.DiscoveryRoute{
			{Definition: &api.ServiceRoute{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/Admin", CaseInsensitive: true,
				Header: []api.ServiceRouteHTTPMatchHeader{{Name: "x-debug", Present: true, Invert: true}, {Name: "x-env", Suffix: ".prod"}}}},
				Destination: &api.ServiceRouteDestination{NumRetries: 3, RetryOnStatusCodes: []uint32{503}, RequestTimeout: 2e9}},
				NextNode: "resolver:v1"},
			{NextNode: "splitter:api"},
		}},
		"splitter:api":   {Type: "splitter", Splits: []*api.DiscoverySplit{{Weight: 90, NextNode: "resolver:v1"}, {Weight: 10, NextNode: "splitter:inner"}}},
		"splitter:inner": {Type: "splitter", Splits: []*api.DiscoverySplit{{Weight: 50, NextNode: "resolver:v1"}, {Weight: 50, NextNode: "resolver:v2"}}},
		"resolver:v1":    {Type: "resolver", Resolver: &api.DiscoveryResolver{Target: "v1.api.default.dc1"}},
		"resolver:v2":    {Type: "resolver", Resolver: &api.DiscoveryResolver{Target: "v2.api.default.dc1"}},
		"resolver:dc2":   {Type: "resolver", Resolver: &api.DiscoveryResolver{Target: "other.default.dc2"}},
	}
	routes, err := compileChain(chain(nodes, targets, "router:api"))
	require.NoError(t, err)
	require.Len(t, routes, 2)
	r0 := routes[0]
	assert.Equal(t, []string{"api"}, r0.Match.Hosts)
	assert.Equal(t, `(?i)/Admin.*`, r0.Match.Path.Regex)
	assert.True(t, r0.Match.Headers[0].Absent)
	assert.Equal(t, `.*\.prod`, r0.Match.Headers[1].Regex)
	assert.Equal(t, 3, r0.Retry.MaxRetries)
	assert.Equal(t, []int{503}, r0.Retry.Statuses)
	assert.Equal(t, "v1", r0.Destination.Subset.Meta["version"])
	arms := routes[1].Split
	require.Len(t, arms, 3)
	assert.Equal(t, []uint32{9000, 500, 500}, []uint32{arms[0].Weight, arms[1].Weight, arms[2].Weight})
	// Every route compiles into a table the route package accepts.
	_, err = route.Compile(route.Config{Routes: routes})
	require.NoError(t, err)

	for name, c := range map[string]*api.CompiledDiscoveryChain{
		"no start":      chain(nodes, targets, "nope"),
		"other dc":      chain(nodes, targets, "resolver:dc2"),
		"missing node":  chain(map[string]*api.DiscoveryGraphNode{"s": {Type: "splitter", Splits: []*api.DiscoverySplit{{Weight: 100, NextNode: "x"}}}}, targets, "s"),
		"loop":          chain(map[string]*api.DiscoveryGraphNode{"s": {Type: "splitter", Splits: []*api.DiscoverySplit{{Weight: 100, NextNode: "s"}}}}, targets, "s"),
		"bad filter":    chain(map[string]*api.DiscoveryGraphNode{"r": {Type: "resolver", Resolver: &api.DiscoveryResolver{Target: "t"}}}, map[string]*api.DiscoveryTarget{"t": {Service: "api", Subset: api.ServiceResolverSubset{Filter: "Node.Meta.x == y"}}}, "r"),
		"router inside": chain(map[string]*api.DiscoveryGraphNode{"s": {Type: "splitter", Splits: []*api.DiscoverySplit{{Weight: 100, NextNode: "router:api"}}}, "router:api": nodes["router:api"]}, targets, "s"),
		"empty":         nil,
	} {
		_, err := compileChain(c)
		assert.Error(t, err, name)
	}
	routes, err = compileChain(&api.CompiledDiscoveryChain{ServiceName: "api", Default: true})
	require.NoError(t, err)
	assert.Empty(t, routes, "a default chain adds no route")
}
