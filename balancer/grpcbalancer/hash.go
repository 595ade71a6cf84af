package grpcbalancer

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/proxyless/proxyless/balancer"
)

// HashKey returns the hash key of a gRPC call made in ctx under policies (see
// balancer.HashPolicy), for balancer.PickInfo.Key: 0 when no policy yields a value. A Header
// or Metadata policy reads the call's outgoing metadata (its values joined with ","); SourceIP
// the address of the peer in ctx, which a gRPC server puts in the context of each call it
// serves (so a call made while serving one hashes on that caller); ContextKey the key of
// balancer.WithHashKey. Cookie and QueryParameter policies yield nothing for a call.
//
// The picker calls it with the channel's Config.Balancer.HashPolicy unless the call's
// interceptor set a key of its own ([Call.SetHashKey]).
func HashKey(ctx context.Context, policies []balancer.HashPolicy) uint64 {
	if len(policies) == 0 {
		return 0
	}
	var md metadata.MD
	mdRead := false
	return balancer.HashRequest(ctx, policies, func(p *balancer.HashPolicy) (string, bool) {
		switch {
		case p.Header != "" || p.Metadata != "":
			if !mdRead {
				md, _ = metadata.FromOutgoingContext(ctx)
				mdRead = true
			}
			return balancer.JoinHashValues(md.Get(p.Header + p.Metadata)) // one of the two is set
		case p.SourceIP:
			return peerIP(ctx)
		}
		return "", false
	})
}

// peerIP returns the IP address of the gRPC peer in ctx, without the port.
func peerIP(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", false
	}
	return addrIP(p.Addr.String())
}

// addrIP returns the IP address of addr ("ip:port" or a bare IP) in canonical form, and
// false when addr holds none (a Unix socket path, say).
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

// validateHashPolicies refuses the policies a gRPC call cannot yield a value for.
func validateHashPolicies(ps []balancer.HashPolicy) error {
	for i, p := range ps {
		switch {
		case p.Cookie != "":
			return fmt.Errorf("grpcbalancer: Balancer.HashPolicy[%d]: cookie is an HTTP policy; a gRPC call has no cookies (hash on metadata)", i)
		case p.QueryParameter != "":
			return fmt.Errorf("grpcbalancer: Balancer.HashPolicy[%d]: queryParameter is an HTTP policy; a gRPC call has no query (hash on metadata)", i)
		}
	}
	return nil
}
