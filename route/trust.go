package route

import (
	"net/netip"
	"slices"
)

// TrustPrefixes returns a trust predicate (see [WithTrust]) that accepts callers whose
// [Request].RemoteAddr ("ip:port" or a bare IP) is inside one of the prefixes.
func TrustPrefixes(prefixes ...netip.Prefix) func(*Request) bool {
	ps := slices.Clone(prefixes)
	for i, p := range ps {
		ps[i] = p.Masked()
	}
	return func(r *Request) bool {
		addr, ok := remoteIP(r.RemoteAddr)
		if !ok {
			return false
		}
		for _, p := range ps {
			if p.Contains(addr) {
				return true
			}
		}
		return false
	}
}

// TrustIdentities returns a trust predicate (see [WithTrust]) that accepts callers whose
// authenticated [Request].Identity is one of ids. An empty identity is never trusted.
func TrustIdentities(ids ...string) func(*Request) bool {
	set := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if id != "" {
			set[id] = struct{}{}
		}
	}
	return func(r *Request) bool {
		if r.Identity == "" {
			return false
		}
		_, ok := set[r.Identity]
		return ok
	}
}

func remoteIP(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}
