package balancer_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
)

// backend is a real loopback HTTP server whose health endpoint the test switches.
type backend struct {
	srv     *httptest.Server
	healthy atomic.Bool
	checks  atomic.Int64
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.healthy.Store(true)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		b.checks.Add(1)
		if !b.healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// eventually polls cond every few milliseconds until it holds or the bounded wait ends.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestHealthCheck(t *testing.T) {
	b1, b2 := newBackend(t), newBackend(t)
	cfg := balancer.Config{
		Policy: balancer.PolicyRoundRobin,
		HealthCheck: &balancer.HealthCheck{
			Interval:           30 * time.Millisecond,
			Timeout:            20 * time.Millisecond,
			HealthyThreshold:   2,
			UnhealthyThreshold: 2,
		},
	}
	bal, err := balancer.New(cfg)
	require.NoError(t, err)
	defer bal.Close()
	bal.Update([]discovery.Endpoint{{Addr: b1.addr()}, {Addr: b2.addr()}})

	eventually(t, "first checks", func() bool { return b1.checks.Load() >= 2 && b2.checks.Load() >= 2 })
	assert.True(t, stats(bal, b1.addr()).Healthy)

	b1.healthy.Store(false)
	eventually(t, "b1 unhealthy", func() bool { return !stats(bal, b1.addr()).Healthy })
	got := pickN(t, bal, 100, time.Now())
	assert.Equal(t, map[string]int{b2.addr(): 100}, got, "unhealthy endpoint left out")

	b1.healthy.Store(true)
	eventually(t, "b1 healthy again", func() bool { return stats(bal, b1.addr()).Healthy })
	got = pickN(t, bal, 100, time.Now())
	assert.Equal(t, 50, got[b1.addr()], "%v", got)

	// Close waits for the checker's goroutines; goleak in TestMain verifies none is left.
	require.NoError(t, bal.Close())
	require.NoError(t, bal.Close(), "Close is idempotent")
}

func TestHealthCheckUnreachable(t *testing.T) {
	// A closed port: connection refused counts as a failed check.
	b := newBackend(t)
	addr := b.addr()
	b.srv.Close()
	live := newBackend(t)
	bal, err := balancer.New(balancer.Config{HealthCheck: &balancer.HealthCheck{
		Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond, UnhealthyThreshold: 1,
	}})
	require.NoError(t, err)
	defer bal.Close()
	bal.Update([]discovery.Endpoint{{Addr: addr}, {Addr: live.addr()}})
	eventually(t, "dead endpoint unhealthy", func() bool { return !stats(bal, addr).Healthy })
	assert.True(t, stats(bal, live.addr()).Healthy)
}

func TestNewDoesNotBlock(t *testing.T) {
	// A loopback listener that never accepts: connections complete in the kernel's backlog but
	// no answer ever comes, so a probe hangs until its timeout. New and Update return at once,
	// and Close cuts the hanging probe short.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	bal, err := balancer.New(balancer.Config{HealthCheck: &balancer.HealthCheck{Interval: time.Hour, Timeout: time.Minute}})
	require.NoError(t, err)
	start := time.Now()
	bal.Update([]discovery.Endpoint{{Addr: ln.Addr().String()}})
	p, err := bal.Pick(balancer.PickInfo{})
	require.NoError(t, err)
	p.Done(balancer.DoneInfo{})
	require.NoError(t, bal.Close())
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.True(t, stats(bal, ln.Addr().String()).Healthy, "a probe cut short by Close is not a failure")
}
