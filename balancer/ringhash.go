package balancer

import (
	"math"
	"slices"
	"strconv"
)

// ring is the hash ring of PolicyRingHash: points sorted by hash, each owned by an endpoint
// (an index into the snapshot). It is immutable once built.
type ring struct {
	hashes []uint64 // sorted
	owners []int32  // owners[i] owns hashes[i]
}

// buildRing places points for s's endpoints as Envoy's ring_hash does: endpoint i gets about
// scale × its share of the total weight points, where scale is the smallest size at which
// the lightest endpoint gets a whole number of points while the ring has at least
// MinimumRingSize of them, capped at MaximumRingSize. Point k of an endpoint hashes
// "<addr>_<k>", so that its points stay put when other endpoints come and go.
func buildRing(s *snapshot, c RingHashConfig) ring {
	var total, minW float64 = 0, math.MaxFloat64
	for _, w := range s.weights {
		total += float64(w)
		minW = min(minW, float64(w))
	}
	minNorm := minW / total
	scale := min(math.Ceil(minNorm*float64(c.MinimumRingSize))/minNorm, float64(c.MaximumRingSize))
	n := int(math.Ceil(scale))
	type point struct {
		h uint64
		i int32
	}
	points := make([]point, 0, n)
	var buf []byte
	current, target := 0.0, 0.0
	for i, ep := range s.eps {
		target += scale * float64(s.weights[i]) / total
		buf = append(append(buf[:0], ep.Addr...), '_')
		base := len(buf)
		for k := 0; current < target && len(points) < n; k++ {
			buf = strconv.AppendInt(buf[:base], int64(k), 10)
			points = append(points, point{h: HashBytes(buf), i: int32(i)})
			current++
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return int(a.i - b.i)
	})
	r := ring{hashes: make([]uint64, len(points)), owners: make([]int32, len(points))}
	for k, p := range points {
		r.hashes[k], r.owners[k] = p.h, p.i
	}
	return r
}

// walkRing finds the first point at or after the key (wrapping around) and walks on, point
// by point, to the first whose endpoint is usable; nil when none is. The walk is bounded by
// the ring's size and skips the points of an endpoint it has just found unusable.
func (b *Balancer) walkRing(v *view, info *PickInfo, now int64) *slot {
	r := &v.s.ring
	n := len(r.hashes)
	if n == 0 {
		return nil
	}
	start := firstAtOrAfter(r.hashes, info.Key)
	last := int32(-1)
	for k := range n {
		o := r.owners[(start+k)%n]
		if o == last {
			continue
		}
		last = o
		if sl := &v.s.all[o]; b.hashUsable(v, sl.e, info, now) {
			return sl
		}
	}
	return nil
}

// firstAtOrAfter returns the index of the first of the sorted hashes that is at least key,
// len(hashes) when none is (the walk then wraps around to the first).
func firstAtOrAfter(hashes []uint64, key uint64) int {
	lo, hi := 0, len(hashes)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if hashes[mid] < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// RingSize returns the number of points on the ring of a PolicyRingHash balancer, 0 for
// other policies or an empty set: for tests and status pages.
func (b *Balancer) RingSize() int { return len(b.snap.Load().ring.hashes) }
