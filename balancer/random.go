package balancer

import (
	"math/bits"
	"math/rand/v2"
)

// randomTries bounds the rejection sampling of pickRandom before it falls back to a scan.
const randomTries = 32

// Randomness on the pick path. Balancing needs a uniform spread, not unpredictability. A pick
// that needs random numbers takes one 64-bit seed from math/rand/v2's global source (the
// runtime's per-thread generator: no lock, no shared cache line) and draws what it needs from
// a wyrand stream of its own on the stack (pickRand), one inlined step per draw. (Reaching the
// runtime's cheaper wyrand by go:linkname saved about 3 ns a pick; not worth depending on a
// runtime internal.)

// rand64 returns 64 random bits.
func (b *Balancer) rand64() uint64 { return rand.Uint64() }

// randFloat returns a random float64 in [0,1), as math/rand/v2's Float64.
func (b *Balancer) randFloat() float64 { return float64(b.rand64()<<11>>11) / (1 << 53) }

// pickRand is one pick's random stream: wyrand over a seed from rand64. The zero value is not
// seeded; a pick seeds it before the first draw.
type pickRand struct{ s uint64 }

const (
	wyP0 = 0xa0761d6478bd642f
	wyP1 = 0xe7037ed1a0b428db
)

func (r *pickRand) next() uint64 {
	r.s += wyP0
	hi, lo := bits.Mul64(r.s, r.s^wyP1)
	return hi ^ lo
}

// float returns a random float64 in [0,1), as math/rand/v2's Float64.
func (r *pickRand) float() float64 { return float64(r.next()<<11>>11) / (1 << 53) }

// pickRandom draws an available endpoint uniformly and accepts it with probability
// weight/largest weight (times its slow-start factor), so that picks are proportional to
// weight. rng is seeded.
func (b *Balancer) pickRandom(v *view, lv *viewLevel, info *PickInfo, now int64, rng *pickRand) *slot {
	slots := lv.slots
	n := len(slots)
	maxW := uint64(lv.maxWeight)
	for range randomTries {
		r := rng.next()
		sl := &slots[bounded(uint32(r), n)]
		if w := uint64(sl.w); w < maxW && (r>>32)*maxW >= w<<32 {
			continue
		}
		e := sl.e
		if b.avoid(e, info, now) {
			continue
		}
		if b.ssWindow > 0 {
			if f := e.slowStartFactor(now, b.ssWindow, b.ssFloor); f < 1 && rng.float() >= f {
				continue
			}
		}
		return sl
	}
	return b.fallback(v, lv, info, now)
}
