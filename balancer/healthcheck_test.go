package balancer_test

import (
	"context"
	"errors"
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
	misses  atomic.Int64 // requests for other paths, answered 404
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.healthy.Store(true)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			b.misses.Add(1)
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

// A TCP check marks an endpoint down when its port refuses connections, and up again when
// it listens anew.
func TestHealthCheckTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	var accepted atomic.Int64
	serve := func(l net.Listener) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}
	go serve(ln)
	other := newBackend(t)
	bal, err := balancer.New(balancer.Config{HealthCheck: &balancer.HealthCheck{
		Kind: "tcp", Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond,
		HealthyThreshold: 2, UnhealthyThreshold: 2,
	}})
	require.NoError(t, err)
	defer bal.Close()
	bal.Update([]discovery.Endpoint{{Addr: addr}, {Addr: other.addr()}})
	eventually(t, "connections accepted", func() bool { return accepted.Load() >= 2 })
	assert.True(t, stats(bal, addr).Healthy)
	assert.Zero(t, other.checks.Load(), "a TCP check sends no HTTP request")

	require.NoError(t, ln.Close())
	eventually(t, "down while refused", func() bool { return !stats(bal, addr).Healthy })
	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	defer ln.Close()
	go serve(ln)
	eventually(t, "up again", func() bool { return stats(bal, addr).Healthy })
}

// ExpectedStatuses decides which HTTP statuses pass: a 404 fails by default and passes when
// listed.
func TestHealthCheckExpectedStatuses(t *testing.T) {
	b := newBackend(t) // answers 404 on any path but /healthz
	check := func(ranges []balancer.StatusRange) *balancer.Balancer {
		bal, err := balancer.New(balancer.Config{HealthCheck: &balancer.HealthCheck{
			Path: "/missing", ExpectedStatuses: ranges,
			Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, UnhealthyThreshold: 1,
		}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = bal.Close() })
		bal.Update([]discovery.Endpoint{{Addr: b.addr()}})
		return bal
	}
	byDefault := check(nil)
	eventually(t, "404 fails by default", func() bool { return !stats(byDefault, b.addr()).Healthy })
	listed := check([]balancer.StatusRange{{Start: 200, End: 300}, {Start: 404, End: 405}})
	// The listed one has run as many rounds (each a 404, UnhealthyThreshold 1) and stays up.
	eventually(t, "both checkers probe", func() bool { return b.misses.Load() >= 12 })
	assert.True(t, stats(listed, b.addr()).Healthy)
}

func TestHealthCheckConfigErrors(t *testing.T) {
	for field, hc := range map[string]balancer.HealthCheck{
		"HealthCheck.Kind":                {Kind: "icmp"},
		"HealthCheck.ExpectedStatuses[1]": {ExpectedStatuses: []balancer.StatusRange{{Start: 200, End: 300}, {Start: 300, End: 300}}},
		"HealthCheck.ExpectedStatuses[0]": {ExpectedStatuses: []balancer.StatusRange{{Start: 99, End: 200}}},
	} {
		_, err := balancer.New(balancer.Config{HealthCheck: &hc})
		require.Error(t, err, field)
		assert.Contains(t, err.Error(), field)
	}
}

// countingProber is a prober of a custom kind: endpoints named in down fail.
type countingProber struct {
	probes atomic.Int64
	closed atomic.Bool
}

func (p *countingProber) Probe(_ context.Context, addr string) error {
	p.probes.Add(1)
	if strings.HasPrefix(addr, "down") {
		return errors.New("down")
	}
	return nil
}

func (p *countingProber) Close() error { p.closed.Store(true); return nil }

// A kind registered with RegisterProber is probed by its prober, which Close closes.
func TestRegisterProber(t *testing.T) {
	p := &countingProber{}
	balancer.RegisterProber("test-kind", func(balancer.HealthCheck) (balancer.Prober, error) { return p, nil })
	bal, err := balancer.New(balancer.Config{HealthCheck: &balancer.HealthCheck{
		Kind: "test-kind", Interval: 10 * time.Millisecond, Timeout: 5 * time.Millisecond, UnhealthyThreshold: 1,
	}})
	require.NoError(t, err)
	bal.Update([]discovery.Endpoint{{Addr: "down:1"}, {Addr: "up:1"}})
	eventually(t, "down:1 unhealthy", func() bool { return !stats(bal, "down:1").Healthy })
	assert.True(t, stats(bal, "up:1").Healthy)
	require.NoError(t, bal.Close())
	assert.True(t, p.closed.Load())
}
