package benchmarks

import (
	"fmt"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

var scaleSizes = []int{10, 1000, 10000}

// atomicRR is the simplest lock-free picker: an atomic counter over a slice. It is the floor
// any picker is measured against.
type atomicRR struct {
	eps  []discovery.Endpoint
	next atomic.Uint64
}

func (r *atomicRR) pick() *discovery.Endpoint {
	return &r.eps[(r.next.Add(1)-1)%uint64(len(r.eps))]
}

func newBalancer(b *testing.B, cfg balancer.Config, eps []discovery.Endpoint) *balancer.Balancer {
	b.Helper()
	bal, err := balancer.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bal.Close() })
	bal.Update(eps)
	return bal
}

// BenchmarkPick is one pick (and its Done, which feeds latency back) at 10, 1,000 and 10,000
// endpoints. The cost must stay flat as the set grows.
//
//	impl=atomic_rr     the baseline: an atomic counter over a slice, nothing fed back
//	impl=p2c           proxyless' default, P2C over peak-EWMA, outlier detection on
//	impl=round_robin   proxyless' round robin
//
// PickInfo.Now is fixed: the one clock read per request belongs to the caller.
func BenchmarkPick(b *testing.B) {
	now := time.Now()
	for _, n := range scaleSizes {
		eps := endpoints(n)
		b.Run(fmt.Sprintf("n=%d/impl=atomic_rr", n), func(b *testing.B) {
			rr := &atomicRR{eps: eps}
			b.ReportAllocs()
			for b.Loop() {
				if rr.pick() == nil {
					b.Fatal("nil")
				}
			}
		})
		for _, p := range []balancer.Policy{balancer.PolicyPeakEWMA, balancer.PolicyRoundRobin} {
			name := map[balancer.Policy]string{balancer.PolicyPeakEWMA: "p2c", balancer.PolicyRoundRobin: "round_robin"}[p]
			b.Run(fmt.Sprintf("n=%d/impl=%s", n, name), func(b *testing.B) {
				bal := newBalancer(b, balancer.Config{Policy: p}, eps)
				// Give every endpoint latency samples first, as in steady state.
				for range 4 * n {
					pk, _ := bal.Pick(balancer.PickInfo{Now: now})
					pk.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond})
				}
				b.ReportAllocs()
				for b.Loop() {
					pk, err := bal.Pick(balancer.PickInfo{Now: now})
					if err != nil {
						b.Fatal(err)
					}
					pk.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond})
				}
			})
		}
	}
}

// BenchmarkUpdate is publishing a new endpoint set of n endpoints that keeps the previous ones'
// state (it alternates between two sets that differ in one address), as discovery does on
// every change. It must be linear: the ns/endpoint metric must stay flat.
//
//	impl=clone   the baseline: discovery.Clone of the set, the least any update must do
//	impl=p2c     balancer.Update with the default policy
//	impl=maglev  balancer.Update with Maglev, which also rebuilds its lookup table
func BenchmarkUpdate(b *testing.B) {
	for _, n := range scaleSizes {
		a := endpoints(n)
		c := endpoints(n)
		c[0].Addr = "10.255.255.255:8080"
		report := func(b *testing.B) {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/endpoint")
		}
		b.Run(fmt.Sprintf("n=%d/impl=clone", n), func(b *testing.B) {
			b.ReportAllocs()
			var sink []discovery.Endpoint
			i := 0
			for b.Loop() {
				if i++; i%2 == 0 {
					sink = discovery.Clone(a)
				} else {
					sink = discovery.Clone(c)
				}
			}
			_ = sink
			report(b)
		})
		for _, p := range []balancer.Policy{balancer.PolicyPeakEWMA, balancer.PolicyMaglev} {
			name := map[balancer.Policy]string{balancer.PolicyPeakEWMA: "p2c", balancer.PolicyMaglev: "maglev"}[p]
			b.Run(fmt.Sprintf("n=%d/impl=%s", n, name), func(b *testing.B) {
				bal := newBalancer(b, balancer.Config{Policy: p}, a)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i++; i%2 == 0 {
						bal.Update(a)
					} else {
						bal.Update(c)
					}
				}
				report(b)
			})
		}
	}
}

// BenchmarkMemoryPerEndpoint reports the live heap each endpoint costs (B/endpoint, from
// runtime.MemStats before and after, after a full GC) for n endpoints.
//
//	impl=endpoint_set  the baseline: the []discovery.Endpoint discovery hands over
//	impl=balancer      a P2C balancer holding the set (its snapshot, view and per-endpoint state)
//	impl=breaker       one breaker.Breaker per endpoint
//	impl=transport     a middleware.Transport after one request to a service of n endpoints:
//	                   discovery cache, balancer and destination (breakers are made lazily,
//	                   on an endpoint's first pick, so they are not in this number)
func BenchmarkMemoryPerEndpoint(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		measure := func(b *testing.B, build func(eps []discovery.Endpoint) func()) {
			var total float64
			iters := 0
			for b.Loop() {
				eps := endpoints(n)
				before := heapBytes()
				release := build(eps)
				after := heapBytes()
				runtime.KeepAlive(eps) // the input set is not part of the measure
				release()
				iters++
				total += float64(int64(after)-int64(before)) / float64(n)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(total/float64(iters), "B/endpoint")
		}
		b.Run(fmt.Sprintf("n=%d/impl=endpoint_set", n), func(b *testing.B) {
			measure(b, func([]discovery.Endpoint) func() {
				set := endpoints(n) // a second copy: the one measured
				return func() { runtime.KeepAlive(set) }
			})
		})
		b.Run(fmt.Sprintf("n=%d/impl=balancer", n), func(b *testing.B) {
			measure(b, func(eps []discovery.Endpoint) func() {
				bal, err := balancer.New(balancer.Config{})
				if err != nil {
					b.Fatal(err)
				}
				bal.Update(eps)
				return func() { runtime.KeepAlive(bal); _ = bal.Close() }
			})
		})
		b.Run(fmt.Sprintf("n=%d/impl=breaker", n), func(b *testing.B) {
			measure(b, func([]discovery.Endpoint) func() {
				brs := make([]*breaker.Breaker, n)
				for i := range brs {
					br, err := breaker.New(breaker.Config{})
					if err != nil {
						b.Fatal(err)
					}
					brs[i] = br
				}
				return func() { runtime.KeepAlive(brs) }
			})
		})
		b.Run(fmt.Sprintf("n=%d/impl=transport", n), func(b *testing.B) {
			measure(b, func(eps []discovery.Endpoint) func() {
				tr, err := middleware.NewTransport(noopTransport{}, middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps})))
				if err != nil {
					b.Fatal(err)
				}
				req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
				return func() { runtime.KeepAlive(tr); _ = tr.Close() }
			})
		})
	}
}
