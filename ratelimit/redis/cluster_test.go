package redis

import (
	"context"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/proxyless/proxyless/internal/redistest"
	"github.com/proxyless/proxyless/ratelimit"
)

// The global-limit tests on Redis Cluster and Sentinel: three instances, each
// with its own client and limiter, share one key's quota.
const (
	globalRate  = 100.0 // events per second, all instances together
	globalBurst = 10
	instances   = 3
	workers     = 4                     // concurrent callers per instance, as in a server
	offerEvery  = 16 * time.Millisecond // per worker: each instance offers 250/s, 7.5× the rate in total
)

// globalRun is what the instances saw, per second of the run.
type globalRun struct {
	admitted, degraded []int
}

func (g globalRun) total(from, to int) (admitted, degraded int) {
	for s := from; s < to && s < len(g.admitted); s++ {
		admitted += g.admitted[s]
		degraded += g.degraded[s]
	}
	return admitted, degraded
}

// runGlobal has one limiter per client, each with workers callers taking key
// "global" every offerEvery for d, calling at (if not nil) once when the given time has passed.
func runGlobal(t *testing.T, clients []goredis.UniversalClient, cfg Config, d time.Duration, atTime time.Duration, at func()) globalRun {
	t.Helper()
	secs := int(d / time.Second)
	run := globalRun{admitted: make([]int, secs+1), degraded: make([]int, secs+1)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range clients {
		lim := mustRedis(t, c, cfg)
		for range workers {
			wg.Go(func() {
				tick := time.NewTicker(offerEvery)
				defer tick.Stop()
				for range int(d / offerEvery) { // bounded in count and, by d, in time
					<-tick.C
					el := time.Since(start)
					if el >= d {
						return
					}
					dec, err := lim.Take(context.Background(), "global")
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if dec.Allowed {
						run.admitted[int(el/time.Second)]++
					}
					if dec.Degraded {
						run.degraded[int(el/time.Second)]++
					}
					mu.Unlock()
				}
			})
		}
	}
	if at != nil {
		time.Sleep(atTime)
		at()
	}
	wg.Wait()
	t.Logf("admitted per second %v; degraded decisions per second %v", run.admitted, run.degraded)
	return run
}

func clusterClients(t *testing.T, c *redistest.Cluster) []goredis.UniversalClient {
	var cs []goredis.UniversalClient
	for range instances {
		cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = cc.Close() })
		cs = append(cs, cc)
	}
	return cs
}

func sentinelClients(t *testing.T, g *redistest.Sentinel) []goredis.UniversalClient {
	var cs []goredis.UniversalClient
	for range instances {
		// The universal client: a master name makes it a Sentinel (failover) client.
		fc := goredis.NewUniversalClient(&goredis.UniversalOptions{
			MasterName: g.Name, Addrs: g.SentinelAddrs(), ContextTimeoutEnabled: true,
		})
		t.Cleanup(func() { _ = fc.Close() })
		cs = append(cs, fc)
	}
	return cs
}

func globalConfig() Config {
	return Config{
		Default:       ratelimit.Quota{Rate: globalRate, Burst: globalBurst},
		Timeout:       250 * time.Millisecond, // generous: -race on two shared cores
		ProbeInterval: 250 * time.Millisecond,
		FallbackShare: 1.0 / instances,
	}
}

// checkSteady: over d the instances together admit rate × d plus one burst,
// within ±5 %, and Redis decided nearly everything.
func checkSteady(t *testing.T, run globalRun, d time.Duration) {
	t.Helper()
	admitted, degraded := run.total(0, len(run.admitted))
	want := globalRate*d.Seconds() + globalBurst
	if float64(admitted) < 0.95*want || float64(admitted) > 1.05*want {
		t.Errorf("admitted %d over %v, want %.0f ± 5 %%", admitted, d, want)
	}
	if degraded > 0 {
		t.Logf("%d decisions were made locally (a Redis call past Config.Timeout)", degraded)
	}
}

func TestGlobalLimitRedisCluster(t *testing.T) {
	c := redistest.ClusterForTest(t, 3, 1)
	checkSteady(t, runGlobal(t, clusterClients(t, c), globalConfig(), 10*time.Second, 0, nil), 10*time.Second)
}

func TestGlobalLimitSentinel(t *testing.T) {
	g := redistest.SentinelForTest(t, 1, 3)
	checkSteady(t, runGlobal(t, sentinelClients(t, g), globalConfig(), 10*time.Second, 0, nil), 10*time.Second)
}

// checkFailover: a master killed at second killAt of a run of secs seconds.
// While it is away the local fallback admits (each instance its share, so the
// total stays near the rate); Redis decides again within a few seconds
// (failover after NodeTimeout plus the clients' rediscovery); the whole run
// admits rate × duration within the documented budget: +5 % and one burst
// per instance at the hand-back. Below, -20 %: the fallback's buckets start
// empty and each probe holds its caller up to Config.Timeout, which a loaded
// two-core machine stretches.
func checkFailover(t *testing.T, run globalRun, killAt, secs int) {
	t.Helper()
	_, degradedBefore := run.total(0, killAt)
	outAdmitted, outDegraded := run.total(killAt, killAt+2)
	if outDegraded == 0 || outAdmitted == 0 {
		t.Errorf("after the kill: %d admitted, %d decided locally; want the local fallback admitting", outAdmitted, outDegraded)
	}
	settled := killAt + 6
	lateAdmitted, lateDegraded := run.total(settled, secs)
	if lateDegraded > degradedBefore+5 {
		t.Errorf("seconds %d-%d: %d decisions still local; want Redis deciding again", settled, secs, lateDegraded)
	}
	wantLate := globalRate * float64(secs-settled)
	if float64(lateAdmitted) < 0.9*wantLate || float64(lateAdmitted) > 1.1*wantLate+globalBurst {
		t.Errorf("seconds %d-%d admitted %d, want %.0f: the global count has not reconverged", settled, secs, lateAdmitted, wantLate)
	}
	all, _ := run.total(0, secs)
	want := globalRate * float64(secs)
	if float64(all) > 1.05*want+instances*globalBurst || float64(all) < 0.8*want {
		t.Errorf("admitted %d over the run, want %.0f within the failover budget", all, want)
	}
}

func TestGlobalLimitRedisClusterFailover(t *testing.T) {
	c := redistest.ClusterForTest(t, 3, 1)
	clients := clusterClients(t, c)
	probe := clients[0].(*goredis.ClusterClient)
	master, err := probe.MasterForKey(context.Background(), DefaultPrefix+"global")
	if err != nil {
		t.Fatal(err)
	}
	victim := c.Node(master.Options().Addr)
	if victim == nil {
		t.Fatalf("no node at %s", master.Options().Addr)
	}
	const killAt, secs = 3, 14
	run := runGlobal(t, clients, globalConfig(), secs*time.Second, killAt*time.Second, func() {
		t.Logf("stopping the key's master %s", victim.Addr())
		if err := victim.Stop(); err != nil {
			t.Error(err)
		}
	})
	checkFailover(t, run, killAt, secs)
}

func TestGlobalLimitSentinelFailover(t *testing.T) {
	g := redistest.SentinelForTest(t, 1, 3)
	const killAt, secs = 3, 14
	run := runGlobal(t, sentinelClients(t, g), globalConfig(), secs*time.Second, killAt*time.Second, func() {
		t.Logf("stopping the master %s", g.Master.Addr())
		if err := g.Master.Stop(); err != nil {
			t.Error(err)
		}
	})
	checkFailover(t, run, killAt, secs)
}

// TestGlobalLimitRedisClusterMigration moves the key's slot, key and all, to another master
// mid-run (IMPORTING, MIGRATING, MIGRATE, then the new owner announced, as a reshard does slot
// by slot): the move stays within the failover budget (the total within 5 %), and the key
// then lives on the new master.
func TestGlobalLimitRedisClusterMigration(t *testing.T) {
	c := redistest.ClusterForTest(t, 3, 0)
	clients := clusterClients(t, c)
	cc := clients[0].(*goredis.ClusterClient)
	ctx := context.Background()
	master, err := cc.MasterForKey(ctx, DefaultPrefix+"global")
	if err != nil {
		t.Fatal(err)
	}
	slot, err := cc.ClusterKeySlot(ctx, DefaultPrefix+"global").Result()
	if err != nil {
		t.Fatal(err)
	}
	from := master.Options().Addr
	to := c.Addrs()[0]
	if to == from {
		to = c.Addrs()[1]
	}
	const secs = 8
	run := runGlobal(t, clients, globalConfig(), secs*time.Second, 3*time.Second, func() {
		start := time.Now()
		if err := c.MoveSlot(int(slot), from, to); err != nil {
			t.Error(err)
		}
		t.Logf("moved slot %d from %s to %s in %v", slot, from, to, time.Since(start))
	})
	checkSteady(t, run, secs*time.Second)
	// Asked of the new master itself, not of a client's cached slot map.
	direct := goredis.NewClient(&goredis.Options{Addr: to, ContextTimeoutEnabled: true})
	defer direct.Close()
	n, err := direct.Exists(ctx, DefaultPrefix+"global").Result()
	if err != nil || n != 1 {
		t.Errorf("the key on %s after the move: %d, %v; want it there", to, n, err)
	}
}
