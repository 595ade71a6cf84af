package middleware

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/proxyless/proxyless/auth"
)

// This file wires package auth into the middleware: token validation and mTLS peer
// authorization on the server side (NewHandler, ServerOptions), and outbound credentials and
// TLS on the client side (NewTransport, DialOptions).

// WithJWT makes NewHandler and ServerOptions authenticate every request with a bearer token
// checked by v, and authorize it with the rules of opts (auth.WithRule, auth.WithMethodRules
// for gRPC, auth.WithTokenSource, auth.WithOptionalToken). It runs after mTLS peer
// authorization and before the rate limits, so that their keys can use the verified claims
// (KeyBySubject, GRPCKeyBySubject); the handler finds them with auth.ClaimsFromContext.
//
// Over HTTP a missing or invalid token is answered 401 with WWW-Authenticate, a failed rule
// 403; over gRPC, UNAUTHENTICATED and PERMISSION_DENIED. No answer says why. The caller owns
// v and closes it after the server stops. Default: no token is checked.
func WithJWT(v *auth.Validator, opts ...auth.GuardOption) Option {
	return optionFunc(func(c *config) {
		g, err := auth.NewGuard(v, opts...)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithJWT: %w", err))
			return
		}
		c.server.jwt = g
	})
}

// WithPeerAuthorization makes NewHandler and ServerOptions check the mTLS client certificate
// of every request against p, and put the peer's identity in the context
// (auth.PeerFromContext). A request without a verified client certificate, or whose
// certificate p refuses, is answered 403 over HTTP; over gRPC, UNAUTHENTICATED without a
// certificate and PERMISSION_DENIED when refused. It runs first, before token validation.
//
// The server's TLS configuration must ask for and verify client certificates (auth.ServerTLS
// with ClientCAFile does, and can refuse unwanted peers in the handshake already with
// ServerTLSConfig.Peers); this option is the per-request check, for servers whose TLS is set
// up elsewhere and for handlers that want the identity. Default: no peer check.
func WithPeerAuthorization(p *auth.PeerAuthorizer) Option {
	return optionFunc(func(c *config) {
		if p == nil {
			c.errs = append(c.errs, errors.New("middleware: WithPeerAuthorization: authorizer is nil"))
			return
		}
		c.server.peers = p
	})
}

// KeyBySubject returns a KeyFunc that keys a request by the subject ("sub") of its verified
// token, for per-client rate limits. It needs WithJWT, whose check runs before the limits;
// a request without verified claims (WithJWT absent, or auth.WithOptionalToken and no token)
// maps to "", one bucket shared by all of them: give "" its own quota with a limiter
// override, or pair the limit with a per-client-IP one.
func KeyBySubject() KeyFunc {
	return func(r *http.Request) string { return auth.SubjectFromContext(r.Context()) }
}

// GRPCKeyBySubject is the gRPC counterpart of KeyBySubject, for WithGRPCServerRateLimit.
func GRPCKeyBySubject() GRPCKeyFunc {
	return func(ctx context.Context, _ string) string { return auth.SubjectFromContext(ctx) }
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
//   - DialOptions installs it as gRPC per-RPC credentials (auth.PerRPCCredentials), which
//     gRPC sends only over secure transport credentials (WithTLS, or the caller's own): a call
//     over an insecure channel fails. To send a token in the clear, as on loopback in tests,
//     add grpc.WithPerRPCCredentials(auth.PerRPCCredentials{Token: token, AllowInsecure:
//     true}) yourself instead.
//
// Servers ignore it. Default: no token.
func WithCredentials(token auth.TokenFunc) Option {
	return optionFunc(func(c *config) {
		if token == nil {
			c.errs = append(c.errs, errors.New("middleware: WithCredentials: token function is nil"))
			return
		}
		c.creds.token = token
	})
}

// WithTLS makes DialOptions secure its channels with cfg (see auth.ClientTLS for one with
// mTLS client certificates and reload), as grpc.WithTransportCredentials(credentials.NewTLS
// (cfg)) would; the server name is the target's authority unless cfg.ServerName is set. Do not
// add other transport credentials.
//
// NewTransport refuses it: an HTTP client originates TLS in its base transport, for
// https:// URLs, so set cfg as the base *http.Transport's TLSClientConfig:
//
//	base := http.DefaultTransport.(*http.Transport).Clone()
//	base.TLSClientConfig = cfg
//	tr, err := middleware.NewTransport(base, opts...)
//
// Servers ignore it: their TLS is the server's (http.Server.TLSConfig, grpc.Creds; see
// auth.ServerTLS). Default: the caller's transport credentials.
func WithTLS(cfg *tls.Config) Option {
	return optionFunc(func(c *config) {
		if cfg == nil {
			c.errs = append(c.errs, errors.New("middleware: WithTLS: config is nil"))
			return
		}
		c.creds.tls = cfg
	})
}

// errTLSForTransport refuses WithTLS in NewTransport.
var errTLSForTransport = errors.New("middleware: WithTLS secures gRPC channels (DialOptions); for NewTransport, set TLSClientConfig on the base *http.Transport")

// wrap returns base with the outbound credentials of the options applied: NewTransport calls
// it on its base transport (never nil), inside its telemetry, so that each attempt gets the
// token. It refuses WithTLS.
func (o *outboundCreds) wrap(base http.RoundTripper) (http.RoundTripper, error) {
	if o.tls != nil {
		return nil, errTLSForTransport
	}
	if o.token == nil {
		return base, nil
	}
	t, err := auth.NewTransport(base, o.token)
	if err != nil {
		return nil, fmt.Errorf("middleware: WithCredentials: %w", err)
	}
	return t, nil
}

// dialOptions returns the gRPC dial options of the outbound credentials, for DialOptions to
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
