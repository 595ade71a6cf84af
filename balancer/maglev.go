package balancer

// maglevProbes is how many alternative slots a keyed pick tries when the endpoint in the
// key's slot is unavailable, before it scans the endpoints from a point the key fixes.
const maglevProbes = 8

// pickHashed is the pick of the consistent-hashing policies. A pick without a key is random.
// With one, the policy finds the key's endpoint; when that endpoint is ejected, unhealthy
// (outside panic mode) or to be avoided (tried already by this request, or steered away by
// Retry-After), the policy walks on to the next candidate (Maglev: the key rehashed; ring
// hash: the next point of the ring), so that a key keeps going to the same alternative while
// its endpoint is out. When the walk finds none, the endpoints are scanned from a position
// the key fixes; only when every endpoint is out or avoided is the pick random (avoidance is
// a preference, never a refusal). Zone priority does not apply to hashed picks: stickiness
// wins over locality. rng is seeded when info.Key is 0.
func (b *Balancer) pickHashed(v *view, info *PickInfo, now int64, rng *pickRand) *slot {
	if info.Key == 0 {
		return b.pickRandom(v, v.level(rng), info, now, rng)
	}
	var sl *slot
	if b.policy == codeRingHash {
		sl = b.walkRing(v, info, now)
	} else {
		sl = b.probeMaglev(v, info, now)
	}
	if sl != nil {
		return sl
	}
	all := v.s.all
	start := int(info.Key % uint64(len(all)))
	for k := range all {
		if sl := &all[(start+k)%len(all)]; b.hashUsable(v, sl.e, info, now) {
			return sl
		}
	}
	rng.s = b.rand64()
	return b.pickRandom(v, v.level(rng), info, now, rng)
}

// hashUsable reports whether a hashed pick may take e: available (healthy, or any endpoint
// in panic mode) and not to be avoided.
func (b *Balancer) hashUsable(v *view, e *endpointState, info *PickInfo, now int64) bool {
	return (v.panic || e.healthyAt(now)) && !b.avoid(e, info, now)
}

// probeMaglev looks the key up in the Maglev table, rehashing it up to maglevProbes times
// while the endpoint found is not usable; nil when none was.
func (b *Balancer) probeMaglev(v *view, info *PickInfo, now int64) *slot {
	s := v.s
	m := uint64(len(s.maglev))
	k := info.Key
	for t := range uint64(maglevProbes) {
		sl := &s.all[s.maglev[k%m]]
		if b.hashUsable(v, sl.e, info, now) {
			return sl
		}
		k = mix64(info.Key + t + 1)
	}
	return nil
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

// maxMaglevTableSize bounds Config.MaglevTableSize, as Envoy bounds table_size.
const maxMaglevTableSize = 5000011
