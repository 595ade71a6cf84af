package balancer

import "math/rand/v2"

// pickRoundRobin takes the available endpoints in turn, ignoring weights. An endpoint in slow
// start takes its turn with probability equal to its slow-start factor.
func (b *Balancer) pickRoundRobin(s *snapshot, lv *viewLevel, info *PickInfo, now int64) int32 {
	idx := lv.idx
	n := uint64(len(idx))
	for range n {
		i := idx[(lv.next.Add(1)-1)%n]
		e := s.states[i]
		if b.avoid(e, info, now) {
			continue
		}
		if b.ssWindow > 0 {
			if f := e.slowStartFactor(now, b.ssWindow, b.ssFloor); f < 1 && rand.Float64() >= f {
				continue
			}
		}
		return i
	}
	return b.fallback(s, lv, info, now)
}
