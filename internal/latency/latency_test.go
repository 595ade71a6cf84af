package latency

import (
	"testing"
	"time"
)

func TestBucketsCoverAndOrder(t *testing.T) {
	prev := -1
	for _, d := range []time.Duration{0, time.Microsecond, 3 * time.Microsecond, 100 * time.Microsecond,
		time.Millisecond, 7 * time.Millisecond, time.Second, time.Minute, 10 * time.Hour} {
		b := bucketOf(d)
		if b < prev {
			t.Fatalf("bucket of %v (%d) below the previous (%d)", d, b, prev)
		}
		prev = b
		if d >= time.Microsecond && d < time.Hour && upper(b) < d {
			t.Fatalf("upper(%d) = %v below %v", b, upper(b), d)
		}
		if d >= 4*time.Microsecond && d < time.Hour && float64(upper(b)) > 1.26*float64(d) {
			t.Fatalf("upper(%d) = %v too far above %v", b, upper(b), d)
		}
	}
}

func TestQuantile(t *testing.T) {
	var h Histogram
	now := time.Unix(1_000_000, 0)
	if _, ok := h.Quantile(now, 0.9, 1); ok {
		t.Fatal("empty histogram answered")
	}
	for i := 1; i <= 100; i++ {
		h.Record(now, time.Duration(i)*time.Millisecond)
	}
	if _, ok := h.Quantile(now, 0.9, 1000); ok {
		t.Fatal("answered below minSamples")
	}
	q, ok := h.Quantile(now, 0.9, 10)
	if !ok || q < 90*time.Millisecond || q > 110*time.Millisecond {
		t.Fatalf("p90 = %v, %v; want about 90ms", q, ok)
	}
	// Samples age out after two windows.
	if _, ok := h.Quantile(now.Add(2*Window+time.Second), 0.9, 1); ok {
		t.Fatal("old samples still counted")
	}
	// A new window clears the slot it reuses.
	h.Record(now.Add(2*Window), 5*time.Millisecond)
	q, _ = h.Quantile(now.Add(2*Window), 1, 1)
	if q > 7*time.Millisecond {
		t.Fatalf("max after rotation = %v, want about 5ms", q)
	}
	if allocs := testing.AllocsPerRun(100, func() { h.Record(now, time.Millisecond) }); allocs != 0 {
		t.Fatalf("Record allocates %v", allocs)
	}
}
