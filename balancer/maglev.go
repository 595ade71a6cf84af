package balancer

// maglevProbes is how many alternative slots a keyed pick tries when the endpoint in the
// key's slot is unavailable, before it falls back to a random pick.
const maglevProbes = 8

// pickMaglev looks the key up in the Maglev table. When the endpoint found is ejected,
// unhealthy (outside panic mode) or to be avoided, it rehashes the key and looks again, so
// that a key keeps going to the same alternative while its endpoint is out. Zone priority does
// not apply to hashed picks: stickiness wins over locality. A pick without a key is random.
// rng is seeded when info.Key is 0.
func (b *Balancer) pickMaglev(v *view, info *PickInfo, now int64, rng *pickRand) *slot {
	if info.Key == 0 {
		return b.pickRandom(v, v.level(rng), info, now, rng)
	}
	s := v.s
	m := uint64(len(s.maglev))
	k := info.Key
	for t := range uint64(maglevProbes) {
		sl := &s.all[s.maglev[k%m]]
		if (v.panic || sl.e.healthyAt(now)) && !b.avoid(sl.e, info, now) {
			return sl
		}
		k = mix64(info.Key + t + 1)
	}
	rng.s = b.rand64()
	return b.pickRandom(v, v.level(rng), info, now, rng)
}

// buildMaglev fills a Maglev lookup table (Eisenbud et al., NSDI 2016) for s's endpoints,
// weighted: in each pass an endpoint claims its next preferred free slot when its
// accumulated weight reaches the largest weight, so its share of slots is proportional to its
// weight. The table size is the configured prime, or a larger prime when there are more than
// a tenth as many endpoints, so that each endpoint has enough slots for an even spread.
func buildMaglev(s *snapshot, size int) []int32 {
	n := len(s.eps)
	if n*10 > size {
		size = n*10 + 1
		for !isPrime(size) {
			size += 2
		}
	}
	m := uint64(size)
	// Endpoint i's preference list is (offset + k·skip) mod m for k = 0, 1, ...; pos holds its
	// next entry, stepped by addition rather than recomputed with a division.
	pos := make([]uint64, n)
	skip := make([]uint64, n)
	credit := make([]uint64, n)
	var maxW uint64
	for i, ep := range s.eps {
		h := HashString(ep.Addr)
		pos[i] = mix64(h^0x6a09e667f3bcc908) % m
		skip[i] = mix64(h^0xbb67ae8584caa73b)%(m-1) + 1
		maxW = max(maxW, uint64(s.weights[i]))
	}
	table := make([]int32, m)
	for i := range table {
		table[i] = -1
	}
	for filled := uint64(0); filled < m; {
		for i := 0; i < n && filled < m; i++ {
			credit[i] += uint64(s.weights[i])
			if credit[i] < maxW {
				continue
			}
			credit[i] -= maxW
			for {
				c := pos[i]
				if pos[i] += skip[i]; pos[i] >= m {
					pos[i] -= m
				}
				if table[c] < 0 {
					table[c] = int32(i)
					filled++
					break
				}
			}
		}
	}
	return table
}
