package breaker_test

import (
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/sony/gobreaker/v2"

	"github.com/proxyless/proxyless/breaker"
)

// The benchmarks compare one admit+record of a successful call, in one run:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./breaker/
//
// BenchmarkAdmitRecord is proxyless; the others are baselines: the failsafe-go permit API it is
// built on, a failsafe-go executor, and sony/gobreaker's Execute.

var windows = []struct {
	name string
	cfg  breaker.Config
}{
	{"window=count", breaker.Config{}}, // the default
	{"window=10s", breaker.Config{Window: 10 * time.Second}},
}

func BenchmarkAdmitRecord(b *testing.B) {
	for _, w := range windows {
		br, err := breaker.New(w.cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(w.name+"/seq", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := br.Allow()
				if err != nil {
					b.Fatal(err)
				}
				p.Done(breaker.Success)
			}
		})
		b.Run(w.name+"/par", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, err := br.Allow()
					if err != nil {
						b.Error(err)
						return
					}
					p.Done(breaker.Success)
				}
			})
		})
	}
}

func BenchmarkSetAdmitRecord(b *testing.B) {
	s, err := breaker.NewSet(breaker.Config{})
	if err != nil {
		b.Fatal(err)
	}
	keys := []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"}
	for _, k := range keys {
		s.Get(k)
	}
	b.Run("par", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				p, err := s.Allow(keys[i%len(keys)])
				if err != nil {
					b.Error(err)
					return
				}
				p.Done(breaker.Success)
				i++
			}
		})
	})
}

// BenchmarkAdmitOpen measures a refusal: an open breaker returns an *OpenError.
func BenchmarkAdmitOpen(b *testing.B) {
	br, err := breaker.New(breaker.Config{MinimumVolume: 1, OpenDelay: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := br.Allow()
	p.Done(breaker.Failure)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Allow(); err == nil {
			b.Fatal("admitted")
		}
	}
}

// failsafeBreaker is configured as breaker.New configures it.
func failsafeBreaker(window time.Duration) circuitbreaker.CircuitBreaker[any] {
	return circuitbreaker.NewBuilder[any]().
		WithFailureRateThreshold(0.5, 20, window).
		WithSuccessThresholdRatio(3, 3).
		WithDelay(5 * time.Second).
		Build()
}

func BenchmarkFailsafePermit(b *testing.B) {
	for _, w := range windows {
		cb := failsafeBreaker(w.cfg.Window)
		b.Run(w.name+"/seq", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !cb.TryAcquirePermit() {
					b.Fatal("refused")
				}
				cb.RecordSuccess()
			}
		})
		b.Run(w.name+"/par", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if cb.TryAcquirePermit() {
						cb.RecordSuccess()
					}
				}
			})
		})
	}
}

func BenchmarkFailsafeExecutor(b *testing.B) {
	ex := failsafe.With[any](failsafeBreaker(0))
	call := func() error { return nil }
	b.Run("seq", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := ex.Run(call); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("par", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = ex.Run(call)
			}
		})
	})
}

func BenchmarkGobreakerExecute(b *testing.B) {
	cb := gobreaker.NewCircuitBreaker[any](gobreaker.Settings{Name: "bench", Interval: 10 * time.Second, Timeout: 5 * time.Second})
	call := func() (any, error) { return nil, nil }
	b.Run("seq", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cb.Execute(call); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("par", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = cb.Execute(call)
			}
		})
	})
}
