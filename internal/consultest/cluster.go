package consultest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/proxyless/proxyless/internal/testenv"
)

// ClusterServers is the number of servers of a [Cluster].
const ClusterServers = 3

// LeaderTimeout bounds how long [Cluster.WaitLeader] waits for an election.
const LeaderTimeout = 30 * time.Second

// clusterHCL is the configuration every cluster member shares: raft timings at their
// shortest (raft_multiplier 1: a follower starts an election after 1 to 2 s without a
// heartbeat), and room for as many concurrent blocking queries from one address as the
// scale tests open (Consul's default http_max_conns_per_client is 200).
var clusterHCL = []string{
	"disable_update_check = true",
	"performance { raft_multiplier = 1 }",
	"limits { http_max_conns_per_client = 16384 }",
}

// member is what makes an Agent a cluster member rather than a dev agent.
type member struct {
	name    string
	server  bool
	dataDir string
	join    []string // serf LAN addresses of the servers
}

func (m *member) args(p ports) []string {
	args := []string{
		"agent",
		"-node", m.name,
		"-data-dir", m.dataDir,
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-http-port", strconv.Itoa(p.http),
		"-dns-port", "-1",
		"-serf-lan-port", strconv.Itoa(p.serfLAN),
		"-serf-wan-port", "-1",
		"-grpc-port", "-1",
		"-grpc-tls-port", "-1",
		"-retry-interval", "500ms",
		"-log-level", "info",
	}
	if m.server {
		args = append(args, "-server", "-bootstrap-expect", strconv.Itoa(ClusterServers),
			"-server-port", strconv.Itoa(p.server))
	}
	for _, j := range m.join {
		args = append(args, "-retry-join", j)
	}
	for _, h := range clusterHCL {
		args = append(args, "-hcl", h)
	}
	return args
}

// Cluster is a Consul cluster on loopback: three servers (bootstrap-expect 3, raft on disk in
// data directories of their own) and one client agent that joined them. Applications talk to
// the client agent, as they do in production; the servers' HTTP APIs are there for checks.
//
// Create one with [StartCluster] or [ClusterForTest]; the zero value is not usable. The
// exported fields never change. Stopping or restarting a member keeps its data directory, so
// a restarted server rejoins with its raft log and a restarted client agent with its node ID.
// Close ends every process and removes the data directories.
type Cluster struct {
	// Servers are the three server agents, in the order they were started.
	Servers []*Agent
	// Client is the client agent, the one applications use (its HTTPAddr).
	Client *Agent

	dir string // the data directories' parent; removed by Close
}

// StartCluster starts three servers and a client agent from the binary bin on free loopback
// ports, and waits (at most [ReadyTimeout] for the servers, as long again for the client)
// until the servers have elected a leader and the client agent has joined and registered
// its node. On failure every process is gone and the error includes the end of the failing
// agent's output. Call Close when done.
func StartCluster(bin string) (*Cluster, error) {
	var errs []error
	for range startAttempts {
		c, err := startCluster(bin)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		var exited *exitedError
		if !errors.As(err, &exited) {
			break // not a port clash
		}
	}
	return nil, errors.Join(errs...)
}

func startCluster(bin string) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "consultest-cluster-")
	if err != nil {
		return nil, fmt.Errorf("consultest: %w", err)
	}
	c := &Cluster{dir: dir}
	// Per server: HTTP, serf LAN, server RPC; the client: HTTP, serf LAN.
	p, err := testenv.FreePorts(3*ClusterServers + 2)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("consultest: %w", err)
	}
	var join []string
	for i := range ClusterServers {
		join = append(join, addr(p[3*i+1]))
	}
	newMember := func(name string, server bool, pt ports) *Agent {
		return &Agent{
			HTTPAddr: addr(pt.http), bin: bin, ports: pt, logs: &logBuffer{max: maxLogBytes},
			member: &member{name: name, server: server, dataDir: filepath.Join(dir, name), join: join},
		}
	}
	for i := range ClusterServers {
		pt := ports{http: p[3*i], serfLAN: p[3*i+1], server: p[3*i+2]}
		c.Servers = append(c.Servers, newMember("server-"+strconv.Itoa(i+1), true, pt))
	}
	n := 3 * ClusterServers
	c.Client = newMember("client-1", false, ports{http: p[n], serfLAN: p[n+1]})

	// The servers elect a leader only once all three run: start them together.
	errs := make([]error, ClusterServers)
	var wg sync.WaitGroup
	for i, s := range c.Servers {
		wg.Go(func() {
			if err := s.start(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.member.name, err)
			}
		})
	}
	wg.Wait()
	err = errors.Join(errs...)
	if err == nil {
		if err = c.Client.start(); err != nil {
			err = fmt.Errorf("%s: %w", c.Client.member.name, err)
		}
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Close ends every member (idempotent, like Agent.Close) and removes the data directories.
func (c *Cluster) Close() error {
	var errs []error
	for _, a := range c.members() {
		errs = append(errs, a.Close())
	}
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}

func (c *Cluster) members() []*Agent { return append(append([]*Agent(nil), c.Servers...), c.Client) }

// Leader returns the server that is the raft leader, as the client agent sees it
// (/v1/status/leader, which names the leader's server RPC address), or an error when there
// is none or the client agent cannot tell.
func (c *Cluster) Leader(ctx context.Context) (*Agent, error) {
	return c.leaderVia(ctx, c.Client)
}

func (c *Cluster) leaderVia(ctx context.Context, via *Agent) (*Agent, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, Timeout: 2 * time.Second}
	var leader string
	if err := getJSON(ctx, client, "http://"+via.HTTPAddr+"/v1/status/leader", &leader); err != nil {
		return nil, fmt.Errorf("consultest: leader: %w", err)
	}
	for _, s := range c.Servers {
		if leader == addr(s.ports.server) {
			return s, nil
		}
	}
	if leader == "" {
		return nil, errors.New("consultest: no leader")
	}
	return nil, fmt.Errorf("consultest: leader %q is not a server of the cluster", leader)
}

// WaitLeader polls every running server until all of them and the client agent name the
// same leader, and that leader is running, and returns it. It waits at most [LeaderTimeout]
// (or until ctx is done).
func (c *Cluster) WaitLeader(ctx context.Context) (*Agent, error) {
	ctx, cancel := context.WithTimeout(ctx, LeaderTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		l, err := c.agreedLeader(ctx)
		if err == nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("consultest: no agreed leader: %w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func (c *Cluster) agreedLeader(ctx context.Context) (*Agent, error) {
	l, err := c.leaderVia(ctx, c.Client)
	if err != nil {
		return nil, err
	}
	if !l.Running() {
		return nil, fmt.Errorf("consultest: the client still names %s, which is stopped", l.member.name)
	}
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		if sl, err := c.leaderVia(ctx, s); err != nil || sl != l {
			return nil, fmt.Errorf("consultest: %s does not agree on the leader %s (%v)", s.member.name, l.member.name, err)
		}
	}
	return l, nil
}

// KillLeader finds the leader, kills it (SIGKILL, like a crash; its data directory stays, so
// Restart brings it back as a follower) and returns it.
func (c *Cluster) KillLeader(ctx context.Context) (*Agent, error) {
	l, err := c.WaitLeader(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(l.logs, "consultest: killing the leader\n")
	return l, l.Stop()
}

// Peers returns the server RPC addresses of the raft peers, as the client agent sees them.
func (c *Cluster) Peers(ctx context.Context) ([]string, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, Timeout: 2 * time.Second}
	var peers []string
	err := getJSON(ctx, client, "http://"+c.Client.HTTPAddr+"/v1/status/peers", &peers)
	return peers, err
}

// Logs returns the output of every member, each under a header, for failure diagnostics.
func (c *Cluster) Logs(tail int) string {
	var b []byte
	for _, a := range c.members() {
		b = fmt.Appendf(b, "--- %s (tail) ---\n%s\n", a.member.name, a.logs.tail(tail))
	}
	return string(b)
}

// Name returns a cluster member's node name ("server-1", "client-1"), or "dev" for an agent
// of [Start].
func (a *Agent) Name() string {
	if a.member == nil {
		return "dev"
	}
	return a.member.name
}

// ClusterForTest starts a cluster of the test's own (see [StartCluster]) and closes it at the
// test's cleanup, printing the end of every member's output if the test failed. Without a
// consul binary it calls [testenv.Unavailable]: the test skips, or fails under CI=true.
func ClusterForTest(tb testing.TB) *Cluster {
	tb.Helper()
	bin, err := testenv.ConsulBinary()
	if err != nil {
		testenv.Unavailable(tb, err)
		return nil
	}
	c, err := StartCluster(bin)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("consul cluster output:\n%s", c.Logs(logTailOnFailure/4))
		}
		if err := c.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return c
}
