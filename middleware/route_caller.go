package middleware

import (
	"context"
	"net/http"

	"google.golang.org/grpc/peer"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/route"
)

// routeKeyCtx is the context key of the key WithRouteKey sets.
type routeKeyCtx struct{}

// callerAddrCtx is the context key of the remote address of the HTTP request NewHandler
// serves (its http.Request.RemoteAddr, the TCP peer, never a forwarded address).
type callerAddrCtx struct{}

// WithRouteKey returns a copy of ctx whose outbound calls (Transport, the gRPC client) carry
// key as their route.Request.Key: the key a route's sticky: {key: true} hashes to choose a
// split arm or canary side. Only the application sets it, so it steers without the trust
// predicate; give it something the caller cannot choose freely (a verified user ID, an
// account). Without it, the Key is the verified caller identity in ctx: the subject of the
// token WithJWT verified, else the SPIFFE ID of the mTLS peer WithPeerAuthorization verified.
func WithRouteKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, routeKeyCtx{}, key)
}

// callerAddrContext returns r's context with the address of its direct peer, so that calls made
// with that context while serving r know on whose behalf they are sent.
func callerAddrContext(r *http.Request) context.Context {
	if r.RemoteAddr == "" {
		return r.Context()
	}
	return context.WithValue(r.Context(), callerAddrCtx{}, r.RemoteAddr)
}

// fillCaller completes rq, a request looked up in a route table, with what ctx knows of the
// caller that trust predicates and sticky keys read:
//   - Identity: the verified mTLS peer's SPIFFE ID, else the verified token's subject
//     (what WithDeadlineTrust reads);
//   - Key: WithRouteKey's key, else the verified token's subject, else the peer's SPIFFE ID;
//   - RemoteAddr, when rq has none (an outbound request): the address of the caller being
//     served, the gRPC peer of the call or the direct peer of the HTTP request NewHandler
//     serves, whose context the outbound request carries.
//
// Client side, ctx is the outbound call's: these are the incoming request's caller's when
// the call carries that request's context (r.Context()), and empty otherwise, so that a
// client with no verified caller trusts nothing by identity or address.
func fillCaller(ctx context.Context, rq *route.Request) {
	rq.Identity = callerIdentity(ctx) // deadline.go
	if k, ok := ctx.Value(routeKeyCtx{}).(string); ok {
		rq.Key = k
	} else if rq.Key = auth.SubjectFromContext(ctx); rq.Key == "" {
		rq.Key = rq.Identity
	}
	if rq.RemoteAddr != "" {
		return
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		rq.RemoteAddr = p.Addr.String()
	} else if a, ok := ctx.Value(callerAddrCtx{}).(string); ok {
		rq.RemoteAddr = a
	}
}
