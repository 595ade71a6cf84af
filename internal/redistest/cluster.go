package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxyless/proxyless/internal/testenv"
)

// NodeTimeout is the cluster-node-timeout of a [Cluster] and the
// down-after-milliseconds of a [Sentinel] group: how long a master must be
// unreachable before a replica takes over. Short, so failover tests are short.
const NodeTimeout = time.Second

// Cluster is a Redis Cluster on loopback: masters that share the 16,384 hash
// slots, each with its replicas. Stop a master (Node(addr).Stop()) and, after
// about [NodeTimeout], one of its replicas is promoted.
type Cluster struct {
	Nodes []*Server // masters first at creation; roles change on failover
}

// StartCluster starts masters × (1 + replicas) redis-server processes in
// cluster mode, joins them with redis-cli --cluster create (redis-cli is
// looked up beside bin, then on PATH), and returns once every node reports
// cluster_state:ok.
func StartCluster(bin string, masters, replicas int) (*Cluster, error) {
	if masters < 3 {
		return nil, fmt.Errorf("redistest: a cluster needs at least 3 masters, got %d", masters)
	}
	cli, err := redisCLI(bin)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	for range masters * (1 + replicas) {
		args, err := clusterNodeArgs()
		if err != nil {
			c.Close()
			return nil, err
		}
		s, err := start(bin, "", args...)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := runCLI(true, cli, args...); err != nil {
		c.Close()
		return nil, fmt.Errorf("redistest: redis-cli --cluster create: %v: %s", err, tail(string(out)))
	}
	if err := c.waitOK(cli, 20*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// clusterNodeArgs returns the arguments of a cluster node. Its cluster bus gets a free port
// of its own (--cluster-port): by default it would be the node's port + 10000, out of range
// for a port above 55535 (redis-server then refuses to start) and perhaps taken.
func clusterNodeArgs() ([]string, error) {
	bus, err := testenv.FreePort()
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	return []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout / time.Millisecond)),
		"--cluster-replica-validity-factor", "0",
		"--cluster-port", strconv.Itoa(bus),
	}, nil
}

// ClusterForTest is [StartCluster] for tb, closed in tb.Cleanup; like
// [ForTest] it skips without a configured binary, and fails under CI=true.
func ClusterForTest(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		testenv.Unavailable(tb, err)
		return nil
	}
	c, err := StartCluster(bin, masters, replicas)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	tb.Cleanup(c.Close)
	return c
}

// Addrs returns every node's address.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Node returns the node listening at addr, or nil.
func (c *Cluster) Node(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// Close stops every node and removes their directories.
func (c *Cluster) Close() {
	for _, s := range c.Nodes {
		_ = s.Close()
	}
}

func (c *Cluster) waitOK(cli string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, s := range c.Nodes {
		for {
			out, err := runCLI(false, cli, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "cluster", "info")
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("redistest: cluster node %s not ok within %v: %s", s.Addr(), timeout, tail(string(out)))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// cliTimeout bounds each redis-cli run: --cluster create waits for the nodes to agree, and
// any command waits on a node that does not answer (a paused one), for ever.
var cliTimeout = time.Minute

// runCLI runs redis-cli with args, killed after cliTimeout, and returns its standard output
// (and its standard error too, with combined).
func runCLI(combined bool, cli string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.WaitDelay = time.Second
	if combined {
		return cmd.CombinedOutput()
	}
	return cmd.Output()
}

// redisCLI finds redis-cli beside bin (the same installation), then on PATH.
func redisCLI(bin string) (string, error) {
	beside := filepath.Join(filepath.Dir(bin), "redis-cli")
	if p, err := exec.LookPath(beside); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("redis-cli"); err == nil {
		return p, nil
	}
	return "", errors.New("redistest: redis-cli not found beside " + bin + " or on PATH")
}

// Sentinel is a Redis master with replicas watched by a group of Sentinels,
// on loopback. Stop the master and, after about [NodeTimeout], the Sentinels
// promote a replica.
type Sentinel struct {
	Name      string    // the master's name, as clients ask the Sentinels for it
	Master    *Server   // the master at creation
	Replicas  []*Server // its replicas at creation
	Sentinels []*Server
}

// StartSentinel starts a master, replicas replicas of it and sentinels
// Sentinels (quorum a majority), and returns once every Sentinel knows the
// replicas and the other Sentinels.
func StartSentinel(bin string, replicas, sentinels int) (*Sentinel, error) {
	cli, err := redisCLI(bin)
	if err != nil {
		return nil, err
	}
	g := &Sentinel{Name: "proxyless"}
	if g.Master, err = start(bin, ""); err != nil {
		return nil, err
	}
	for range replicas {
		r, err := start(bin, "", "--replicaof", "127.0.0.1", strconv.Itoa(g.Master.port))
		if err != nil {
			g.Close()
			return nil, err
		}
		g.Replicas = append(g.Replicas, r)
	}
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
		"sentinel down-after-milliseconds %[1]s %[4]d\n"+
		"sentinel failover-timeout %[1]s %[5]d\n",
		g.Name, g.Master.port, sentinels/2+1, NodeTimeout.Milliseconds(), 3*NodeTimeout.Milliseconds())
	for range sentinels {
		s, err := start(bin, conf, "--sentinel")
		if err != nil {
			g.Close()
			return nil, err
		}
		g.Sentinels = append(g.Sentinels, s)
	}
	if err := g.waitReplicas(cli, replicas, 20*time.Second); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// SentinelForTest is [StartSentinel] for tb, closed in tb.Cleanup; like
// [ForTest] it skips without a configured binary, and fails under CI=true.
func SentinelForTest(tb testing.TB, replicas, sentinels int) *Sentinel {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		testenv.Unavailable(tb, err)
		return nil
	}
	g, err := StartSentinel(bin, replicas, sentinels)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	tb.Cleanup(g.Close)
	return g
}

// SentinelAddrs returns the Sentinels' addresses.
func (g *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Close stops every process and removes their directories.
func (g *Sentinel) Close() {
	for _, s := range g.Sentinels {
		_ = s.Close()
	}
	for _, s := range g.Replicas {
		_ = s.Close()
	}
	if g.Master != nil {
		_ = g.Master.Close()
	}
}

func (g *Sentinel) waitReplicas(cli string, replicas int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, s := range g.Sentinels {
		for {
			out, err := runCLI(false, cli, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "sentinel", "master", g.Name)
			// Each must also know the others, or a failover finds no quorum.
			if err == nil && sentinelField(string(out), "num-slaves") == strconv.Itoa(replicas) &&
				sentinelField(string(out), "num-other-sentinels") == strconv.Itoa(len(g.Sentinels)-1) &&
				sentinelField(string(out), "flags") == "master" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("redistest: sentinel %s does not see %d replicas within %v: %s", s.Addr(), replicas, timeout, tail(string(out)))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// sentinelField reads a field of redis-cli's SENTINEL MASTER output, which
// prints names and values on alternate lines.
func sentinelField(out, name string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		if strings.TrimSpace(lines[i]) == name {
			return strings.TrimSpace(lines[i+1])
		}
	}
	return ""
}

// MoveSlot moves one hash slot, keys and all, from the master at from to the master at to,
// as redis-cli's reshard does for each slot: IMPORTING on the target, MIGRATING on the source,
// MIGRATE of its keys, then the new owner announced to every master.
func (c *Cluster) MoveSlot(slot int, from, to string) error {
	cli, err := redisCLI(c.Nodes[0].bin)
	if err != nil {
		return err
	}
	run := func(addr string, args ...string) (string, error) {
		host, port, _ := strings.Cut(addr, ":")
		ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port}, args...)...).Output()
		if err != nil {
			return "", fmt.Errorf("redistest: %s %v: %w", addr, args, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	fromID, err := run(from, "cluster", "myid")
	if err != nil {
		return err
	}
	toID, err := run(to, "cluster", "myid")
	if err != nil {
		return err
	}
	s := strconv.Itoa(slot)
	steps := [][]string{{to, "cluster", "setslot", s, "importing", fromID}, {from, "cluster", "setslot", s, "migrating", toID}}
	for _, st := range steps {
		if _, err := run(st[0], st[1:]...); err != nil {
			return err
		}
	}
	keys, err := run(from, "cluster", "getkeysinslot", s, "1000")
	if err != nil {
		return err
	}
	if keys != "" {
		host, port, _ := strings.Cut(to, ":")
		args := append([]string{"migrate", host, port, "", "0", "5000", "keys"}, strings.Fields(keys)...)
		if _, err := run(from, args...); err != nil {
			return err
		}
	}
	for _, addr := range []string{to, from} {
		if _, err := run(addr, "cluster", "setslot", s, "node", toID); err != nil {
			return err
		}
	}
	return nil
}
