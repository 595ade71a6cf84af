// Package consultest runs a real Consul agent (consul agent -dev, v1.14.11)
// on loopback ports for integration tests, and lets a test stop and restart
// it to simulate an outage.
//
// The binary comes from PROXYLESS_CONSUL_BIN (see package testenv); the
// project's `make test` builds it and sets the variable. Without it, tests
// skip, except under CI=true, where they fail.
//
// A test that needs an agent of its own calls [ForTest]:
//
//	a := consultest.ForTest(t) // skips or fails if consul is unavailable
//	client, _ := api.NewClient(&api.Config{Address: a.HTTPAddr})
//
// A package whose tests can share one agent (starting one takes a few
// seconds) declares a [Shared] and wires it into TestMain; the agent starts
// on first use and stops when the tests end:
//
//	var consul consultest.Shared
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(consul.Wrap(m)) }
//	// or, without goleak: func TestMain(m *testing.M) { os.Exit(consul.Main(m)) }
//
//	func TestWatch(t *testing.T) {
//		a := consul.Agent(t)
//		...
//	}
//
// Dev mode keeps everything in memory: a restarted agent has lost every
// service and key registered before. Tests that stop the shared agent must
// restart it before they end (t.Cleanup), or use an agent of their own.
//
// A test that needs a real cluster calls [ClusterForTest]: three servers
// (bootstrap-expect 3, raft on disk, raft_multiplier 1 so that an election
// takes a few seconds) and a client agent joined to them, each on free
// loopback ports with a data directory of its own. Applications talk to the
// client agent; [Cluster.KillLeader] crashes the current leader,
// [Cluster.WaitLeader] waits until the others agree on a new one, and any
// member's Stop and Restart keep its data, so a server rejoins with its raft
// log and the client agent with its node ID:
//
//	c := consultest.ClusterForTest(t)
//	client, _ := api.NewClient(&api.Config{Address: c.Client.HTTPAddr})
//	old, _ := c.KillLeader(ctx)
//	leader, _ := c.WaitLeader(ctx)
//	_ = old.Restart()
//
// Every agent, dev or member, allows 16,384 concurrent HTTP connections from
// one address (limits.http_max_conns_per_client; Consul's default is 200), as
// the scale tests hold one blocking query per watched service.
package consultest
