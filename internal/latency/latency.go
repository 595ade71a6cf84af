// Package latency keeps a lock-free, fixed-size histogram of recent latencies and answers
// quantile queries, for hedging delays that follow the observed latency of a destination.
package latency

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Buckets are log-linear: 4 per power of two of microseconds, from 1 µs to about 2^34 µs
// (over 4 hours); a quantile is answered with its bucket's upper bound, so at most 25 % above the true value.
const (
	subBuckets = 4
	powers     = 35
	numBuckets = powers * subBuckets
)

// Window is how long samples count: the histogram keeps the current and the previous window
// and answers from both, so a quantile reflects the last one to two windows.
const Window = 10 * time.Second

// Histogram is safe for concurrent use; Record allocates nothing and takes no lock. The zero
// value is ready to use.
type Histogram struct {
	windows [2]window
	epoch   atomic.Int64 // index of the current window, as now/Window
}

type window struct {
	epoch  atomic.Int64
	counts [numBuckets]atomic.Uint64
	total  atomic.Uint64
}

func bucketOf(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < 1 {
		return 0
	}
	p := bits.Len64(us) - 1 // us in [2^p, 2^(p+1))
	var sub uint64
	if p >= 2 {
		sub = (us >> (p - 2)) & (subBuckets - 1)
	} else {
		sub = (us << (2 - p)) & (subBuckets - 1)
	}
	b := p*subBuckets + int(sub)
	return min(b, numBuckets-1)
}

// upper returns the upper bound of bucket b.
func upper(b int) time.Duration {
	p, sub := b/subBuckets, b%subBuckets
	us := (uint64(1) << p) + (uint64(sub+1) << p / subBuckets)
	return time.Duration(us) * time.Microsecond
}

// Record adds one latency observed at now.
func (h *Histogram) Record(now time.Time, d time.Duration) {
	w := h.current(now.UnixNano() / int64(Window))
	w.counts[bucketOf(d)].Add(1)
	w.total.Add(1)
}

// current returns the window of epoch e, clearing it first when it held an older epoch.
// Clearing races benignly with concurrent Records: a few samples may be lost at a boundary.
func (h *Histogram) current(e int64) *window {
	w := &h.windows[e&1]
	if old := w.epoch.Load(); old != e && w.epoch.CompareAndSwap(old, e) {
		for i := range w.counts {
			w.counts[i].Store(0)
		}
		w.total.Store(0)
	}
	return w
}

// Quantile returns the q-quantile (0 < q ≤ 1) of the latencies recorded in the last one to two
// windows before now, and false when fewer than minSamples were recorded.
func (h *Histogram) Quantile(now time.Time, q float64, minSamples uint64) (time.Duration, bool) {
	e := now.UnixNano() / int64(Window)
	var ws [2]*window
	n := 0
	var total uint64
	for i := range h.windows {
		w := &h.windows[i]
		if ep := w.epoch.Load(); ep == e || ep == e-1 {
			ws[n] = w
			n++
			total += w.total.Load()
		}
	}
	if total == 0 || total < minSamples {
		return 0, false
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for b := range numBuckets {
		for _, w := range ws[:n] {
			seen += w.counts[b].Load()
		}
		if seen >= rank {
			return upper(b), true
		}
	}
	return upper(numBuckets - 1), true
}
