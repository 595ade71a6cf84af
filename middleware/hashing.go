package middleware

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"google.golang.org/grpc/peer"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/route"
)

// Consistent hashing on the client paths. A destination whose balancer hashes
// (balancer.PolicyMaglev, balancer.PolicyRingHash) gets each request's key from the hash
// policies of the route that matched it, when the route has any, else from its balancer
// config's HashPolicy; no policy, or none that yields a value, leaves the request without a
// key, and its pick random.

// hashPolicies returns the hash policies of a request to a destination balanced by cfg and
// routed by rt (nil when no route matched): the route's when it has some, else cfg's; nil
// when cfg's policy reads no key.
func hashPolicies(cfg *balancer.Config, rt *route.Route) []balancer.HashPolicy {
	if !cfg.Policy.Hashing() {
		return nil
	}
	if rt != nil {
		if hp := rt.HashPolicy(); len(hp) > 0 {
			return hp
		}
	}
	return cfg.HashPolicy
}

// balancerConfig returns the balancer config d was made with: its WithConfig destination
// policy's when that has one, else def (the transport's).
func (d *destination) balancerConfig(def *balancer.Config) *balancer.Config {
	if d.build != nil && d.build.balancer != nil {
		return d.build.balancer
	}
	return def
}

// httpHashKey returns the hash key of req under policies (see balancer.HashPolicy), 0 when
// none yields a value. A header policy reads req.Header (Host: req.Host), a cookie policy
// req's Cookie header, a query policy req.URL's query, a source-IP policy req.RemoteAddr when
// set (a server's request forwarded as it came) or else the gRPC peer in req's context.
func httpHashKey(req *http.Request, policies []balancer.HashPolicy) uint64 {
	if len(policies) == 0 {
		return 0
	}
	return balancer.HashRequest(req.Context(), policies, func(p *balancer.HashPolicy) (string, bool) {
		switch {
		case p.Header != "" || p.Metadata != "":
			name := p.Header + p.Metadata // one of the two is set
			if strings.EqualFold(name, "host") {
				return req.Host, req.Host != ""
			}
			return balancer.JoinHashValues(req.Header.Values(name))
		case p.Cookie != "":
			c, err := req.Cookie(p.Cookie)
			if err != nil {
				return "", false
			}
			return c.Value, true
		case p.QueryParameter != "":
			if req.URL == nil {
				return "", false
			}
			return queryValue(req.URL.RawQuery, p.QueryParameter)
		case p.SourceIP:
			return sourceIP(req)
		}
		return "", false
	})
}

// sourceIP returns the IP address of the caller on whose behalf req is sent: req.RemoteAddr
// when set, else the peer of the gRPC call being served in req's context.
func sourceIP(req *http.Request) (string, bool) {
	if req.RemoteAddr != "" {
		return addrIP(req.RemoteAddr)
	}
	if p, ok := peer.FromContext(req.Context()); ok && p.Addr != nil {
		return addrIP(p.Addr.String())
	}
	return "", false
}

// addrIP returns the IP address of addr ("ip:port" or a bare IP) in canonical form (an
// IPv4-mapped IPv6 address as IPv4, without a zone), and false when addr holds none.
func addrIP(addr string) (string, bool) {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return "", false
	}
	return ip.Unmap().WithZone("").String(), true
}

// maxQueryScan bounds the bytes of a raw query scanned for a hash policy's parameter.
const maxQueryScan = 16 << 10

// queryValue returns the decoded value of the first parameter called name in the raw query
// string raw, as url.ParseQuery would give it first, and whether there is one. It scans at
// most maxQueryScan bytes and allocates only to decode an escaped name or value. Pairs that
// do not decode, or that hold a ';', are skipped, as url.ParseQuery skips them.
func queryValue(raw, name string) (string, bool) {
	if len(raw) > maxQueryScan {
		raw = raw[:maxQueryScan]
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k, ok := unescapeQuery(k); !ok || k != name {
			continue
		}
		if v, ok := unescapeQuery(v); ok {
			return v, true
		}
	}
	return "", false
}

// unescapeQuery decodes s as url.QueryUnescape does, without allocating when s holds nothing
// to decode; false when s does not decode.
func unescapeQuery(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}

// routeHashKey gives call the hash key that the hash policies of rt, the route that matched
// a call made in ctx (nil: none), make, when rt has some and the client's balancer hashes;
// otherwise the channel's picker makes the key from its own config's policies.
func (c *grpcClient) routeHashKey(ctx context.Context, rt *route.Route, call *grpcbalancer.Call) {
	if rt == nil || !c.cfg.balancer.Policy.Hashing() {
		return
	}
	if hp := rt.HashPolicy(); len(hp) > 0 {
		call.SetHashKey(grpcbalancer.HashKey(ctx, hp))
	}
}
