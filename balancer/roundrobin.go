package balancer

// pickRoundRobin takes the available endpoints in turn, ignoring weights. An endpoint in slow
// start takes its turn with probability equal to its slow-start factor.
func (b *Balancer) pickRoundRobin(v *view, lv *viewLevel, info *PickInfo, now int64) *slot {
	slots := lv.slots
	n := uint64(len(slots))
	for range n {
		sl := &slots[(lv.next.Add(1)-1)%n]
		e := sl.e
		if b.avoid(e, info, now) {
			continue
		}
		if b.ssWindow > 0 {
			if f := e.slowStartFactor(now, b.ssWindow, b.ssFloor); f < 1 && b.randFloat() >= f {
				continue
			}
		}
		return sl
	}
	return b.fallback(v, lv, info, now)
}
