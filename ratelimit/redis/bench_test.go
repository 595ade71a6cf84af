package redis

import (
	"context"
	"testing"
	"time"

	"github.com/proxyless/proxyless/internal/redistest"
	"github.com/proxyless/proxyless/ratelimit"
)

// BenchmarkRedis compares one limiter decision with a bare GET on the same
// Redis and client: the script's cost over a plain round trip.
func BenchmarkRedis(b *testing.B) {
	s := redistest.ForTest(b)
	c := newClient(b, s.Addr())
	ctx := context.Background()
	if err := c.Set(ctx, "bench:get", "1", 0).Err(); err != nil {
		b.Fatal(err)
	}
	b.Run("baseline=GET", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Get(ctx, "bench:get").Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Limiter.Take", func(b *testing.B) {
		// A generous timeout: the benchmark measures Redis, not the fallback.
		r := mustRedis(b, c, Config{Default: ratelimit.Quota{Rate: 1e6, Burst: 1_000_000}, Timeout: time.Second})
		b.ReportAllocs()
		degraded := 0
		for b.Loop() {
			d, err := r.Take(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			if d.Degraded {
				degraded++
			}
		}
		b.ReportMetric(float64(degraded)/float64(b.N), "degraded/op")
	})
}
