package consul_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/internal/consultest"
)

// shared is one real Consul agent for the tests of this package that do not stop it.
var shared consultest.Shared

func TestMain(m *testing.M) { goleak.VerifyTestMain(shared.Wrap(m)) }

const ttl = 3 * time.Second

// register adds an instance of service at 127.0.0.1:port with a TTL check kept passing, and
// returns its registration and heartbeat.
func register(t *testing.T, cfg consul.Config, service string, port int, zone string) (consul.Registration, *consul.Heartbeat) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg := consul.Registration{
		Name: service, Address: "127.0.0.1", Port: port, Zone: zone, Tags: []string{"v1"},
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
		_ = deregister(ctx) // the agent may be gone already
	})
	return reg, hb
}

func agentConfig(a *consultest.Agent) consul.Config {
	return consul.Config{
		Address:  a.HTTPAddr,
		WaitTime: 10 * time.Second,
		RetryMin: 20 * time.Millisecond,
		RetryMax: 200 * time.Millisecond,
	}
}

// nextMatching calls Next until the set has exactly want (sorted addresses), within d.
func nextMatching(t *testing.T, w discovery.Watcher, d time.Duration, want ...string) []discovery.Endpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last []string
	for {
		eps, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %v (last %v): %v", want, last, err)
		}
		last = sortedAddrs(eps)
		if fmt.Sprint(last) == fmt.Sprint(want) {
			return eps
		}
	}
}

func sortedAddrs(eps []discovery.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Addr
	}
	sort.Strings(out)
	return out
}

func addrOf(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func TestAgentWatchFollowsHealth(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	register(t, cfg, "payments", 9001, "z1")
	reg2, hb2 := register(t, cfg, "payments", 9002, "z1")
	register(t, cfg, "payments", 9003, "z2")
	r, err := consul.New(cfg)
	require.NoError(t, err)
	w, err := r.Watch(context.Background(), "payments")
	require.NoError(t, err)
	defer w.Close()

	eps := nextMatching(t, w, 10*time.Second, addrOf(9001), addrOf(9002), addrOf(9003))
	zones := map[string]string{}
	for _, e := range eps {
		zones[e.Addr] = e.Zone
		assert.Equal(t, []string{"v1"}, e.Tags)
	}
	assert.Equal(t, map[string]string{addrOf(9001): "z1", addrOf(9002): "z1", addrOf(9003): "z2"}, zones)

	// One instance's check goes critical: the next answer of the blocking query drops it.
	require.NoError(t, hb2.Close())
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr})
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, client.Agent().UpdateTTL(reg2.CheckID(), "test", api.HealthCritical))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := w.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{addrOf(9001), addrOf(9003)}, sortedAddrs(got), "the first change is the drop")
	assert.Less(t, time.Since(start), 2*time.Second, "a blocking query returns on change, not at WaitTime")
	st := w.(discovery.StatusReporter).Status()
	assert.False(t, st.Stale)
}

func TestAgentCloseWithQueryInFlight(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	cfg.WaitTime = time.Minute
	register(t, cfg, "ledger", 9101, "")
	r, err := consul.New(cfg)
	require.NoError(t, err)
	w, err := r.Watch(context.Background(), "ledger")
	require.NoError(t, err)
	nextMatching(t, w, 10*time.Second, addrOf(9101))
	time.Sleep(100 * time.Millisecond) // let the loop enter its minute-long blocking query
	start := time.Now()
	require.NoError(t, w.Close())
	assert.Less(t, time.Since(start), 100*time.Millisecond)
}

func TestAgentOutageFailsStaticThenRecovers(t *testing.T) {
	a := consultest.ForTest(t) // this test stops its agent: not the shared one
	cfg := agentConfig(a)
	register(t, cfg, "orders", 9201, "")
	register(t, cfg, "orders", 9202, "")
	r, err := consul.New(cfg)
	require.NoError(t, err)
	w, err := r.Watch(context.Background(), "orders")
	require.NoError(t, err)
	defer w.Close()
	nextMatching(t, w, 10*time.Second, addrOf(9201), addrOf(9202))

	require.NoError(t, a.Stop())
	sr := w.(discovery.StatusReporter)
	require.Eventually(t, func() bool { return sr.Status().Stale }, 10*time.Second, 10*time.Millisecond)
	st := sr.Status()
	require.Error(t, st.LastError)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	eps, err := w.Next(ctx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "the last good set stays; got %v", eps)

	// The agent comes back empty (dev mode keeps nothing): new registrations flow again.
	require.NoError(t, a.Restart())
	register(t, cfg, "orders", 9203, "")
	nextMatching(t, w, 15*time.Second, addrOf(9203))
	assert.False(t, sr.Status().Stale)
}

func TestAgentRegisterDeregister(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deregister, err := consul.Register(ctx, cfg, consul.Registration{
		Name: "inventory", Address: "127.0.0.1", Port: 9301, Weight: 7, Meta: map[string]string{"version": "v2"},
	})
	require.NoError(t, err)
	r, err := consul.New(cfg)
	require.NoError(t, err)
	w, err := r.Watch(ctx, "inventory")
	require.NoError(t, err)
	defer w.Close()
	eps := nextMatching(t, w, 10*time.Second, addrOf(9301))
	assert.Equal(t, uint32(7), eps[0].Weight)
	assert.Equal(t, "v2", eps[0].Meta["version"])

	require.NoError(t, deregister(ctx))
	// The watcher believes the empty set after its confirming answers or grace period; here
	// the defaults (3 answers, 30 s) would be slow, so ask a watcher that believes at once.
	cfg.EmptyAnswers = 1
	r2, err := consul.New(cfg)
	require.NoError(t, err)
	w2, err := r2.Watch(ctx, "inventory")
	require.NoError(t, err)
	defer w2.Close()
	nextMatching(t, w2, 10*time.Second)
}

func TestRegisterRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		reg  consul.Registration
		want string
	}{
		{consul.Registration{Address: "127.0.0.1", Port: 1}, "Registration.Name"},
		{consul.Registration{Name: "a", Address: "not a host", Port: 1}, "Registration.Address"},
		{consul.Registration{Name: "a", Address: "127.0.0.1", Port: 0}, "Registration.Port"},
		{consul.Registration{Name: "a", Address: "127.0.0.1", Port: 1, Weight: -1}, "Registration.Weight"},
		{consul.Registration{Name: "a", Address: "127.0.0.1", Port: 1, Check: &consul.Check{}}, "exactly one"},
		{consul.Registration{Name: "a", Address: "127.0.0.1", Port: 1, Check: &consul.Check{TTL: time.Second, TCP: "127.0.0.1:1"}}, "exactly one"},
		{consul.Registration{Name: "a", Address: "127.0.0.1", Port: 1, Check: &consul.Check{TCP: "nope"}}, "Check.TCP"},
		{consul.Registration{Name: "a", Address: "127.0.0.1", Port: 1, Check: &consul.Check{HTTP: "http://127.0.0.1:1/", Interval: -1}}, "Check.Interval"},
	} {
		_, err := consul.Register(ctx, consul.Config{Address: "127.0.0.1:1"}, tc.reg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
	_, err := consul.KeepPassing(consul.Config{}, "", time.Second)
	require.Error(t, err)
	_, err = consul.KeepPassing(consul.Config{}, "service:x", 0)
	require.Error(t, err)
}

// connCounter is a loopback TCP relay in front of the agent that counts the connections open
// through it, so that a test sees the resolver's connections from the agent's side.
type connCounter struct {
	l    net.Listener
	open atomic.Int64
}

func newConnCounter(t *testing.T, target string) *connCounter {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &connCounter{l: l}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			c.open.Add(1)
			wg.Go(func() {
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
				<-done
				_ = in.Close()
				_ = out.Close()
				<-done
				c.open.Add(-1)
			})
		}
	})
	return c
}

// Close releases the resolver's connections to the agent, once its watchers are closed, and
// later watches are refused.
func TestAgentResolverCloseReleasesConnections(t *testing.T) {
	a := shared.Agent(t)
	cfg := agentConfig(a)
	register(t, cfg, "closing", 9101, "z1")
	relay := newConnCounter(t, a.HTTPAddr)
	cfg.Address = relay.l.Addr().String()
	r, err := consul.New(cfg)
	require.NoError(t, err)
	w, err := r.Watch(context.Background(), "closing")
	require.NoError(t, err)
	nextMatching(t, w, 10*time.Second, addrOf(9101))
	require.Positive(t, relay.open.Load(), "the watch holds a connection to the agent")
	require.NoError(t, w.Close())
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close is idempotent")
	assert.Eventually(t, func() bool { return relay.open.Load() == 0 }, 5*time.Second, 10*time.Millisecond,
		"connections still open: %d", relay.open.Load())
	_, err = r.Watch(context.Background(), "closing")
	assert.ErrorIs(t, err, discovery.ErrClosed)
}
