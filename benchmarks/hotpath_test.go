package benchmarks

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/ratelimit"
)

// BenchmarkBreaker is one admitted call recorded as a success.
//
//	impl=gobreaker         the baseline: sony/gobreaker v2 Execute of a no-op function
//	impl=failsafe          a failsafe-go executor with a circuit breaker, Run of a no-op
//	impl=proxyless         breaker.Breaker: Allow, then Permit.Done(Success)
func BenchmarkBreaker(b *testing.B) {
	b.Run("impl=gobreaker", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: "bench"})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cb.Execute(func() (struct{}, error) { return struct{}{}, nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=failsafe", func(b *testing.B) {
		cb := circuitbreaker.NewBuilder[any]().WithFailureRateThreshold(0.5, 20, 10*time.Second).Build()
		ex := failsafe.With[any](cb)
		b.ReportAllocs()
		for b.Loop() {
			if err := ex.Run(func() error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=proxyless", func(b *testing.B) {
		br, err := breaker.New(breaker.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			p, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			p.Done(breaker.Success)
		}
	})
}

// BenchmarkLimiter is one admitted event on a limiter that always has room.
//
//	impl=rate          the baseline: x/time/rate Limiter.Allow
//	impl=proxyless     ratelimit.Local.Allow (GCRA)
func BenchmarkLimiter(b *testing.B) {
	const r, burst = 1e9, 1_000_000_000
	b.Run("impl=rate", func(b *testing.B) {
		l := rate.NewLimiter(r, burst)
		b.ReportAllocs()
		for b.Loop() {
			if !l.Allow() {
				b.Fatal("refused")
			}
		}
	})
	b.Run("impl=proxyless", func(b *testing.B) {
		l, err := ratelimit.NewLocal(r, burst)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if !l.Allow() {
				b.Fatal("refused")
			}
		}
	})
}

// BenchmarkMemoryPerKey reports the live heap each tracked rate-limit key costs (B/key), keys
// themselves excluded (they exist before the measurement starts).
//
//	impl=map+rate   the baseline: map[string]*rate.Limiter, the naive unbounded per-key limiter
//	impl=keyed      ratelimit.Keyed, bounded (MaxKeys above the key count, so nothing is evicted)
func BenchmarkMemoryPerKey(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = "client-" + strconv.Itoa(i)
		}
		measure := func(b *testing.B, build func() (allow func(string) bool, release func())) {
			var total float64
			iters := 0
			for b.Loop() {
				before := heapBytes()
				allow, release := build()
				for _, k := range keys {
					if !allow(k) {
						b.Fatal("refused")
					}
				}
				after := heapBytes()
				release()
				iters++
				total += float64(int64(after)-int64(before)) / float64(n)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(total/float64(iters), "B/key")
		}
		b.Run(fmt.Sprintf("keys=%d/impl=map+rate", n), func(b *testing.B) {
			measure(b, func() (func(string) bool, func()) {
				var mu sync.Mutex
				m := map[string]*rate.Limiter{}
				return func(k string) bool {
					mu.Lock()
					l, ok := m[k]
					if !ok {
						l = rate.NewLimiter(1, 10)
						m[k] = l
					}
					mu.Unlock()
					return l.Allow()
				}, func() { runtime.KeepAlive(m) }
			})
		})
		b.Run(fmt.Sprintf("keys=%d/impl=keyed", n), func(b *testing.B) {
			measure(b, func() (func(string) bool, func()) {
				k, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1, Burst: 10}, MaxKeys: 2 * n})
				if err != nil {
					b.Fatal(err)
				}
				return k.Allow, func() {
					if k.Len() != n {
						b.Fatalf("tracking %d keys, want %d", k.Len(), n)
					}
				}
			})
		})
	}
}
