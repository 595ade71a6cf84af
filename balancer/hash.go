package balancer

// Hashing for PolicyMaglev keys: FNV-1a followed by a 64-bit finalizer, so that keys that
// differ in a few bits land far apart. The hash is stable across processes and versions, so
// that every client of a service maps a key to the same endpoint.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// HashString returns the hash of s for use as [PickInfo].Key. It never returns 0, which
// means "no key".
func HashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return nonZero(mix64(h))
}

// HashBytes returns the hash of p for use as [PickInfo].Key; HashBytes(p) equals
// HashString(string(p)). It never returns 0.
func HashBytes(p []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range p {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return nonZero(mix64(h))
}

func nonZero(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// mix64 is the splitmix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
