package connect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/auth"
)

// ScopeName is the OpenTelemetry instrumentation scope of the package's metrics.
const ScopeName = "github.com/proxyless/proxyless/discovery/consul/connect"

// DenialsMetric counts requests and calls the authorizer refused, by source service
// ("connect.source", "" when the caller had no valid identity) and protocol
// ("connect.protocol": http or grpc).
const DenialsMetric = "proxyless.connect.authz.denials"

func newDenialCounter(mp metric.MeterProvider) (metric.Int64Counter, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(ScopeName).Int64Counter(DenialsMetric,
		metric.WithDescription("Requests and calls refused by Consul intentions or for want of a valid Connect identity."),
		metric.WithUnit("{request}"))
}

// ErrNoIdentity means a request came without a client certificate that verifies against the
// mesh's roots and carries a Connect service identity of its trust domain.
var ErrNoIdentity = errors.New("connect: no valid Connect client identity")

// ErrDenied means the intentions refused a request.
var ErrDenied = errors.New("connect: denied by intentions")

// Source returns the verified Connect identity of the client of a TLS connection: its
// certificate must verify, now, against the current CA roots. It fails with an error matching
// ErrNoIdentity otherwise.
func (m *Mesh) Source(cs *tls.ConnectionState) (Identity, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoIdentity
	}
	id, err := verifyPeer(m.roots.Load(), cs.PeerCertificates, x509.ExtKeyUsageClientAuth, nil, time.Now())
	if err != nil {
		return Identity{}, errors.Join(ErrNoIdentity, err)
	}
	return id, nil
}

// Authorize decides a request from the source service, of the default namespace, by the
// current intentions whose destination is this service (or "*"), in Consul's precedence
// order, and the default policy (Handler and the interceptors also match the namespace of the
// caller's identity: one of another namespace matches only sources of namespace "*"). req is read only when an intention with L7 permissions applies; a nil req is an
// empty request (no path, method or header matches it). req.Path is normalized as Handler
// normalizes it (slashes merged, dot segments resolved).
func (m *Mesh) Authorize(source string, req *Request) Decision {
	if req == nil {
		req = &Request{}
	}
	return m.rules.Load().decide(source, func() *Request {
		q := *req
		if q.Path != "" {
			q.Path = normalizePath(q.Path)
		}
		return &q
	})
}

// AllowedL4 is the decision Consul's /v1/connect/intentions/check gives for a connection from
// source, from the intentions the Mesh holds: an applicable intention with L7 permissions
// counts as a deny there.
func (m *Mesh) AllowedL4(source string) bool { return m.rules.Load().allowL4(source) }

func (m *Mesh) denied(ctx context.Context, source, protocol string) {
	m.denials.Add(ctx, 1, metric.WithAttributes(
		attribute.String("connect.source", source), attribute.String("connect.protocol", protocol)))
}

// Handler returns next wrapped in the mesh's authorization: each request's client must have a
// verified Connect identity (see Source) that the intentions allow for this request (see
// Authorize; L7 permissions see the path, method, host and headers). Any other request is
// answered 403 Forbidden, with no detail, and counted (DenialsMetric).
//
// Path permissions match the decoded path normalized as Envoy's normalize_path and
// merge_slashes make it (runs of slashes merged, "." and ".." segments resolved), so that
// "//admin", "/./admin" and "/x/../admin" meet a rule on "/admin" as a router that cleans
// paths would serve them. When a permission of the deciding intention looks at the path, a
// request whose path as received holds an encoded slash or backslash ("%2F", "%5C") or a
// backslash is refused 400 Bad Request (and counted): whether "/admin%2Fx" is under "/admin"
// depends on the router behind, so it is not guessed. It is checked per
// request, so a new deny applies at once to connections already open. The source identity is
// in the request context as auth.PeerFromContext.
//
// The server's TLS must be ServerTLS (or ask for client certificates some other way).
func (m *Mesh) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := m.Source(r.TLS)
		source := id.Service
		if err == nil {
			d := m.rules.Load().decideFrom(id, func() *Request { return httpRequest(r) })
			if d.Malformed {
				m.denied(r.Context(), source, "http")
				http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
				return
			}
			if !d.Allowed {
				err = ErrDenied
			}
		}
		if err != nil {
			m.denied(r.Context(), source, "http")
			http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.ContextWithPeer(r.Context(), peerOf(id, r.TLS))))
	})
}

// httpRequest is the view L7 permissions have of an HTTP request: the decoded path
// normalized (normalizePath: slashes merged, dot segments resolved), and whether the path as
// received is ambiguous (ambiguousPath: an encoded slash or backslash, or a backslash).
func httpRequest(r *http.Request) *Request {
	raw := r.RequestURI
	if raw == "" {
		raw = r.URL.EscapedPath()
	}
	return &Request{Method: r.Method, Path: normalizePath(r.URL.Path), Host: r.Host, Header: r.Header,
		target: r.URL.RequestURI(), ambiguous: ambiguousPath(raw)}
}

func peerOf(id Identity, cs *tls.ConnectionState) *auth.Peer {
	leaf := cs.PeerCertificates[0]
	uri := id.URI()
	return &auth.Peer{SPIFFEID: uri, URIs: []string{uri}, DNSNames: leaf.DNSNames, CommonName: leaf.Subject.CommonName, Certificate: leaf}
}

var (
	errUnauthenticated  = status.Error(codes.Unauthenticated, "connect: no valid Connect client identity")
	errPermissionDenied = status.Error(codes.PermissionDenied, "connect: denied by intentions")
)

// authorizeRPC authorizes one gRPC call: method is its full name, the L7 path.
func (m *Mesh) authorizeRPC(ctx context.Context, method string) (context.Context, error) {
	var cs *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			cs = &info.State
		}
	}
	id, err := m.Source(cs)
	if err != nil {
		m.denied(ctx, "", "grpc")
		return nil, errUnauthenticated
	}
	d := m.rules.Load().decideFrom(id, func() *Request { return rpcRequest(ctx, method) })
	if !d.Allowed {
		m.denied(ctx, id.Service, "grpc")
		return nil, errPermissionDenied
	}
	return auth.ContextWithPeer(ctx, peerOf(id, cs)), nil
}

// rpcRequest is the view L7 permissions have of a gRPC call, as Consul's proxies see it over
// HTTP/2: POST to /<service>/<method>, the metadata as headers.
func rpcRequest(ctx context.Context, method string) *Request {
	md, _ := metadata.FromIncomingContext(ctx)
	q := &Request{Method: http.MethodPost, Path: method, Header: make(http.Header, len(md))}
	for k, vs := range md {
		if k == ":authority" {
			if len(vs) > 0 {
				q.Host = vs[0]
			}
			continue
		}
		if strings.HasPrefix(k, ":") {
			continue
		}
		q.Header[http.CanonicalHeaderKey(k)] = vs
	}
	return q
}

// UnaryServerInterceptor authorizes each unary call as Handler does a request: UNAUTHENTICATED
// without a valid Connect client identity, PERMISSION_DENIED when the intentions refuse it
// (both counted, DenialsMetric); the identity is in the handler's context
// (auth.PeerFromContext). The server's credentials must be credentials.NewTLS(ServerTLS()).
func (m *Mesh) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	u, _ := auth.RPCInterceptors(m.authorizeRPC)
	return u
}

// StreamServerInterceptor is the streaming counterpart of UnaryServerInterceptor.
func (m *Mesh) StreamServerInterceptor() grpc.StreamServerInterceptor {
	_, s := auth.RPCInterceptors(m.authorizeRPC)
	return s
}
