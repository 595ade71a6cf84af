package ratelimit

// This file is the package's one adapter to net/http: a key function that
// finds the client's address behind trusted proxies.

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIPConfig configures [ClientIP]. The zero value keys every request by
// the address of its direct peer and never reads X-Forwarded-For.
type ClientIPConfig struct {
	// TrustedProxies lists the proxies, as CIDR prefixes ("10.0.0.0/8") or
	// single addresses ("192.0.2.7", "::1"), whose X-Forwarded-For is
	// believed. Default none: X-Forwarded-For is ignored, since any client
	// can write it.
	TrustedProxies []string `json:"trustedProxies,omitempty" yaml:"trustedProxies,omitempty"`
	// IPv6Prefix keys IPv6 clients by their network of that many bits
	// ("2001:db8:1:2::/64") rather than by address, so that a client cannot
	// multiply its quota with the 2^64 addresses of its subnet. It must lie
	// in [0, 128]; 128 keys by the full address. Default 0 means 64: one
	// /64, what one site or one host is usually given.
	IPv6Prefix int `json:"ipv6Prefix,omitempty" yaml:"ipv6Prefix,omitempty"`
}

// ClientIP returns a key function for per-client limits: it maps a request
// to its client's IP address in canonical form ("192.0.2.1", "2001:db8::1";
// IPv4-mapped IPv6 addresses become IPv4).
//
// The client is the direct peer (http.Request.RemoteAddr) unless that peer
// is a trusted proxy. Then X-Forwarded-For (every line of it, in order) is
// read from the right, skipping addresses of trusted proxies: the first
// untrusted address is the client. Only entries that trusted proxies
// appended are believed, so a client cannot choose its key by sending its
// own X-Forwarded-For. When every hop is trusted the leftmost one is the
// client; when the walk meets an entry that is not an address (a port is
// allowed: "192.0.2.1:443", "[2001:db8::1]:443"), the last trusted hop is.
// A RemoteAddr that holds no IP (a Unix socket, a test that left it empty)
// gives the key "".
//
// Errors name the bad field. The function is safe for concurrent use and
// does not allocate when the address it returns is already canonical.
func ClientIP(cfg ClientIPConfig) (func(*http.Request) string, error) {
	c, err := newClientIP(cfg)
	if err != nil {
		return nil, err
	}
	return c.key, nil
}

// ClientAddr is [ClientIP] over the two things it reads of a request, for servers that are
// not net/http (a gRPC server: the peer's address and the x-forwarded-for metadata): peer is
// the direct peer's address, with or without a port, and forwardedFor the X-Forwarded-For
// lines in the order they came. The function it returns keys as ClientIP's does, by the same
// trust rules, and is safe for concurrent use.
func ClientAddr(cfg ClientIPConfig) (func(peer string, forwardedFor []string) string, error) {
	c, err := newClientIP(cfg)
	if err != nil {
		return nil, err
	}
	return c.addr, nil
}

// defaultIPv6Prefix is how IPv6 clients are grouped when ClientIPConfig.IPv6Prefix is 0.
const defaultIPv6Prefix = 64

func newClientIP(cfg ClientIPConfig) (*clientIP, error) {
	if cfg.IPv6Prefix < 0 || cfg.IPv6Prefix > 128 {
		return nil, fmt.Errorf("ratelimit: IPv6Prefix %d is outside [0, 128]", cfg.IPv6Prefix)
	}
	trusted := make([]netip.Prefix, 0, len(cfg.TrustedProxies))
	for i, s := range cfg.TrustedProxies {
		p, err := parseTrusted(s)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: TrustedProxies[%d] %q is neither a CIDR prefix nor an IP address", i, s)
		}
		trusted = append(trusted, p)
	}
	bits := cfg.IPv6Prefix
	if bits == 0 {
		bits = defaultIPv6Prefix
	}
	return &clientIP{trusted: trusted, v6bits: bits}, nil
}

func parseTrusted(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8; addresses are unmapped before matching.
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("mapped prefix shorter than 96 bits")
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

type clientIP struct {
	trusted []netip.Prefix // immutable
	v6bits  int            // immutable; 0 keys by the full address
}

func (c *clientIP) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (c *clientIP) key(r *http.Request) string {
	var lines []string
	if len(c.trusted) > 0 {
		lines = r.Header.Values("X-Forwarded-For")
	}
	return c.addr(r.RemoteAddr, lines)
}

func (c *clientIP) addr(peer string, lines []string) string {
	s, a, ok := parseHost(peer)
	if !ok {
		return ""
	}
	if len(c.trusted) == 0 || !c.isTrusted(a) {
		return c.format(s, a)
	}
	// The peer is a trusted proxy: walk X-Forwarded-For from the right.
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for len(line) > 0 {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue // "a,,b" or a trailing comma: nothing written here
			}
			es, ea, ok := parseHost(entry)
			if !ok {
				return c.format(s, a) // unreadable: the last trusted hop is all we know
			}
			s, a = es, ea
			if !c.isTrusted(a) {
				return c.format(s, a)
			}
		}
	}
	return c.format(s, a) // every hop trusted: the leftmost
}

// parseHost reads an IP address, with or without a port, and returns the
// text of the address alone with the address, unmapped and without zone.
func parseHost(s string) (string, netip.Addr, bool) {
	// Choose the parser by shape: a failed parse allocates its error.
	first, last := strings.IndexByte(s, ':'), strings.LastIndexByte(s, ':')
	if !strings.HasPrefix(s, "[") && (first < 0 || first != last) {
		// No port: "192.0.2.1", "2001:db8::1".
		a, err := netip.ParseAddr(s)
		if err != nil {
			return "", netip.Addr{}, false
		}
		return s, a.Unmap().WithZone(""), true
	}
	// "192.0.2.1:80", "[2001:db8::1]:80".
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", netip.Addr{}, false
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s[:last], "["), "]")
	return host, ap.Addr().Unmap().WithZone(""), true
}

// format returns the key of a: s itself when s already is its canonical
// form, so that the common case does not allocate.
func (c *clientIP) format(s string, a netip.Addr) string {
	if c.v6bits < 128 && a.Is6() {
		p, _ := a.Prefix(c.v6bits) // cannot fail: 1 <= v6bits <= 128 and a is IPv6 without zone
		return p.String()
	}
	var buf [64]byte
	b := a.AppendTo(buf[:0])
	if string(b) == s {
		return s
	}
	return string(b)
}
