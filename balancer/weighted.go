package balancer

// strideScale is the fixed-point unit of stride scheduling: an endpoint of the level's
// largest weight has a stride of strideScale and takes every turn it is offered.
const strideScale = 1 << 16

// pickWeighted is smooth weighted round robin by stride scheduling, lock-free: a shared
// counter walks the available endpoints round after round, and an endpoint of weight w takes
// its turn in a round when its running sum w·round (plus a per-position phase, so that
// endpoints do not all fire in the same round) crosses a multiple of the largest weight. Each
// endpoint therefore gets a share proportional to its weight, spread evenly over time rather
// than in bursts. Slow start scales the weight by its factor.
func (b *Balancer) pickWeighted(v *view, lv *viewLevel, info *PickInfo, now int64) *slot {
	slots, stride := lv.slots, lv.stride
	n := uint64(len(slots))
	// Each offered turn is taken with probability w/maxW ≥ 1/maxW·min weight; the expected
	// number of offers per pick is at most n (more while endpoints ramp up); bound it.
	limit := 4*n + 16
	if b.ssWindow > 0 {
		limit = 4*n*uint64(1/b.ssFloor+1) + 16
	}
	for range limit {
		c := lv.next.Add(1) - 1
		pos, round := c%n, c/n
		sl, st := &slots[pos], &stride[pos]
		e := sl.e
		w := uint64(st.w) // precomputed: weight·strideScale/maxWeight, at least 1
		if b.ssWindow > 0 {
			if f := e.slowStartFactor(now, b.ssWindow, b.ssFloor); f < 1 {
				w = max(uint64(float64(w)*f), 1)
			}
		}
		if (round*w+uint64(st.phase))%strideScale < strideScale-w {
			continue
		}
		if b.avoid(e, info, now) {
			continue
		}
		return sl
	}
	return b.fallback(v, lv, info, now)
}
