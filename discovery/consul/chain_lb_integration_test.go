package consul_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
)

// getWith sends a GET to url with one header set and returns the backend's label.
func (s *chainSetup) getWith(t *testing.T, url, name, value string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set(name, value)
	resp, err := s.tr.RoundTrip(req)
	require.NoError(t, err, url)
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, b)
	return string(b)
}

// TestChainHashPolicySticks: a service-resolver with a ring_hash load balancer and a header
// hash policy makes the destination's balancer hash that header: requests with the same
// value go to one of three real backends, different values spread over them.
func TestChainHashPolicySticks(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	for _, l := range []string{"a", "b", "c"} {
		startBackend(t, cfg, "sticky", l, nil)
	}
	httpDefaults(t, c, "sticky")
	setEntry(t, c, &api.ServiceResolverConfigEntry{
		Kind: api.ServiceResolver, Name: "sticky", ConnectTimeout: 2 * time.Second,
		LoadBalancer: &api.LoadBalancer{Policy: "ring_hash", HashPolicies: []api.HashPolicy{{Field: "header", FieldValue: "x-user"}}},
	})
	s := newChainSetup(t, cfg, []string{"sticky"})
	s.waitDoc(t, "the hash policy", func(d string) bool { return strings.Contains(d, `"hashPolicy":[{"header":"x-user"}]`) })
	pol := s.mcfg.Destinations()["sticky"]
	require.NotNil(t, pol.Balancer, "the resolver's load balancer")
	assert.Equal(t, balancer.PolicyRingHash, pol.Balancer.Policy)
	assert.Equal(t, []balancer.HashPolicy{{Header: "x-user"}}, pol.Balancer.HashPolicy)

	// Wait until the three instances are resolved: a request without the header has no key
	// and its pick is random.
	seen := map[string]bool{}
	for i := 0; i < 300 && len(seen) < 3; i++ {
		seen[s.get(t, "http://sticky/")] = true
	}
	require.Len(t, seen, 3, "all three backends answer: %v", seen)

	const users, per = 24, 25
	stuck, total := 0, 0
	chosen := map[string]int{}
	for u := range users {
		got := map[string]int{}
		for range per {
			got[s.getWith(t, "http://sticky/", "X-User", fmt.Sprintf("user-%d", u))]++
		}
		best, bestN := "", 0
		for l, n := range got {
			if n > bestN {
				best, bestN = l, n
			}
		}
		stuck += bestN
		total += per
		chosen[best]++
	}
	pct := 100 * float64(stuck) / float64(total)
	t.Logf("same key, same backend: %.2f%% of %d requests; users by backend %v", pct, total, chosen)
	assert.GreaterOrEqual(t, pct, 99.0, "requests with the same x-user stick to one backend")
	assert.GreaterOrEqual(t, len(chosen), 2, "different x-user values spread: %v", chosen)
}
