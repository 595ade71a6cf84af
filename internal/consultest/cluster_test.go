package consultest

import (
	"context"
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
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, a := range c.members() {
		if a.Running() {
			t.Errorf("%s still running after Close", a.Name())
		}
	}
}
