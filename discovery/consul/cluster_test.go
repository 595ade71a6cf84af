package consul_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/internal/consultest"
	"github.com/proxyless/proxyless/middleware"
)

// TestCluster runs the cluster-scale checks on one three-server cluster with a client agent
// (starting one takes a few seconds): requests through a Transport survive the leader's death
// and the client agent's restart, and a fleet of watchers does not stampede after a blip.
func TestCluster(t *testing.T) {
	c := consultest.ClusterForTest(t)
	t.Run("LeaderLossUnderLoad", func(t *testing.T) { testLeaderLossUnderLoad(t, c) })
	t.Run("ClientAgentRestartUnderLoad", func(t *testing.T) { testClientRestartUnderLoad(t, c) })
	t.Run("FleetAfterAgentBlip", func(t *testing.T) { testFleetAfterBlip(t, c) })
}

// Load of the two tests under load: 500 requests a second for 8 s, 4,000 in all.
const (
	loadRate     = 500
	loadDuration = 8 * time.Second
	// changeWithin bounds the time from registering an instance to the balancer using it,
	// after an election or an agent restart.
	changeWithin = 2 * time.Second
)

// clusterConfig is a resolver configuration for the tests under load: RetryMax 1 s, so that
// a watcher that failed during an outage asks again within a second of the agent's return.
func clusterConfig(c *consultest.Cluster) consul.Config {
	return consul.Config{Address: c.Client.HTTPAddr, WaitTime: 30 * time.Second, RetryMin: 100 * time.Millisecond, RetryMax: time.Second}
}

// okBackend is a real loopback HTTP server standing for an instance of a service.
func okBackend(t *testing.T) (port int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// catalogRegister registers an instance on a node of its own (an external node: no agent, no
// serf health check), through the agent at addr.
func catalogRegister(t testing.TB, client *api.Client, service string, port int) {
	t.Helper()
	id := service + "-" + strconv.Itoa(port)
	_, err := client.Catalog().Register(&api.CatalogRegistration{
		Node: "node-" + id, Address: "127.0.0.1",
		Service: &api.AgentService{ID: id, Service: service, Address: "127.0.0.1", Port: port},
	}, nil)
	require.NoError(t, err)
}

// transport returns a Transport resolving through a resolver of cfg, both closed at cleanup.
func transport(t *testing.T, cfg consul.Config) (*middleware.Transport, *consul.Resolver) {
	t.Helper()
	r, err := consul.New(cfg)
	require.NoError(t, err)
	base := http.DefaultTransport.(*http.Transport).Clone()
	tr, err := middleware.NewTransport(base, middleware.WithResolver(r))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = tr.Close()
		base.CloseIdleConnections()
		_ = r.Close()
	})
	return tr, r
}

// load sends loadRate requests a second for loadDuration to http://service/ through each of
// trs in turn, at most 200 at once, and reports how many succeeded and the first failures.
type load struct {
	sent, ok atomic.Int64
	mu       sync.Mutex
	failures []string // guarded by mu; the first few
	done     chan struct{}
}

func startLoad(trs []*middleware.Transport, service string) *load {
	l := &load{done: make(chan struct{})}
	clients := make([]*http.Client, len(trs))
	for i, tr := range trs {
		clients[i] = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 200)
		start := time.Now()
		total := int(loadDuration.Seconds() * loadRate)
		for i := range total {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / loadRate)); d > 0 {
				time.Sleep(d) // the pacer: bounded by the loop's count
			}
			sem <- struct{}{}
			l.sent.Add(1)
			wg.Go(func() {
				defer func() { <-sem }()
				l.do(clients[i%len(clients)], service)
			})
		}
		wg.Wait()
	}()
	return l
}

func (l *load) do(c *http.Client, service string) {
	resp, err := c.Get("http://" + service + "/")
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
	}
	if err == nil {
		l.ok.Add(1)
		return
	}
	l.mu.Lock()
	if len(l.failures) < 5 {
		l.failures = append(l.failures, err.Error())
	}
	l.mu.Unlock()
}

func (l *load) check(t *testing.T) {
	t.Helper()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	total := int64(loadDuration.Seconds() * loadRate)
	assert.Equal(t, total, l.sent.Load(), "requests sent")
	assert.Equal(t, l.sent.Load(), l.ok.Load(), "requests lost; first failures: %v", l.failures)
}

// waitBalancer polls tr's balancer of service until it has addr, and returns how long that
// took from start; it fails the test after changeWithin.
func waitBalancer(t *testing.T, tr *middleware.Transport, service, addr string, start time.Time) time.Duration {
	t.Helper()
	for {
		for _, e := range tr.Endpoints(service) {
			if e.Addr == addr {
				return time.Since(start)
			}
		}
		if time.Since(start) > changeWithin {
			t.Fatalf("%s did not reach the balancer of %s within %v", addr, service, changeWithin)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testLeaderLossUnderLoad kills the leader while three Transports carry 500 requests a second
// between them: one with the defaults (the agent answers blocking queries from its streaming
// view), and two whose queries a server answers over RPC (Near set): with consistent reads,
// answered by the leader, and with stale reads, answered by any server.
func testLeaderLossUnderLoad(t *testing.T, c *consultest.Cluster) {
	const service = "leaderloss"
	api0, err := api.NewClient(&api.Config{Address: c.Client.HTTPAddr})
	require.NoError(t, err)
	for range 3 {
		catalogRegister(t, api0, service, okBackend(t))
	}
	cfg := clusterConfig(c)
	streaming, rStreaming := transport(t, cfg)
	cfg.Near = "_agent"
	consistent, rConsistent := transport(t, cfg)
	cfg.AllowStale = true
	stale, rStale := transport(t, cfg)
	trs := []*middleware.Transport{streaming, consistent, stale}

	l := startLoad(trs, service)
	defer l.check(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	time.Sleep(2 * time.Second) // load running, watches in their blocking queries
	old, err := c.KillLeader(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, old.Restart()) }) // after the load: the cluster of three again
	killed := time.Now()
	leader, err := c.WaitLeader(ctx)
	require.NoError(t, err)
	t.Logf("killed %s; %s elected after %v", old.Name(), leader.Name(), time.Since(killed).Round(time.Millisecond))

	port := okBackend(t)
	start := time.Now()
	catalogRegister(t, api0, service, port)
	for i, tr := range trs {
		d := waitBalancer(t, tr, service, addrOf(port), start)
		t.Logf("transport %d: the new instance reached the balancer %v after its registration began", i, d.Round(time.Millisecond))
	}
	for _, tc := range []struct {
		r       *consul.Resolver
		backend string
		stale   bool
	}{{rStreaming, "", false}, {rConsistent, api.QueryBackendBlockingQuery, false}, {rStale, api.QueryBackendBlockingQuery, true}} {
		ws := tc.r.Watches()
		require.Len(t, ws, 1)
		st := ws[0]
		t.Logf("watch %s: backend %s, stale reads %v, known leader %v, last contact %v, queries %d, errors %d",
			st.Service, st.Backend, st.AllowStale, st.KnownLeader, st.LastContact, st.Queries, st.Errors)
		assert.False(t, st.Stale, "the watch is stale after the election: %v", st.LastError)
		// Without Near the agent answers from its streaming view, unless its stream was to the
		// dead server and is not ready again: then it asks a server over RPC, as with Near.
		if tc.backend != "" {
			assert.Equal(t, tc.backend, st.Backend)
		}
		assert.Equal(t, tc.stale, st.AllowStale)
		if st.Backend == api.QueryBackendBlockingQuery {
			assert.True(t, st.KnownLeader, "the answer after the election came from a server without a leader")
		}
	}
}

// testClientRestartUnderLoad restarts the client agent, through which the watches run, under
// 500 requests a second.
func testClientRestartUnderLoad(t *testing.T, c *consultest.Cluster) {
	const service = "agentrestart"
	api0, err := api.NewClient(&api.Config{Address: c.Client.HTTPAddr})
	require.NoError(t, err)
	for range 3 {
		catalogRegister(t, api0, service, okBackend(t))
	}
	tr, r := transport(t, clusterConfig(c))
	l := startLoad([]*middleware.Transport{tr}, service)
	defer l.check(t)
	time.Sleep(2 * time.Second)
	require.NoError(t, c.Client.Stop())
	require.Eventually(t, func() bool {
		ws := r.Watches()
		return len(ws) == 1 && ws[0].Stale
	}, 5*time.Second, 5*time.Millisecond, "the watch did not notice the agent's death")
	time.Sleep(time.Second) // requests keep flowing on the last good set meanwhile
	require.NoError(t, c.Client.Restart())

	port := okBackend(t)
	start := time.Now()
	catalogRegister(t, api0, service, port)
	d := waitBalancer(t, tr, service, addrOf(port), start)
	t.Logf("after the restart, the new instance reached the balancer %v after its registration began", d.Round(time.Millisecond))
	ws := r.Watches()
	require.Len(t, ws, 1)
	assert.False(t, ws[0].Stale)
	assert.Positive(t, ws[0].Errors, "the outage went unseen")
}

// tap is a measuring tap, not a fake: a reverse proxy in front of the real agent that
// forwards every request unchanged and records when it arrived.
type tap struct {
	srv *httptest.Server
	tr  *http.Transport
	mu  sync.Mutex
	at  []time.Time // guarded by mu
}

func newTap(t *testing.T, target string) *tap {
	tp := &tap{tr: http.DefaultTransport.(*http.Transport).Clone()}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.Transport = tp.tr
	rp.ErrorLog = log.New(io.Discard, "", 0) // 502s while the agent is away are expected
	tp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		tp.at = append(tp.at, time.Now())
		tp.mu.Unlock()
		rp.ServeHTTP(w, r)

	}))
	t.Cleanup(func() { tp.srv.Close(); tp.tr.CloseIdleConnections() })
	return tp
}

// between returns the arrival times in [from, to).
func (tp *tap) between(from, to time.Time) []time.Time {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out []time.Time
	for _, a := range tp.at {
		if !a.Before(from) && a.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

// herdBound is the bound of Resolver's documentation: in the window T from the moment the
// agent goes away, a watcher sends at most K + 1 + ⌊T/WaitTime⌋ requests while its service
// does not change, K being the number of retries whose shortest possible delays fit in T.
func herdBound(retryMin, retryMax, waitTime, window time.Duration) int {
	k, sum := 0, time.Duration(0)
	for e := retryMin; ; e = min(2*e, retryMax) {
		if sum += e / 2; sum > window {
			break
		}
		k++
	}
	return k + 1 + int(window/waitTime)
}

// testFleetAfterBlip has 100 watchers, each of a resolver of its own (a fleet of 100
// processes), with the default configuration, follow 10 services through a tap in front of
// the client agent; the client agent is killed and restarted; the requests the fleet sends in
// the following 10 s are counted at the tap.
func testFleetAfterBlip(t *testing.T, c *consultest.Cluster) {
	const watchers, services, window = 100, 10, 10 * time.Second
	api0, err := api.NewClient(&api.Config{Address: c.Client.HTTPAddr})
	require.NoError(t, err)
	for i := range services {
		catalogRegister(t, api0, "fleet"+strconv.Itoa(i), 20000+i)
	}
	tp := newTap(t, c.Client.HTTPAddr)
	ws := make([]*consul.Watcher, watchers)
	for i := range ws {
		r, err := consul.New(consul.Config{Address: tp.srv.Listener.Addr().String()}) // defaults
		require.NoError(t, err)
		w, err := r.Watch(context.Background(), "fleet"+strconv.Itoa(i%services))
		require.NoError(t, err)
		ws[i] = w.(*consul.Watcher)
		t.Cleanup(func() { _ = w.Close(); _ = r.Close() })
	}
	for i, w := range ws {
		nextMatching(t, w, 10*time.Second, addrOf(20000+i%services))
	}
	time.Sleep(500 * time.Millisecond) // every watcher in its blocking query

	blip := time.Now()
	require.NoError(t, c.Client.Stop())
	time.Sleep(3 * time.Second) // long enough that retrying at a fixed pace would pass the bound
	require.NoError(t, c.Client.Restart())
	back := time.Now()
	t.Logf("the client agent was away for %v", back.Sub(blip).Round(time.Millisecond))
	time.Sleep(time.Until(blip.Add(window)))

	got := tp.between(blip, blip.Add(window))
	per := herdBound(250*time.Millisecond, 15*time.Second, 5*time.Minute, window)
	t.Logf("%d requests from %d watchers in the %v after the blip (bound %d a watcher, %d in all); per second: %v",
		len(got), watchers, window, per, per*watchers, histogram(got, blip, time.Second, int(window/time.Second)))
	assert.LessOrEqual(t, len(got), per*watchers, "the fleet stampeded")
	// The failures of the blip struck every watcher at once; their retries must not come back
	// together: no 50 ms holds nine tenths of the fleet (without jitter, all of it would).
	peak := slices.Max(histogram(got, blip, 50*time.Millisecond, int(window/(50*time.Millisecond))))
	t.Logf("at most %d requests in any 50 ms", peak)
	assert.LessOrEqual(t, peak, watchers*9/10, "the retries came back in a herd")
	// Every watcher asks again within RetryMax (15 s by default) of the agent's return.
	for _, w := range ws {
		require.Eventually(t, func() bool { return !w.WatchStatus().Stale }, time.Until(back.Add(17*time.Second)), 10*time.Millisecond,
			"%s: still failing after the agent's return: %v", w.WatchStatus().Service, w.WatchStatus().LastError)
		assert.Positive(t, w.WatchStatus().Errors, "the blip went unseen")
	}
	// Updates flow again to every watcher.
	for i := range services {
		catalogRegister(t, api0, "fleet"+strconv.Itoa(i), 21000+i)
	}
	for i, w := range ws {
		nextMatching(t, w, 5*time.Second, addrOf(20000+i%services), addrOf(21000+i%services))
	}
}

// histogram counts the times in n buckets of width d from start.
func histogram(ts []time.Time, start time.Time, d time.Duration, n int) []int {
	out := make([]int, n)
	for _, t := range ts {
		if i := int(t.Sub(start) / d); i >= 0 && i < n {
			out[i]++
		}
	}
	return out
}
