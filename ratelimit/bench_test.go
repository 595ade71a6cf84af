package ratelimit

import (
	"strconv"
	"sync"
	"testing"

	"golang.org/x/time/rate"
)

// Both limiters get the same quota; the baseline is x/time/rate.
const benchRate, benchBurst = 1e7, 1_000_000

func BenchmarkAllow(b *testing.B) {
	b.Run("baseline=rate.Limiter.Allow", func(b *testing.B) {
		b.ReportAllocs()
		l := rate.NewLimiter(benchRate, benchBurst)
		for b.Loop() {
			l.Allow()
		}
	})
	b.Run("Local.Allow", func(b *testing.B) {
		b.ReportAllocs()
		l := mustLocal(b, benchRate, benchBurst)
		for b.Loop() {
			l.Allow()
		}
	})
}

func BenchmarkAllowParallel(b *testing.B) {
	b.Run("baseline=rate.Limiter.Allow", func(b *testing.B) {
		b.ReportAllocs()
		l := rate.NewLimiter(benchRate, benchBurst)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow()
			}
		})
	})
	b.Run("Local.Allow", func(b *testing.B) {
		b.ReportAllocs()
		l := mustLocal(b, benchRate, benchBurst)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow()
			}
		})
	})
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "client-" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkKeyedAllow checks 100,000 known keys round robin: every call is
// a hit. The baseline is the naive map of x/time/rate limiters under one
// mutex, with no bound at all.
func BenchmarkKeyedAllow(b *testing.B) {
	const n = 100_000
	// A slow refill keeps every bucket holding state for the whole run, so
	// no key turns idle and every call is a hit.
	const slowRate, hugeBurst = 1, 1_000_000_000
	keys := benchKeys(n)
	b.Run("baseline=mutex+map[string]*rate.Limiter", func(b *testing.B) {
		var mu sync.Mutex
		m := make(map[string]*rate.Limiter, n)
		allow := func(key string) bool {
			mu.Lock()
			l, ok := m[key]
			if !ok {
				l = rate.NewLimiter(slowRate, hugeBurst)
				m[key] = l
			}
			mu.Unlock()
			return l.Allow()
		}
		for _, k := range keys {
			allow(k)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			allow(keys[i])
			if i++; i == n {
				i = 0
			}
		}
	})
	b.Run("Keyed.Allow", func(b *testing.B) {
		k := mustKeyed(b, KeyedConfig{Default: Quota{Rate: slowRate, Burst: hugeBurst}, MaxKeys: 2 * n})
		for _, key := range keys {
			k.Allow(key)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k.Allow(keys[i])
			if i++; i == n {
				i = 0
			}
		}
		if k.Len() != n {
			b.Fatalf("Len = %d, want %d: the benchmark measured misses", k.Len(), n)
		}
	})
	b.Run("Keyed.Allow/parallel", func(b *testing.B) {
		k := mustKeyed(b, KeyedConfig{Default: Quota{Rate: slowRate, Burst: hugeBurst}, MaxKeys: 2 * n})
		for _, key := range keys {
			k.Allow(key)
		}
		b.ReportAllocs()
		var seed sync.Mutex
		next := 0
		b.RunParallel(func(pb *testing.PB) {
			seed.Lock()
			i := next * 7919 % n
			next++
			seed.Unlock()
			for pb.Next() {
				k.Allow(keys[i])
				if i++; i == n {
					i = 0
				}
			}
		})
	})
}
