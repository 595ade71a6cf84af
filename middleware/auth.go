package middleware

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/proxyless/proxyless/auth"
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
	token auth.TokenFunc // nil: no token
	tls   *tls.Config    // nil: the caller's transport credentials
}

// WithCredentials makes a client attach "Authorization: Bearer <token>" to its calls, the
// token coming from token for each call (auth.StaticToken, (*auth.TokenFile).Token, or any
// function). A request that already has an Authorization header keeps it. A token error
// fails the call before it is sent.
//
//   - NewTransport adds the header to every attempt (retries and hedges included) of every
//     request sent through the Transport: to mesh destinations, but also to hosts passed
//     through and to the redirects an http.Client follows. Give credentials only to a
//     Transport whose requests all go to services that token is meant for, and refuse
//     redirects off the mesh with http.Client.CheckRedirect.
//   - NewGRPCClient installs it as gRPC per-RPC credentials (auth.PerRPCCredentials), which
//     gRPC sends only over secure transport credentials (WithTLS, or the caller's own): a call
//     over an insecure channel fails. To send a token in the clear, as on loopback in tests,
//     add grpc.WithPerRPCCredentials(auth.PerRPCCredentials{Token: token, AllowInsecure:
//     true}) yourself instead.
//
// Taken by NewTransport and NewGRPCClient. Default: no token.
func WithCredentials(token auth.TokenFunc) ClientOption {
	return clientOption(func(c *config) {
		if token == nil {
			c.errs = append(c.errs, errors.New("middleware: WithCredentials: token function is nil"))
			return
		}
		c.creds.token = token
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
// it on its base transport (never nil), inside its telemetry, so that each attempt gets the
// token.
func (o *outboundCreds) wrap(base http.RoundTripper) (http.RoundTripper, error) {
	if o.token == nil {
		return base, nil
	}
	t, err := auth.NewTransport(base, o.token)
	if err != nil {
		return nil, fmt.Errorf("middleware: WithCredentials: %w", err)
	}
	return t, nil
}

// dialOptions returns the gRPC dial options of the outbound credentials, for NewGRPCClient to
// append to its own; nil when none are set.
func (o *outboundCreds) dialOptions() []grpc.DialOption {
	var d []grpc.DialOption
	if o.tls != nil {
		d = append(d, grpc.WithTransportCredentials(credentials.NewTLS(o.tls)))
	}
	if o.token != nil {
		d = append(d, grpc.WithPerRPCCredentials(auth.PerRPCCredentials{Token: o.token}))
	}
	return d
}
