package consultest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClusterLeaderLossAndRestarts starts a three-server cluster with a client agent, kills
// the leader, sees the two others elect a new one, brings the old leader back as a
// follower, and restarts the client agent.
func TestClusterLeaderLossAndRestarts(t *testing.T) {
	c := ClusterForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, a := range c.members() {
		if !strings.HasPrefix(a.HTTPAddr, "127.0.0.1:") || !a.Running() {
			t.Fatalf("%s: address %s running %v; want a running loopback agent", a.Name(), a.HTTPAddr, a.Running())
		}
	}
	if peers, err := c.Peers(ctx); err != nil || len(peers) != ClusterServers {
		t.Fatalf("raft peers %v, %v; want %d", peers, err, ClusterServers)
	}
	register(t, c.Client, "web") // through the client agent, forwarded to the leader

	old, err := c.KillLeader(ctx)
	if err != nil {
		t.Fatalf("KillLeader: %v", err)
	}
	if old.Running() || !old.member.server {
		t.Fatalf("killed %s: running %v", old.Name(), old.Running())
	}
	l, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatalf("WaitLeader after the kill: %v", err)
	}
	if l == old {
		t.Fatalf("the killed server %s is still the leader", old.Name())
	}
	if got, err := c.Leader(ctx); err != nil || got != l {
		t.Fatalf("Leader = %v, %v; want %s", got, err, l.Name())
	}
	register(t, c.Client, "web2") // the new leader takes writes

	if err := old.Restart(); err != nil {
		t.Fatalf("restarting %s: %v", old.Name(), err)
	}
	if l2, err := c.WaitLeader(ctx); err != nil || l2 != l {
		t.Fatalf("after the old leader's return: leader %v, %v; want %s kept", l2, err, l.Name())
	}

	if err := c.Client.Restart(); err != nil {
		t.Fatalf("restarting the client agent: %v", err)
	}
	register(t, c.Client, "web3")
	var pids []int
	for _, a := range c.members() {
		a.mu.Lock()
		pids = append(pids, a.proc.cmd.Process.Pid)
		a.mu.Unlock()
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, a := range c.members() {
		if a.Running() || alive(pids[i]) {
			t.Errorf("%s (pid %d) still running after Close", a.Name(), pids[i])
		}
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("data directory %s left behind: %v", c.dir, err)
	}
}

func TestStartClusterFailureReportsOutput(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fake-consul")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'bind: address already in use' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "consultest-cluster-*"))
	c, err := StartCluster(bin)
	if err == nil {
		c.Close()
		t.Fatal("StartCluster succeeded with a binary that exits")
	}
	var exited *exitedError
	if !errors.As(err, &exited) || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "server-1") {
		t.Errorf("err = %v; want an exitedError naming the member, with its output", err)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "consultest-cluster-*"))
	if len(after) > len(before) {
		t.Errorf("data directories left behind: %v", after)
	}
}
