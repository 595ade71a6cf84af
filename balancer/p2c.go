package balancer

import "math"

// p2cTries is how many pairs a P2C pick draws before falling back to a scan, when the
// endpoints drawn are to be avoided (tried already, or steered away by Retry-After).
const p2cTries = 3

// pickP2C is power of two choices: draw two distinct available endpoints at random and take
// the one with the lower load per unit of weight. The load is the peak EWMA of latency times
// in-flight + 1 (ewma) or in-flight + 1 (least request). An endpoint in slow start takes part
// in the comparison with probability equal to its slow-start factor. rng is seeded.
func (b *Balancer) pickP2C(v *view, lv *viewLevel, info *PickInfo, now int64, ewma bool, rng *pickRand) *slot {
	slots := lv.slots
	n := len(slots)
	if n == 1 {
		if !b.avoid(slots[0].e, info, now) {
			return &slots[0]
		}
		return b.fallback(v, lv, info, now)
	}
	for range p2cTries {
		r := rng.next()
		i := bounded(uint32(r), n)
		j := bounded(uint32(r>>32), n-1)
		if j >= i {
			j++
		}
		x, y := &slots[i], &slots[j]
		ex, ey := x.e, y.e
		okX, okY := !b.avoid(ex, info, now), !b.avoid(ey, info, now)
		switch {
		case okX && okY:
			var yWins bool
			if ewma {
				// Peak EWMA: y's load per unit of weight is below x's, ly/dy/wy < lx/dx/wx,
				// cross-multiplied so that no division is needed. The products are grouped
				// so that the weights' and denominators' part overlaps the loads of the
				// in-flight counts and costs.
				ly, dy := ey.rawLoad(now, b.tau)
				lx, dx := ex.rawLoad(now, b.tau)
				// An idle endpoint with no sample yet (load 0) is not preferred over a
				// measured one: it costs what the balancer's endpoints typically cost, so
				// it loses to a fast endpoint and wins over a slow one.
				if lx == 0 {
					lx, dx = b.typicalLoad()
				}
				if ly == 0 {
					ly, dy = b.typicalLoad()
				}
				yWins = ly*(dx*float64(x.w)) < lx*(dy*float64(y.w))
			} else {
				// (in-flight+1)/weight compared by cross-multiplying.
				yWins = uint64(ey.inflight.Load()+1)*uint64(x.w) < uint64(ex.inflight.Load()+1)*uint64(y.w)
			}
			if b.ssWindow > 0 {
				outX := ex.slowStartFactor(now, b.ssWindow, b.ssFloor) < rng.float()
				outY := ey.slowStartFactor(now, b.ssWindow, b.ssFloor) < rng.float()
				if outX != outY {
					yWins = outX
				}
			}
			return choose(x, y, yWins)
		case okX:
			return x
		case okY:
			return y
		}
	}
	return b.fallback(v, lv, info, now)
}

// choose returns y when yWins and x otherwise, without a branch: which of two random
// endpoints wins is a coin toss that a branch predictor would miss half the time.
func choose(x, y *slot, yWins bool) *slot {
	if yWins {
		x = y
	}
	return x
}

// avoid reports whether a pick should pass over e if it can: e was tried already by this
// request, or is steered away from by Retry-After.
func (b *Balancer) avoid(e *endpointState, info *PickInfo, now int64) bool {
	return now < e.backoffUntil.Load() || (info.Tried.n > 0 && info.Tried.has(e))
}

// fallback scans for an endpoint not to avoid: first in lv from a random point, then in the
// other levels of v. When every endpoint is to be avoided, it returns a random one of lv:
// avoidance is a preference, never a refusal.
func (b *Balancer) fallback(v *view, lv *viewLevel, info *PickInfo, now int64) *slot {
	start := bounded(uint32(b.rand64()), len(lv.slots))
	if sl := b.scan(lv.slots, start, info, now); sl != nil {
		return sl
	}
	for k := range v.levels {
		if l := &v.levels[k]; l != lv && len(l.slots) > 0 {
			if sl := b.scan(l.slots, 0, info, now); sl != nil {
				return sl
			}
		}
	}
	return &lv.slots[start]
}

// scan returns the first slot from start on, wrapping around, whose endpoint is not to be
// avoided, or nil.
func (b *Balancer) scan(slots []slot, start int, info *PickInfo, now int64) *slot {
	for k := range slots {
		sl := &slots[(start+k)%len(slots)]
		if !b.avoid(sl.e, info, now) {
			return sl
		}
	}
	return nil
}

// bounded maps r uniformly onto [0,n) (Lemire's multiply-shift).
func bounded(r uint32, n int) int { return int((uint64(r) * uint64(n)) >> 32) }

// typicalLoad is the load of an idle endpoint that has no latency sample yet: the typical
// latency of the balancer's endpoints, with no decay (0 before any sample: a tie).
func (b *Balancer) typicalLoad() (num, den float64) {
	return math.Float64frombits(b.typical.Load()), b.tau
}
