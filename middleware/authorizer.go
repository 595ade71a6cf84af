package middleware

import (
	"errors"
	"net/http"

	"google.golang.org/grpc"
)

// Authorizer decides, per request and per call, whether a server serves it: for example
// connect.Mesh, which enforces Consul intentions by the caller's mTLS identity and, for L7
// intentions, the request's path, method and headers. It answers refusals itself (403,
// PERMISSION_DENIED) and may put the caller's identity in the context.
type Authorizer interface {
	// Handler returns next wrapped in the authorization of HTTP requests.
	Handler(next http.Handler) http.Handler
	// UnaryServerInterceptor authorizes unary gRPC calls.
	UnaryServerInterceptor() grpc.UnaryServerInterceptor
	// StreamServerInterceptor authorizes streaming gRPC calls.
	StreamServerInterceptor() grpc.StreamServerInterceptor
}

// WithAuthorizer makes NewHandler and NewGRPCServer authorize every request and call with a.
// It runs right after the mTLS peer check (WithPeerAuthorization) and before the rate limits
// and token validation, so that a refused caller costs nothing more; the limits can key by the
// identity it puts in the context. Default: none.
//
// Taken by NewHandler and NewGRPCServer.
func WithAuthorizer(a Authorizer) ServerOption {
	return serverOption(func(c *config) {
		if a == nil {
			c.errs = append(c.errs, errors.New("middleware: WithAuthorizer: authorizer is nil"))
			return
		}
		c.server.authz = a
	})
}

func buildAuthorizer(c *config, next http.Handler) http.Handler {
	if c.server.authz == nil {
		return nil
	}
	return c.server.authz.Handler(next)
}
