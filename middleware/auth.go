package middleware

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/discovery"
)

// This file wires package auth into the middleware: token validation and mTLS peer
// authorization on the server side (NewHandler, NewGRPCServer), and outbound credentials and
// TLS on the client side (NewTransport, NewGRPCClient).

// WithJWT makes NewHandler and NewGRPCServer authenticate every request with a bearer token
// checked by v, and authorize it with the rules of opts (auth.WithRule, auth.WithMethodRules
// for gRPC, auth.WithTokenSource, auth.WithOptionalToken). It runs after mTLS peer
// authorization and before the rate limits, so that their keys can use the verified claims
// (KeyBySubject); the handler finds them with auth.ClaimsFromContext.
//
// Over HTTP a missing or invalid token is answered 401 with WWW-Authenticate, a failed rule
// 403; over gRPC, UNAUTHENTICATED and PERMISSION_DENIED. No answer says why. The caller owns
// v and closes it after the server stops. Default: no token is checked.
//
// Taken by NewHandler and NewGRPCServer.
func WithJWT(v *auth.Validator, opts ...auth.GuardOption) ServerOption {
	return serverOption(func(c *config) {
		g, err := auth.NewGuard(v, opts...)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithJWT: %w", err))
			return
		}
		c.server.jwt = g
	})
}

// WithPeerAuthorization makes NewHandler and NewGRPCServer check the mTLS client certificate
// of every request against p, and put the peer's identity in the context
// (auth.PeerFromContext). A request without a verified client certificate, or whose
// certificate p refuses, is answered 403 over HTTP; over gRPC, UNAUTHENTICATED without a
// certificate and PERMISSION_DENIED when refused. It runs first, before token validation.
//
// The server's TLS configuration must ask for and verify client certificates (auth.ServerTLS
// with ClientCAFile does, and can refuse unwanted peers in the handshake already with
// ServerTLSConfig.Peers); this option is the per-request check, for servers whose TLS is set
// up elsewhere and for handlers that want the identity. Default: no peer check.
//
// Taken by NewHandler and NewGRPCServer.
func WithPeerAuthorization(p *auth.PeerAuthorizer) ServerOption {
	return serverOption(func(c *config) {
		if p == nil {
			c.errs = append(c.errs, errors.New("middleware: WithPeerAuthorization: authorizer is nil"))
			return
		}
		c.server.peers = p
	})
}

// outboundCreds holds what WithCredentials and WithTLS set. The zero value adds nothing.
type outboundCreds struct {
	token          auth.TokenFunc // nil: no token
	allowCleartext bool           // Credentials.AllowCleartext
	tls            *tls.Config    // nil: the caller's transport credentials
	mesh           *meshGRPCCreds // WithMesh's: mesh.go
	cfg            *config        // the options' config, for wrap to find the resolver
}

// Credentials is what WithOutboundCredentials attaches to a client's calls.
type Credentials struct {
	// Token returns the token of each call (auth.StaticToken, (*auth.TokenFile).Token, or any
	// function). Required.
	Token auth.TokenFunc
	// AllowCleartext lets NewTransport send the token over plain http:// to addresses that are
	// not loopback, and NewGRPCClient over channels without transport security. Default false:
	// such an attempt fails before it is sent.
	AllowCleartext bool
}

// WithCredentials makes a client attach "Authorization: Bearer <token>" to its calls, the
// token coming from token for each call; it is WithOutboundCredentials(Credentials{Token:
// token}). See there for where the token goes.
//
// Taken by NewTransport and NewGRPCClient. Default: no token.
func WithCredentials(token auth.TokenFunc) ClientOption {
	return WithOutboundCredentials(Credentials{Token: token})
}

// WithOutboundCredentials makes a client attach "Authorization: Bearer <token>" to its calls
// to mesh destinations, the token coming from c.Token for each call. A request that already
// has an Authorization header keeps it. A token error fails the call before it is sent.
//
//   - NewTransport adds the header only to the attempts it sends to an endpoint of a service
//     (retries and hedges included): an address its resolver (WithResolver) currently gives
//     for a service, or gave in the set before. Hosts passed through get no token, and
//     neither do the redirects an http.Client follows to another host, which are new
//     requests to hosts that are not services. Without a resolver, no request gets one. An
//     attempt over plain http:// to an address that is not loopback fails unless
//     c.AllowCleartext is set: use https:// endpoints (TLS in the base transport, see WithTLS).
//   - NewGRPCClient installs it as gRPC per-RPC credentials (auth.PerRPCCredentials), which
//     gRPC sends only over secure transport credentials (WithTLS, or the caller's own): a call
//     over an insecure channel fails, unless c.AllowCleartext is set.
//
// Taken by NewTransport and NewGRPCClient. Default: no token.
func WithOutboundCredentials(c Credentials) ClientOption {
	return clientOption(func(cfg *config) {
		if c.Token == nil {
			cfg.errs = append(cfg.errs, errors.New("middleware: WithCredentials: token function is nil"))
			return
		}
		cfg.creds.token, cfg.creds.allowCleartext, cfg.creds.cfg = c.Token, c.AllowCleartext, cfg
	})
}

// WithTLS makes NewGRPCClient secure its channels with cfg (see auth.ClientTLS for one with
// mTLS client certificates and reload), as grpc.WithTransportCredentials(credentials.NewTLS
// (cfg)) would; the server name is the target's authority unless cfg.ServerName is set. Do not
// add other transport credentials.
//
// Taken by NewGRPCClient only. An HTTP client originates TLS in its base transport, for
// https:// URLs, so for NewTransport set cfg as the base *http.Transport's TLSClientConfig:
//
//	base := http.DefaultTransport.(*http.Transport).Clone()
//	base.TLSClientConfig = cfg
//	tr, err := middleware.NewTransport(base, opts...)
//
// A server's TLS is the server's own (http.Server.TLSConfig, grpc.Creds; see auth.ServerTLS).
// Default: the caller's transport credentials.
func WithTLS(cfg *tls.Config) GRPCClientOption {
	return grpcClientOption(func(c *config) {
		if cfg == nil {
			c.errs = append(c.errs, errors.New("middleware: WithTLS: config is nil"))
			return
		}
		c.creds.tls = cfg
	})
}

// wrap returns base with the outbound credentials of the options applied: NewTransport calls
// it on its base transport (never nil), inside its telemetry, before it makes its discovery
// cache. To know which attempts go to mesh destinations, it replaces the config's resolver
// with one that records the endpoint addresses it gives (a discovery.AddrBook): the token goes only to
// those.
func (o *outboundCreds) wrap(base http.RoundTripper) (http.RoundTripper, error) {
	if o.token == nil {
		return base, nil
	}
	t, err := auth.NewTransport(base, o.token)
	if err != nil {
		return nil, fmt.Errorf("middleware: WithCredentials: %w", err)
	}
	// With WithMesh, every attempt to an endpoint goes over the mesh's mTLS (mesh.go).
	m := &meshCreds{withToken: t, without: base, allowCleartext: o.allowCleartext || o.mesh != nil}
	if o.cfg != nil && o.cfg.resolver != nil {
		m.addrs = discovery.NewAddrBook()
		o.cfg.resolver = m.addrs.Resolver(o.cfg.resolver)
	}
	return m, nil
}

// meshCreds sends attempts to mesh endpoints through withToken, everything else through
// without.
type meshCreds struct {
	withToken      http.RoundTripper
	without        http.RoundTripper
	addrs          *discovery.AddrBook // nil without a resolver: nothing is a mesh endpoint
	allowCleartext bool
}

// RoundTrip implements http.RoundTripper.
func (m *meshCreds) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || m.addrs == nil || !m.addrs.Has(req.URL.Host) || req.Header.Get("Authorization") != "" {
		return m.without.RoundTrip(req)
	}
	if !strings.EqualFold(req.URL.Scheme, "https") && !m.allowCleartext && !isLoopback(req.URL.Hostname()) {
		closeBody(req)
		return nil, fmt.Errorf("middleware: WithCredentials: refusing to send a token in clear text to %s (use https, or Credentials.AllowCleartext)", req.URL.Host)
	}
	return m.withToken.RoundTrip(req)
}

// CloseIdleConnections forwards to the wrapped transport.
func (m *meshCreds) CloseIdleConnections() {
	if c, ok := m.without.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// isLoopback reports whether host (no port) is a loopback address or "localhost".
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// dialOptions returns the gRPC dial options of the outbound credentials, for NewGRPCClient to
// append to its own; nil when none are set.
func (o *outboundCreds) dialOptions() []grpc.DialOption {
	var d []grpc.DialOption
	if o.tls != nil {
		d = append(d, grpc.WithTransportCredentials(credentials.NewTLS(o.tls)))
	}
	if o.mesh != nil {
		d = append(d, grpc.WithTransportCredentials(o.mesh))
	}
	if o.token != nil {
		d = append(d, grpc.WithPerRPCCredentials(auth.PerRPCCredentials{Token: o.token, AllowInsecure: o.allowCleartext}))
	}
	return d
}
