package middleware

import (
	"context"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/ratelimit"
)

// Incoming is what a server-side [KeyFunc] sees of a request: an HTTP request that NewHandler
// serves or a gRPC call that NewGRPCServer serves, through one view, so that one key function
// (and one WithServerRateLimit) serves both servers. It is a small value, valid only during the
// call of the key function.
type Incoming struct {
	req    *http.Request   // the HTTP request; nil for a gRPC call
	ctx    context.Context // the gRPC call's context; nil for HTTP (req.Context())
	method string          // the gRPC call's full method name
}

// httpIncoming returns the view of an HTTP request.
func httpIncoming(r *http.Request) Incoming { return Incoming{req: r} }

// grpcIncoming returns the view of a gRPC call.
func grpcIncoming(ctx context.Context, fullMethod string) Incoming {
	return Incoming{ctx: ctx, method: fullMethod}
}

// Context returns the request's context: the peer identity of WithPeerAuthorization
// (auth.PeerFromContext) is in it, since the peer check runs before the rate limits; the
// verified claims of WithJWT (auth.ClaimsFromContext) only for the limits that run after the
// token check (KeyBySubject, WithAuthenticatedRateLimit).
func (in Incoming) Context() context.Context {
	if in.req != nil {
		return in.req.Context()
	}
	return in.ctx
}

// Header returns the first value of the HTTP header, or of the gRPC metadata key, name
// (matched without regard to case), or "" when absent. A client chooses its own header and
// metadata values: see [KeyByHeader].
func (in Incoming) Header(name string) string {
	if v := in.Values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns every value of the HTTP header, or of the gRPC metadata key, name (matched
// without regard to case). The caller must not modify the slice.
func (in Incoming) Values(name string) []string {
	if in.req != nil {
		return in.req.Header.Values(name)
	}
	return metadata.ValueFromIncomingContext(in.ctx, name)
}

// RemoteAddr returns the address of the direct peer, "ip:port" as a rule: the
// http.Request's RemoteAddr, or the gRPC peer's address ("" when unknown). Behind a proxy it
// is the proxy's: see [KeyByClientIP].
func (in Incoming) RemoteAddr() string {
	if in.req != nil {
		return in.req.RemoteAddr
	}
	if p, ok := peer.FromContext(in.ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// Method returns the HTTP method; "POST" for a gRPC call, which is one.
func (in Incoming) Method() string {
	if in.req != nil {
		return in.req.Method
	}
	return http.MethodPost
}

// Path returns the HTTP request's URL path, or the gRPC call's full method name
// ("/package.Service/Method", which is the path of its HTTP/2 request).
func (in Incoming) Path() string {
	if in.req != nil {
		return in.req.URL.Path
	}
	return in.method
}

// GRPCMethod returns the gRPC call's full method name, or "" for an HTTP request.
func (in Incoming) GRPCMethod() string { return in.method }

// HTTPRequest returns the HTTP request, or nil for a gRPC call. A key function that needs it
// answers gRPC calls from the rest of the view (or with ""), since WithServerRateLimit applies
// to both servers.
func (in Incoming) HTTPRequest() *http.Request { return in.req }

// KeyFunc maps a request to the key a per-key rate limit counts it under: a client IP
// (KeyByClientIP), an API key (KeyByHeader), a JWT subject (KeyBySubject), a route or method
// (Incoming.Path), or any function of the request. One KeyFunc serves both servers: it reads
// an HTTP request and a gRPC call alike through [Incoming]. It must be safe for concurrent
// use. The empty key is a key like any other: every request that maps to "" shares one
// bucket, and a limiter override for "" gives those requests their own quota
// (ratelimit.Quota{} refuses them all).
type KeyFunc func(Incoming) string

// KeyByHeader returns a KeyFunc that keys a request by the first value of its header name,
// or a gRPC call by the first value of its metadata key name ("" when absent; names match
// without regard to case). A client chooses its own header values: a key it can invent gives
// it a fresh bucket each time, so key by header only what is verified (an API key checked
// before the limit, or whose forgeries are refused anyway), and pair it with a per-client-IP
// limit.
func KeyByHeader(name string) KeyFunc {
	canonical := textproto.CanonicalMIMEHeaderKey(name)
	lower := strings.ToLower(name)
	return func(in Incoming) string {
		if in.req != nil {
			if v := in.req.Header[canonical]; len(v) > 0 {
				return v[0]
			}
			return ""
		}
		if v := metadata.ValueFromIncomingContext(in.ctx, lower); len(v) > 0 {
			return v[0]
		}
		return ""
	}
}

// forwardedForKey is X-Forwarded-For as gRPC metadata carries it.
const forwardedForKey = "x-forwarded-for"

// KeyByClientIP returns a KeyFunc for per-client limits: it keys a request by its client's IP
// address in canonical form, as ratelimit.ClientIP does. The client is the direct peer (the
// HTTP RemoteAddr, the gRPC peer's address) unless that peer is one of cfg.TrustedProxies;
// then X-Forwarded-For (HTTP header or gRPC metadata) is read from the right, and only entries
// that trusted proxies appended are believed, so a client cannot choose its key by sending its
// own X-Forwarded-For. The zero config keys by the direct peer and never reads
// X-Forwarded-For. A peer address that holds no IP (a Unix socket) gives "". Errors name the
// bad field of cfg.
func KeyByClientIP(cfg ratelimit.ClientIPConfig) (KeyFunc, error) {
	addr, err := ratelimit.ClientAddr(cfg)
	if err != nil {
		return nil, err
	}
	trusted := len(cfg.TrustedProxies) > 0
	return func(in Incoming) string {
		var xff []string
		if in.req != nil {
			if trusted {
				xff = in.req.Header["X-Forwarded-For"]
			}
			return addr(in.req.RemoteAddr, xff)
		}
		if trusted {
			xff = metadata.ValueFromIncomingContext(in.ctx, forwardedForKey)
		}
		return addr(in.RemoteAddr(), xff)
	}, nil
}

// KeyBySubject returns a KeyFunc that keys a request by the subject ("sub") of its verified
// token, for per-client rate limits. It needs WithJWT; a limit with this key runs after the
// token check (the other limits run before it: see WithServerRateLimit);
// a request without verified claims (WithJWT absent, or auth.WithOptionalToken and no token)
// maps to "", one bucket shared by all of them: give "" its own quota with a limiter
// override, or pair the limit with a per-client-IP one.
func KeyBySubject() KeyFunc { return subjectKey }

func subjectKey(in Incoming) string { return auth.SubjectFromContext(in.Context()) }

// isSubjectKey reports whether k is KeyBySubject's.
func isSubjectKey(k KeyFunc) bool {
	return reflect.ValueOf(k).Pointer() == reflect.ValueOf(subjectKey).Pointer()
}
