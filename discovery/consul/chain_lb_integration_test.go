package consul_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery/consul"
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
	assert.Equal(t, 2*time.Second, pol.ConnectTimeout, "the resolver's connect timeout")

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

// fullBacklog returns the loopback address of a listening socket that never accepts and whose
// accept queue is full, so that a new connection's handshake never completes; ok false when
// the kernel completes handshakes anyway.
func fullBacklog(t *testing.T) (addr string, port int, ok bool) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	port = sa.(*syscall.SockaddrInet4).Port
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for range 8 { // fill the queue: dials complete until it is full
		conn, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr, port, true
		}
		t.Cleanup(func() { _ = conn.Close() })
	}
	return addr, port, false
}

// TestChainConnectTimeoutApplied: the resolver's ConnectTimeout becomes the destination's
// connectTimeout, and bounds the dial of an instance whose handshake never completes (a
// loopback listener with a full accept queue): the request fails with a dial timeout well
// before the transport's own 5s timeout.
func TestChainConnectTimeoutApplied(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	c := apiClient(t, cfg)
	_, port, ok := fullBacklog(t)
	if !ok {
		// Linux leaves such handshakes incomplete; a machine that completes them cannot
		// show the dial timeout, and the test must say so rather than pass unseen.
		t.Fatal("the loopback listener's full accept queue still completed a handshake: no dial here can time out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg := consul.Registration{ID: "stuck-1", Name: "stuck", Address: "127.0.0.1", Port: port}
	deregister, err := consul.Register(ctx, cfg, reg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = deregister(context.Background()) })
	httpDefaults(t, c, "stuck")
	setEntry(t, c, &api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "stuck", ConnectTimeout: 150 * time.Millisecond})
	s := newChainSetup(t, cfg, []string{"stuck"})
	s.waitDoc(t, "the connect timeout", func(d string) bool { return strings.Contains(d, `"connectTimeout":"150ms"`) })
	assert.Equal(t, 150*time.Millisecond, s.mcfg.Destinations()["stuck"].ConnectTimeout)

	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://stuck/", nil)
	require.NoError(t, err)
	resp, err := s.tr.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
	}
	require.Error(t, err, "the dial never completes")
	assert.Contains(t, err.Error(), "i/o timeout", "a dial timeout, not the transport's 5s timeout: %v", err)
	assert.NotContains(t, err.Error(), "context deadline exceeded")
}
