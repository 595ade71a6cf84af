package balancer

import "math/rand/v2"

// p2cTries is how many pairs a P2C pick draws before falling back to a scan, when the
// endpoints drawn are to be avoided (tried already, or steered away by Retry-After).
const p2cTries = 3

// pickP2C is power of two choices: draw two distinct available endpoints at random and take
// the one with the lower load per unit of weight. The load is the peak EWMA of latency times
// in-flight + 1 (ewma) or in-flight + 1 (least request). An endpoint in slow start takes part
// in the comparison with probability equal to its slow-start factor.
func (b *Balancer) pickP2C(s *snapshot, lv *viewLevel, info *PickInfo, now int64, ewma bool) int32 {
	idx := lv.idx
	n := len(idx)
	if n == 1 {
		if !b.avoid(s.states[idx[0]], info, now) {
			return idx[0]
		}
		return b.fallback(s, lv, info, now)
	}
	for range p2cTries {
		r := rand.Uint64()
		i := bounded(uint32(r), n)
		j := bounded(uint32(r>>32), n-1)
		if j >= i {
			j++
		}
		x, y := idx[i], idx[j]
		ex, ey := s.states[x], s.states[y]
		okX, okY := !b.avoid(ex, info, now), !b.avoid(ey, info, now)
		switch {
		case okX && okY:
			var yWins bool
			if ewma {
				yWins = b.ewmaLess(ey, ex, s.weights[y], s.weights[x], now)
			} else {
				// (in-flight+1)/weight compared by cross-multiplying.
				yWins = uint64(ey.inflight.Load()+1)*uint64(s.weights[x]) < uint64(ex.inflight.Load()+1)*uint64(s.weights[y])
			}
			if b.ssWindow > 0 {
				outX := ex.slowStartFactor(now, b.ssWindow, b.ssFloor) < rand.Float64()
				outY := ey.slowStartFactor(now, b.ssWindow, b.ssFloor) < rand.Float64()
				if outX != outY {
					yWins = outX
				}
			}
			if yWins {
				return y
			}
			return x
		case okX:
			return x
		case okY:
			return y
		}
	}
	return b.fallback(s, lv, info, now)
}

// ewmaLess reports whether a's peak-EWMA load per unit of weight is below b's at now. The
// load is the decayed cost times in-flight + 1; an endpoint without a latency sample has load
// 0 when idle and a large penalty while it has requests in flight. The decay factor is the
// cheap tau/(tau+dt), close to exp(-dt/tau) for dt well below tau (the exact exponential is
// used when samples are recorded). Comparing cross-multiplied keeps divisions off the path.
func (b *Balancer) ewmaLess(a, c *endpointState, wa, wc uint32, now int64) bool {
	la, da := a.rawLoad(now, b.tau)
	lc, dc := c.rawLoad(now, b.tau)
	// la/da/wa < lc/dc/wc
	return la*dc*float64(wc) < lc*da*float64(wa)
}

// avoid reports whether a pick should pass over e if it can: e was tried already by this
// request, or is steered away from by Retry-After.
func (b *Balancer) avoid(e *endpointState, info *PickInfo, now int64) bool {
	return now < e.backoffUntil.Load() || (info.Tried.n > 0 && info.Tried.has(e))
}

// fallback scans for an endpoint not to avoid: first in lv from a random point, then in the
// other levels of the view. When every endpoint is to be avoided, it returns a random one of
// lv: avoidance is a preference, never a refusal.
func (b *Balancer) fallback(s *snapshot, lv *viewLevel, info *PickInfo, now int64) int32 {
	start := bounded(rand.Uint32(), len(lv.idx))
	if i, ok := b.scan(s, lv.idx, start, info, now); ok {
		return i
	}
	v := s.view.Load()
	for k := range v.levels {
		if l := &v.levels[k]; l != lv && len(l.idx) > 0 {
			if i, ok := b.scan(s, l.idx, 0, info, now); ok {
				return i
			}
		}
	}
	return lv.idx[start]
}

func (b *Balancer) scan(s *snapshot, idx []int32, start int, info *PickInfo, now int64) (int32, bool) {
	for k := range idx {
		i := idx[(start+k)%len(idx)]
		if !b.avoid(s.states[i], info, now) {
			return i, true
		}
	}
	return 0, false
}

// bounded maps r uniformly onto [0,n) (Lemire's multiply-shift).
func bounded(r uint32, n int) int { return int((uint64(r) * uint64(n)) >> 32) }
