package consul_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/internal/consultest"
	"github.com/proxyless/proxyless/middleware"
)

// The scale benchmarks run against the real dev agent of the package and are slow (seconds
// of setup: thousands of registrations); run them apart:
//
//	go test -run '^$' -bench 'BenchmarkScale' -benchtime 30x ./discovery/consul/
//
// Each iteration registers one more instance of a followed service through the agent's
// catalog API and measures the time until the Transport's balancer lists it (p50-ms and
// p99-ms over the iterations), then deregisters it (not measured). The endpoints are never
// dialled: they are addresses in 127.200.0.0/16 on port 1, where nothing listens.

// scaleAddr is the address of the i-th benchmark instance.
func scaleAddr(i int) string { return fmt.Sprintf("127.200.%d.%d", (i>>8)&255, i&255) }

// bulkRegister registers instances [from, to) of service through the transaction API, 127
// instances a transaction on a node of their own (a transaction takes at most 128 operations).
func bulkRegister(b *testing.B, client *api.Client, service string, from, to int) {
	b.Helper()
	const perTxn = 127
	for start := from; start < to; start += perTxn {
		node := fmt.Sprintf("%s-node-%d", service, start/perTxn)
		ops := api.TxnOps{{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: node, Address: "127.0.0.1"}}}}
		for i := start; i < min(start+perTxn, to); i++ {
			ops = append(ops, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: api.AgentService{
				ID: service + "-" + strconv.Itoa(i), Service: service, Address: scaleAddr(i), Port: 1,
			}}})
		}
		ok, resp, _, err := client.Txn().Txn(ops, nil)
		if err != nil || !ok {
			b.Fatalf("registering %s [%d, %d): %v %+v", service, start, to, err, resp)
		}
	}
}

// heap returns the live heap after a full collection.
func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// scaleTransport returns a Transport over a resolver of the dev agent, and the function that
// closes both.
func scaleTransport(b *testing.B, a *consultest.Agent) (*middleware.Transport, *consul.Resolver, func()) {
	r, err := consul.New(consul.Config{Address: a.HTTPAddr})
	if err != nil {
		b.Fatal(err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	tr, err := middleware.NewTransport(base, middleware.WithResolver(r)) // the defaults: breakers on
	if err != nil {
		b.Fatal(err)
	}
	return tr, r, func() { _ = tr.Close(); base.CloseIdleConnections(); _ = r.Close() }
}

// follow makes tr follow each service (a request to it, which fails: nothing listens on the
// instances) and waits until every balancer has want endpoints.
func follow(b *testing.B, tr *middleware.Transport, services []string, want int) {
	b.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, s := range services {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s+"/", nil)
			if resp, err := tr.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range services {
		for len(tr.Endpoints(s)) != want {
			if time.Now().After(deadline) {
				b.Fatalf("%s: %d endpoints in the balancer, want %d", s, len(tr.Endpoints(s)), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// measureChanges runs b.N changes, each to services[i % len], and reports the latency
// percentiles (from the start of the registration to the balancer listing the instance), the
// registration's own p99, the agent queries each change cost and the extra metrics given (ResetTimer
// drops metrics reported before it). Between changes to one service it waits 400 ms, for the
// watcher's rate cap (5 queries a second, a burst of 2) to refill: back-to-back changes of
// one service reach the balancer at the pace of the cap, which is not what is measured here.
func measureChanges(b *testing.B, client *api.Client, tr *middleware.Transport, r *consul.Resolver, services []string, size int, extra map[string]float64) {
	lat, reg := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	q0, e0 := r.Stats().Queries, r.Stats().Errors
	b.ResetTimer()
	for i := range b.N {
		svc := services[i%len(services)]
		id, addr := svc+"-extra", scaleAddr(size)+":1"
		node := fmt.Sprintf("%s-node-%d", svc, 0)
		start := time.Now()
		if _, err := client.Catalog().Register(&api.CatalogRegistration{Node: node, Address: "127.0.0.1", SkipNodeUpdate: true,
			Service: &api.AgentService{ID: id, Service: svc, Address: scaleAddr(size), Port: 1}}, nil); err != nil {
			b.Fatal(err)
		}
		reg = append(reg, time.Since(start))
		waitFor(b, tr, svc, addr, true, size)
		lat = append(lat, time.Since(start))
		if _, err := client.Catalog().Deregister(&api.CatalogDeregistration{Node: node, ServiceID: id}, nil); err != nil {
			b.Fatal(err)
		}
		waitFor(b, tr, svc, addr, false, size)
		if len(services) < 100 {
			time.Sleep(400 * time.Millisecond)
		}
	}
	b.StopTimer()
	for unit, v := range extra {
		b.ReportMetric(v, unit)
	}
	slices.Sort(lat)
	slices.Sort(reg)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99-ms")
	// The registration's own share: the catalog write through the agent to the leader.
	b.ReportMetric(ms(reg[(len(reg)*99)/100]), "register-p99-ms")
	b.ReportMetric(float64(r.Stats().Queries-q0)/float64(2*b.N), "queries/change")
	b.ReportMetric(float64(r.Stats().Errors-e0), "query-errors")
	b.ReportMetric(0, "ns/op")
}

// waitFor polls until addr is (or is no longer) in the balancer of svc, for at most a minute.
// Listing a balancer of size endpoints costs: the larger the set, the less often it polls
// (every 1 ms up to 2,000 endpoints, 5 ms at 10,000), so as not to slow what it measures.
func waitFor(b *testing.B, tr *middleware.Transport, svc, addr string, present bool, size int) {
	every := max(time.Millisecond, time.Duration(size)*time.Millisecond/2000)
	deadline := time.Now().Add(time.Minute)
	for {
		found := false
		for _, e := range tr.Endpoints(svc) {
			if e.Addr == addr {
				found = true
				break
			}
		}
		if found == present {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %s present=%v after a minute", svc, addr, !present)
		}
		time.Sleep(every)
	}
}

// BenchmarkScaleEndpoints follows one service of 10, 1,000 and 10,000 endpoints: the time
// from a registration to the balancer, and the memory the Transport and resolver hold per
// endpoint (heap after a collection, with the service followed, minus before).
func BenchmarkScaleEndpoints(b *testing.B) {
	a := shared.Agent(b)
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr})
	if err != nil {
		b.Fatal(err)
	}
	// The setup runs here, once for each size; b.Run runs the measuring loop (twice: once
	// with b.N = 1, then with the -benchtime count).
	for _, n := range []int{10, 1000, 10000} {
		svc := "scale-e" + strconv.Itoa(n)
		bulkRegister(b, client, svc, 0, n)
		before := heap()
		tr, r, closeAll := scaleTransport(b, a)
		follow(b, tr, []string{svc}, n)
		mem := float64(heap()-before) / float64(n)
		answer := answerTime(b, client, svc, n)
		b.Run("endpoints="+strconv.Itoa(n), func(b *testing.B) {
			measureChanges(b, client, tr, r, []string{svc}, n, map[string]float64{"B/endpoint": mem, "answer-ms": answer})
		})
		closeAll()
	}
}

// BenchmarkScaleServices follows 1,000 services of 2 endpoints each through one Transport:
// the time from a registration to the balancer (each change to another service), the memory
// per service, the agent queries a change costs (1 when only the changed service's watcher
// wakes), and the queries a second each watcher sends at rest (the default WaitTime of 5
// minutes; measured over 10 s with no change).
func BenchmarkScaleServices(b *testing.B) {
	const services, size = 1000, 2
	a := shared.Agent(b)
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr})
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, services)
	for i := range names {
		names[i] = "scale-s" + strconv.Itoa(i)
	}
	registerServices(b, client, names, size)
	before := heap()
	tr, r, closeAll := scaleTransport(b, a)
	defer closeAll()
	follow(b, tr, names, size)
	mem := float64(heap()-before) / services

	q0 := r.Stats().Queries
	time.Sleep(10 * time.Second)
	rest := float64(r.Stats().Queries-q0) / services / 10
	b.Run("services=1000", func(b *testing.B) {
		measureChanges(b, client, tr, r, names, size, map[string]float64{"B/service": mem, "queries/s/watcher-at-rest": rest})
	})
}

// answerTime returns the median of 5 plain (non-blocking) reads of the whole set of svc, in
// milliseconds: what the agent takes to answer and the client to decode, the floor under a
// change's latency.
func answerTime(b *testing.B, client *api.Client, svc string, n int) float64 {
	b.Helper()
	var ds []time.Duration
	for range 5 {
		start := time.Now()
		entries, _, err := client.Health().Service(svc, "", true, nil)
		if err != nil || len(entries) != n {
			b.Fatalf("reading %s: %d entries, %v", svc, len(entries), err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return float64(ds[2]) / float64(time.Millisecond)
}

// registerServices registers size instances of each service, many services a transaction.
func registerServices(b *testing.B, client *api.Client, names []string, size int) {
	b.Helper()
	perTxn := 128 / (size + 1) // a node and its instances for each service
	for start := 0; start < len(names); start += perTxn {
		var ops api.TxnOps
		for _, svc := range names[start:min(start+perTxn, len(names))] {
			node := svc + "-node-0"
			ops = append(ops, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: node, Address: "127.0.0.1"}}})
			for i := range size {
				ops = append(ops, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: api.AgentService{
					ID: svc + "-" + strconv.Itoa(i), Service: svc, Address: scaleAddr(i), Port: 1,
				}}})
			}
		}
		ok, resp, _, err := client.Txn().Txn(ops, nil)
		if err != nil || !ok {
			b.Fatalf("registering services from %d: %v %+v", start, err, resp)
		}
	}
}
