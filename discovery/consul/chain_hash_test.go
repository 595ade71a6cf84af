package consul_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery/consul"
)

// lbChain is the fixture's chain with the v1.web resolver's load balancer replaced.
func lbChain(lb *api.LoadBalancer) *api.CompiledDiscoveryChain {
	c := chainFixture()
	c.Nodes["resolver:v1.web"].LoadBalancer = lb
	return c
}

// TestCompileChainHashPolicies: the resolver's hash policies become the destination's
// balancer HashPolicy, in order, with Terminal kept; ring_hash is ring_hash with its sizes.
func TestCompileChainHashPolicies(t *testing.T) {
	rules, err := consul.CompileChain(lbChain(&api.LoadBalancer{
		Policy:         "ring_hash",
		RingHashConfig: &api.RingHashConfig{MinimumRingSize: 2048, MaximumRingSize: 8192},
		HashPolicies: []api.HashPolicy{
			{Field: "header", FieldValue: "x-user", Terminal: true},
			{Field: "cookie", FieldValue: "sid"},
			{Field: "query_parameter", FieldValue: "tenant"},
			{SourceIP: true},
		},
	}), nil)
	require.NoError(t, err)
	want := balancer.Config{
		Policy:   balancer.PolicyRingHash,
		RingHash: balancer.RingHashConfig{MinimumRingSize: 2048, MaximumRingSize: 8192},
		HashPolicy: []balancer.HashPolicy{
			{Header: "x-user", Terminal: true}, {Cookie: "sid"}, {QueryParameter: "tenant"}, {SourceIP: true},
		},
	}
	assert.Equal(t, want, rules.Balancers["web"])
	assert.Empty(t, rules.Warnings)
	_, err = balancer.New(rules.Balancers["web"])
	require.NoError(t, err, "the balancer config is valid")

	rules, err = consul.CompileChain(lbChain(&api.LoadBalancer{Policy: "maglev", HashPolicies: []api.HashPolicy{{Field: "header", FieldValue: "x-a"}}}), nil)
	require.NoError(t, err)
	assert.Equal(t, balancer.Config{Policy: balancer.PolicyMaglev, HashPolicy: []balancer.HashPolicy{{Header: "x-a"}}}, rules.Balancers["web"])
}

// TestCompileChainCookieConfigWarned: a cookie policy whose cookieConfig asks for a generated
// cookie (ttl, path) hashes the cookie by name and says the rest is not applied.
func TestCompileChainCookieConfigWarned(t *testing.T) {
	rules, err := consul.CompileChain(lbChain(&api.LoadBalancer{Policy: "maglev", HashPolicies: []api.HashPolicy{
		{Field: "cookie", FieldValue: "route", CookieConfig: &api.CookieConfig{TTL: time.Minute, Path: "/app"}},
	}}), nil)
	require.NoError(t, err)
	assert.Equal(t, []balancer.HashPolicy{{Cookie: "route"}}, rules.Balancers["web"].HashPolicy)
	require.Len(t, rules.Warnings, 1)
	assert.Contains(t, rules.Warnings[0], `hashPolicies[0]: cookie "route"`)
	assert.Contains(t, rules.Warnings[0], "not applied")
}

// TestCompileChainHashPolicyRefused: a malformed hash policy is a ChainError naming it; hash
// policies under a policy that reads no key are warned about, not applied.
func TestCompileChainHashPolicyRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		hp   []api.HashPolicy
		want string
	}{
		"unknown field":   {[]api.HashPolicy{{Field: "body", FieldValue: "x"}}, `hashPolicies[0]: unknown field "body"`},
		"no value":        {[]api.HashPolicy{{Field: "header"}}, `hashPolicies[0]: field "header" without fieldValue`},
		"source and name": {[]api.HashPolicy{{Field: "header", FieldValue: "x"}, {SourceIP: true, Field: "header"}}, `hashPolicies[1]: sourceIP with field "header"`},
		"bad header":      {[]api.HashPolicy{{Field: "header", FieldValue: "x y"}}, `hashPolicies[0]: header: "x y" is not a valid name`},
		"too many":        {make([]api.HashPolicy, balancer.MaxHashPolicies+1), "9 policies, more than 8"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := consul.CompileChain(lbChain(&api.LoadBalancer{Policy: "ring_hash", HashPolicies: tc.hp}), nil)
			var ce *consul.ChainError
			require.True(t, errors.As(err, &ce), "%v", err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := consul.CompileChain(lbChain(&api.LoadBalancer{Policy: "ring_hash", RingHashConfig: &api.RingHashConfig{MaximumRingSize: 1 << 40}}), nil)
	assert.ErrorContains(t, err, "ringHashConfig")

	rules, err := consul.CompileChain(lbChain(&api.LoadBalancer{Policy: "least_request", HashPolicies: []api.HashPolicy{{Field: "header", FieldValue: "x"}}}), nil)
	require.NoError(t, err)
	assert.Equal(t, balancer.Config{Policy: balancer.PolicyLeastRequest}, rules.Balancers["web"])
	require.Len(t, rules.Warnings, 1)
	assert.Contains(t, rules.Warnings[0], "reads no key")
}
