package balancer

import "math/rand/v2"

// randomTries bounds the rejection sampling of pickRandom before it falls back to a scan.
const randomTries = 32

// pickRandom draws an available endpoint uniformly and accepts it with probability
// weight/largest weight (times its slow-start factor), so that picks are proportional to
// weight.
func (b *Balancer) pickRandom(s *snapshot, lv *viewLevel, info *PickInfo, now int64) int32 {
	idx := lv.idx
	n := len(idx)
	maxW := uint64(lv.maxWeight)
	for range randomTries {
		r := rand.Uint64()
		i := idx[bounded(uint32(r), n)]
		if w := uint64(s.weights[i]); w < maxW && (r>>32)*maxW >= w<<32 {
			continue
		}
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
