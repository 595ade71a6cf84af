package ratelimit_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/ratelimit"
)

func request(remote string, xff ...string) *http.Request {
	r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

func TestClientIP(t *testing.T) {
	trusted := ratelimit.ClientIPConfig{TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7", "::1", "::ffff:172.16.0.0/108"}, IPv6Prefix: 128}
	for _, tc := range []struct {
		name   string
		cfg    ratelimit.ClientIPConfig
		remote string
		xff    []string
		want   string
	}{
		{"peer", ratelimit.ClientIPConfig{}, "203.0.113.9:4711", nil, "203.0.113.9"},
		{"no trusted proxies: XFF ignored", ratelimit.ClientIPConfig{}, "203.0.113.9:4711", []string{"198.51.100.1"}, "203.0.113.9"},
		{"untrusted peer: XFF ignored", trusted, "203.0.113.9:4711", []string{"198.51.100.1"}, "203.0.113.9"},
		{"trusted peer: rightmost entry", trusted, "10.1.2.3:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"spoofed left entries ignored", trusted, "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"trusted hops skipped", trusted, "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.1, 192.0.2.7,10.9.9.9"}, "198.51.100.1"},
		{"several header lines in order", trusted, "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.1", "10.0.0.1"}, "198.51.100.1"},
		{"every hop trusted: leftmost", trusted, "10.1.2.3:80", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"trusted peer without XFF", trusted, "10.1.2.3:80", nil, "10.1.2.3"},
		{"garbage: last trusted hop", trusted, "10.1.2.3:80", []string{"198.51.100.1, unknown, 10.0.0.5"}, "10.0.0.5"},
		{"garbage right of everything", trusted, "10.1.2.3:80", []string{"198.51.100.1, nonsense"}, "10.1.2.3"},
		{"empty entries skipped", trusted, "10.1.2.3:80", []string{" 198.51.100.1 ,, ", ""}, "198.51.100.1"},
		{"entry with port", trusted, "10.1.2.3:80", []string{"198.51.100.1:5555"}, "198.51.100.1"},
		{"IPv6 entry with port", trusted, "10.1.2.3:80", []string{"[2001:db8::1]:5555"}, "2001:db8::1"},
		{"IPv6 peer trusted", trusted, "[::1]:80", []string{"2001:db8::2"}, "2001:db8::2"},
		{"IPv6 canonical form", ratelimit.ClientIPConfig{IPv6Prefix: 128}, "[2001:DB8:0:0::1]:80", nil, "2001:db8::1"},
		{"IPv6 grouped by /64 by default", ratelimit.ClientIPConfig{}, "[2001:db8:1:2:3:4:5:6]:80", nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped peer unmapped", ratelimit.ClientIPConfig{}, "[::ffff:203.0.113.9]:80", nil, "203.0.113.9"},
		{"IPv4-mapped trusted prefix", trusted, "172.16.5.5:80", []string{"198.51.100.3"}, "198.51.100.3"},
		{"zone dropped", ratelimit.ClientIPConfig{IPv6Prefix: 128}, "[fe80::1%eth0]:80", nil, "fe80::1"},
		{"IPv6 grouped by /64", ratelimit.ClientIPConfig{IPv6Prefix: 64}, "[2001:db8:1:2:3:4:5:6]:80", nil, "2001:db8:1:2::/64"},
		{"IPv4 not grouped", ratelimit.ClientIPConfig{IPv6Prefix: 64}, "203.0.113.9:80", nil, "203.0.113.9"},
		{"no port", ratelimit.ClientIPConfig{}, "203.0.113.9", nil, "203.0.113.9"},
		{"unix socket", ratelimit.ClientIPConfig{}, "@", nil, ""},
		{"empty", trusted, "", []string{"198.51.100.1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ratelimit.ClientIP(tc.cfg)
			require.NoError(t, err)
			assert.Equal(t, tc.want, key(request(tc.remote, tc.xff...)))
			// ClientAddr keys the same parts of a request alike.
			addr, err := ratelimit.ClientAddr(tc.cfg)
			require.NoError(t, err)
			assert.Equal(t, tc.want, addr(tc.remote, tc.xff), "ClientAddr")
		})
	}
}

func TestClientIPValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  ratelimit.ClientIPConfig
		want string
	}{
		{ratelimit.ClientIPConfig{TrustedProxies: []string{"10.0.0.0/8", "10.0.0/8"}}, `TrustedProxies[1] "10.0.0/8"`},
		{ratelimit.ClientIPConfig{TrustedProxies: []string{"proxy.internal"}}, "TrustedProxies[0]"},
		{ratelimit.ClientIPConfig{TrustedProxies: []string{"10.0.0.0/33"}}, "TrustedProxies[0]"},
		{ratelimit.ClientIPConfig{TrustedProxies: []string{"::ffff:0:0/90"}}, "TrustedProxies[0]"},
		{ratelimit.ClientIPConfig{IPv6Prefix: 129}, "IPv6Prefix"},
		{ratelimit.ClientIPConfig{IPv6Prefix: -1}, "IPv6Prefix"},
	} {
		_, err := ratelimit.ClientIP(tc.cfg)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
		assert.True(t, strings.HasPrefix(err.Error(), "ratelimit: "), err.Error())
	}
}

func TestClientIPDoesNotAllocate(t *testing.T) {
	key, err := ratelimit.ClientIP(ratelimit.ClientIPConfig{TrustedProxies: []string{"10.0.0.0/8"}})
	require.NoError(t, err)
	direct := request("203.0.113.9:4711")
	proxied := request("10.1.2.3:80", "6.6.6.6, 198.51.100.1, 10.9.9.9")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = key(direct) }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = key(proxied) }))
}

// refClientIP is the specification of ClientIP written the obvious way.
func refClientIP(trusted []netip.Prefix, remote string, xff []string) string {
	parse := func(s string) (netip.Addr, bool) {
		s = strings.TrimSpace(s)
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap().WithZone(""), true
		}
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap().WithZone(""), true
		}
		return netip.Addr{}, false
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	cur, ok := parse(remote)
	if !ok {
		return ""
	}
	if !isTrusted(cur) {
		return cur.String()
	}
	var entries []string
	for _, line := range xff {
		entries = append(entries, strings.Split(line, ",")...)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if strings.TrimSpace(entries[i]) == "" {
			continue
		}
		a, ok := parse(entries[i])
		if !ok {
			break
		}
		cur = a
		if !isTrusted(a) {
			break
		}
	}
	return cur.String()
}

func FuzzClientIP(f *testing.F) {
	for _, seed := range [][3]string{
		{"10.1.2.3:80", "198.51.100.1", ""},
		{"10.1.2.3:80", "6.6.6.6, 198.51.100.1, 10.9.9.9", "10.0.0.1"},
		{"[::1]:80", "[2001:db8::1]:5555", ""},
		{"203.0.113.9:4711", "198.51.100.1", ""},
		{"10.1.2.3:80", "unknown,, 10.0.0.5 ,", "garbage"},
		{"[::ffff:10.0.0.1]:1", "::ffff:198.51.100.1", ""},
		{"[fe80::1%eth0]:80", "fe80::2%lo", ""},
		{"", "", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	prefixes := []string{"10.0.0.0/8", "::1", "fe80::/10", "192.0.2.0/24"}
	var trusted []netip.Prefix
	for _, p := range prefixes {
		trusted = append(trusted, netip.MustParsePrefix(strings.Replace(p, "::1", "::1/128", 1)))
	}
	// Full addresses (IPv6Prefix 128), which the reference computes.
	key, err := ratelimit.ClientIP(ratelimit.ClientIPConfig{TrustedProxies: prefixes, IPv6Prefix: 128})
	if err != nil {
		f.Fatal(err)
	}
	plain, err := ratelimit.ClientIP(ratelimit.ClientIPConfig{IPv6Prefix: 128})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, remote, xff1, xff2 string) {
		var xff []string
		for _, v := range []string{xff1, xff2} {
			if v != "" {
				xff = append(xff, v)
			}
		}
		r := request(remote, xff...)
		got := key(r)
		if want := refClientIP(trusted, remote, xff); got != want {
			t.Fatalf("ClientIP(%q, %q) = %q, reference says %q", remote, xff, got, want)
		}
		if got != "" {
			a, err := netip.ParseAddr(got)
			if err != nil || a.String() != got || a.Is4In6() || a.Zone() != "" {
				t.Fatalf("key %q is not a canonical address", got)
			}
		}
		// Without trusted proxies X-Forwarded-For never matters.
		if p, q := plain(r), plain(request(remote)); p != q {
			t.Fatalf("untrusted X-Forwarded-For changed the key: %q vs %q", p, q)
		}
	})
}
