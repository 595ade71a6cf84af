package auth

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// gRPC adapters.

var (
	errUnauthenticated  = status.Error(codes.Unauthenticated, "auth: unauthenticated")
	errPermissionDenied = status.Error(codes.PermissionDenied, "auth: permission denied")
)

func (g *Guard) authenticateRPC(ctx context.Context, method string) (context.Context, error) {
	rule, ok := g.methodRules[method]
	if !ok {
		rule = g.rule
	}
	tok, err := g.source.FromIncomingContext(ctx, g.v.maxBytes)
	c, v, err := g.check(ctx, tok, err, rule)
	switch v {
	case allowed:
		if c != nil {
			ctx = ContextWithClaims(ctx, c)
		}
		return ctx, nil
	case forbidden:
		return nil, errPermissionDenied
	case canceled:
		return nil, status.FromContextError(err).Err()
	default:
		return nil, errUnauthenticated
	}
}

// UnaryServerInterceptor authenticates and authorizes unary calls like Handler does,
// answering UNAUTHENTICATED or PERMISSION_DENIED with no detail of why.
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	u, _ := RPCInterceptors(g.authenticateRPC)
	return u
}

// StreamServerInterceptor is the streaming counterpart of UnaryServerInterceptor; the
// handler's stream context carries the claims.
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	_, s := RPCInterceptors(g.authenticateRPC)
	return s
}

// RPCInterceptors makes the server interceptors of a per-call check: check gets the call's
// context and full method name and returns the context the handler runs with (carrying what
// it verified), or the status error that ends the call. Streams see the returned context
// through their Context method.
func RPCInterceptors(check func(ctx context.Context, fullMethod string) (context.Context, error)) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := check(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := check(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
	return unary, stream
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func (a *PeerAuthorizer) authorizeRPC(ctx context.Context) (context.Context, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, errUnauthenticated
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 || len(info.State.VerifiedChains) == 0 {
		return nil, errUnauthenticated
	}
	id, err := a.Authorize(info.State.PeerCertificates[0])
	if err != nil {
		return nil, errPermissionDenied
	}
	return ContextWithPeer(ctx, id), nil
}

// UnaryServerInterceptor authorizes the mTLS peer of each unary call (UNAUTHENTICATED without
// a verified client certificate, PERMISSION_DENIED when the policy refuses it) and puts its
// identity in the context.
func (a *PeerAuthorizer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorizeRPC(ctx)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is the streaming counterpart of UnaryServerInterceptor.
func (a *PeerAuthorizer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorizeRPC(ss.Context())
		if err != nil {
			return err
		}
		return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
}
