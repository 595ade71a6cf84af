package balancer_test

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	grpcbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
)

// Run the comparison with:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./balancer/
//
// Pick benchmarks pass a fixed PickInfo.Now (the caller's one clock read per request is not
// part of the pick); BenchmarkPickDone/peak_ewma/now includes it for reference.

func benchEndpoints(n int) []discovery.Endpoint {
	eps := make([]discovery.Endpoint, n)
	for i := range eps {
		eps[i] = discovery.Endpoint{
			Addr:   "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250+1) + ":8080",
			Weight: uint32(1 + i%3),
			Zone:   "z" + strconv.Itoa(i%3),
		}
	}
	return eps
}

var benchPolicies = []balancer.Policy{
	balancer.PolicyPeakEWMA,
	balancer.PolicyLeastRequest,
	balancer.PolicyRoundRobin,
	balancer.PolicyWeightedRoundRobin,
	balancer.PolicyRandom,
	balancer.PolicyMaglev,
	balancer.PolicyRingHash,
}

func newBench(b *testing.B, cfg balancer.Config, n int) *balancer.Balancer {
	b.Helper()
	bal, err := balancer.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bal.Close() })
	bal.Update(benchEndpoints(n))
	return bal
}

// BenchmarkPickDone is one request's balancer work: Pick then Done, for every policy over 10
// endpoints, next to the two baselines.
func BenchmarkPickDone(b *testing.B) {
	now := time.Now()
	for _, p := range benchPolicies {
		b.Run(p.String(), func(b *testing.B) {
			bal := newBench(b, balancer.Config{Policy: p}, 10)
			b.ReportAllocs()
			var key uint64
			for b.Loop() {
				key++
				pk, err := bal.Pick(balancer.PickInfo{Now: now, Key: key})
				if err != nil {
					b.Fatal(err)
				}
				pk.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond})
			}
		})
	}
	b.Run("peak_ewma/now", func(b *testing.B) {
		bal := newBench(b, balancer.Config{}, 10)
		b.ReportAllocs()
		for b.Loop() {
			now := time.Now()
			pk, _ := bal.Pick(balancer.PickInfo{Now: now})
			pk.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond})
		}
	})
	b.Run("peak_ewma/zones", func(b *testing.B) {
		bal := newBench(b, balancer.Config{Zone: balancer.ZoneConfig{Local: "z0", Failover: []string{"z1"}}}, 10)
		b.ReportAllocs()
		for b.Loop() {
			pk, _ := bal.Pick(balancer.PickInfo{Now: now})
			pk.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond})
		}
	})
	b.Run("baseline=atomic_rr", func(b *testing.B) {
		rr := newAtomicRR(benchEndpoints(10))
		b.ReportAllocs()
		for b.Loop() {
			ep := rr.pick()
			if ep == nil {
				b.Fatal("nil")
			}
		}
	})
	b.Run("baseline=grpc_round_robin", func(b *testing.B) {
		picker := grpcRoundRobinPicker(b, 10)
		b.ReportAllocs()
		for b.Loop() {
			res, err := picker.Pick(grpcbalancer.PickInfo{FullMethodName: "/svc/Method"})
			if err != nil {
				b.Fatal(err)
			}
			if res.Done != nil {
				res.Done(grpcbalancer.DoneInfo{})
			}
		}
	})
}

// BenchmarkPick is Pick alone (no Done), for P2C peak EWMA over 10, 1,000 and 10,000
// endpoints: the cost must stay flat. In-flight counts grow during the run; that changes the
// scores, not the work.
func BenchmarkPick(b *testing.B) {
	now := time.Now()
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("peak_ewma/n=%d", n), func(b *testing.B) {
			bal := newBench(b, balancer.Config{}, n)
			// Give every endpoint a latency sample, as in steady state.
			for range 4 * n {
				pk, _ := bal.Pick(balancer.PickInfo{Now: now})
				pk.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond})
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bal.Pick(balancer.PickInfo{Now: now}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("baseline=atomic_rr/n=10", func(b *testing.B) {
		rr := newAtomicRR(benchEndpoints(10))
		b.ReportAllocs()
		for b.Loop() {
			_ = rr.pick()
		}
	})
}

// BenchmarkPickDoneParallel runs Pick+Done from all Ps at once over 10 endpoints.
func BenchmarkPickDoneParallel(b *testing.B) {
	for _, p := range []balancer.Policy{balancer.PolicyPeakEWMA, balancer.PolicyRoundRobin} {
		b.Run(p.String(), func(b *testing.B) {
			bal := newBench(b, balancer.Config{Policy: p}, 10)
			now := time.Now()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					pk, _ := bal.Pick(balancer.PickInfo{Now: now})
					pk.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond})
				}
			})
		})
	}
}

// BenchmarkUpdate is the cost of publishing a new endpoint set of n endpoints that keeps the
// previous ones' state (the set alternates between two lists sharing all addresses but one).
func BenchmarkUpdate(b *testing.B) {
	for _, p := range []balancer.Policy{balancer.PolicyPeakEWMA, balancer.PolicyMaglev, balancer.PolicyRingHash} {
		for _, n := range []int{10, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/n=%d", p, n), func(b *testing.B) {
				bal := newBench(b, balancer.Config{Policy: p}, n)
				a := benchEndpoints(n)
				c := benchEndpoints(n)
				c[0].Addr = "10.9.9.9:8080"
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i++; i%2 == 0 {
						bal.Update(a)
					} else {
						bal.Update(c)
					}
				}
			})
		}
	}
}

// atomicRR is the simplest lock-free picker: an atomic counter over a slice.
type atomicRR struct {
	eps  []discovery.Endpoint
	next atomic.Uint64
}

func newAtomicRR(eps []discovery.Endpoint) *atomicRR { return &atomicRR{eps: eps} }

func (r *atomicRR) pick() *discovery.Endpoint {
	return &r.eps[(r.next.Add(1)-1)%uint64(len(r.eps))]
}

// grpcRoundRobinPicker builds grpc-go's real round_robin balancer (endpointsharding over
// pickfirst children) against an in-memory ClientConn whose SubConns become READY on demand,
// and returns its READY picker over n endpoints.
func grpcRoundRobinPicker(tb testing.TB, n int) grpcbalancer.Picker {
	tb.Helper()
	cc := &fakeClientConn{}
	bal := grpcbalancer.Get(roundrobin.Name).Build(cc, grpcbalancer.BuildOptions{})
	tb.Cleanup(bal.Close)
	var eps []resolver.Endpoint
	for _, ep := range benchEndpoints(n) {
		eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: ep.Addr}}})
	}
	if err := bal.UpdateClientConnState(grpcbalancer.ClientConnState{ResolverState: resolver.State{Endpoints: eps}}); err != nil {
		tb.Fatal(err)
	}
	// Drive every SubConn to READY (and healthy), as a real ClientConn would after connecting.
	for round := 0; round < 10; round++ {
		for _, sc := range cc.subConns {
			if sc.connect && !sc.ready {
				sc.ready = true
				sc.listener(grpcbalancer.SubConnState{ConnectivityState: connectivity.Connecting})
				sc.listener(grpcbalancer.SubConnState{ConnectivityState: connectivity.Ready})
			}
			if sc.health != nil && !sc.healthy {
				sc.healthy = true
				sc.health(grpcbalancer.SubConnState{ConnectivityState: connectivity.Ready})
			}
		}
	}
	if cc.state.ConnectivityState != connectivity.Ready {
		tb.Fatalf("grpc round_robin state %v, want READY", cc.state.ConnectivityState)
	}
	seen := map[grpcbalancer.SubConn]bool{}
	for range 2 * n {
		res, err := cc.state.Picker.Pick(grpcbalancer.PickInfo{})
		if err != nil {
			tb.Fatal(err)
		}
		seen[res.SubConn] = true
	}
	if len(seen) != n {
		tb.Fatalf("grpc round_robin picker spreads over %d subconns, want %d", len(seen), n)
	}
	return cc.state.Picker
}

type fakeClientConn struct {
	grpcbalancer.ClientConn // unimplemented methods panic
	subConns                []*fakeSubConn
	state                   grpcbalancer.State
}

func (c *fakeClientConn) NewSubConn(_ []resolver.Address, opts grpcbalancer.NewSubConnOptions) (grpcbalancer.SubConn, error) {
	sc := &fakeSubConn{listener: opts.StateListener}
	c.subConns = append(c.subConns, sc)
	return sc, nil
}
func (c *fakeClientConn) UpdateState(s grpcbalancer.State)                         { c.state = s }
func (c *fakeClientConn) RemoveSubConn(grpcbalancer.SubConn)                       {}
func (c *fakeClientConn) ResolveNow(resolver.ResolveNowOptions)                    {}
func (c *fakeClientConn) Target() string                                           { return "proxyless:///bench" }
func (c *fakeClientConn) MetricsRecorder() estats.MetricsRecorder                  { return noopRecorder{} }
func (c *fakeClientConn) UpdateAddresses(grpcbalancer.SubConn, []resolver.Address) {}

type fakeSubConn struct {
	grpcbalancer.SubConn // unimplemented methods panic
	listener             func(grpcbalancer.SubConnState)
	health               func(grpcbalancer.SubConnState)
	connect, ready       bool
	healthy              bool
}

func (s *fakeSubConn) Connect()                                                 { s.connect = true }
func (s *fakeSubConn) Shutdown()                                                {}
func (s *fakeSubConn) UpdateAddresses([]resolver.Address)                       {}
func (s *fakeSubConn) RegisterHealthListener(f func(grpcbalancer.SubConnState)) { s.health = f }
func (s *fakeSubConn) GetOrBuildProducer(grpcbalancer.ProducerBuilder) (grpcbalancer.Producer, func()) {
	return nil, func() {}
}

type noopRecorder struct{ estats.MetricsRecorder }

func (noopRecorder) RecordInt64Count(*estats.Int64CountHandle, int64, ...string)             {}
func (noopRecorder) RecordFloat64Count(*estats.Float64CountHandle, float64, ...string)       {}
func (noopRecorder) RecordInt64Histo(*estats.Int64HistoHandle, int64, ...string)             {}
func (noopRecorder) RecordFloat64Histo(*estats.Float64HistoHandle, float64, ...string)       {}
func (noopRecorder) RecordInt64Gauge(*estats.Int64GaugeHandle, int64, ...string)             {}
func (noopRecorder) RecordInt64UpDownCount(*estats.Int64UpDownCountHandle, int64, ...string) {}
func (noopRecorder) RegisterAsyncReporter(estats.AsyncMetricReporter, ...estats.AsyncMetric) func() {
	return func() {}
}
