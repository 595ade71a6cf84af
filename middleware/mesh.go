package middleware

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/proxyless/proxyless/discovery"
)

// Mesh is a member of a service mesh that a process joins with the one option WithMesh: for
// example *connect.Mesh (package discovery/consul/connect), a Connect-native member of a
// Consul service mesh. It authorizes requests by the caller's mTLS identity (Authorizer),
// finds the endpoints of the mesh's services (Resolver) and gives the TLS configurations of
// its identity: the server's (ServerTLS) and the client's to one service (ClientTLS, which
// checks that the server is that service).
type Mesh interface {
	Authorizer
	// Resolver returns the resolver of the mesh's services.
	Resolver() discovery.Resolver
	// ServerTLS returns the TLS configuration of a server of the mesh: its certificate, and
	// the client certificates it requires.
	ServerTLS() *tls.Config
	// ClientTLS returns the TLS configuration for calling service: the client certificate,
	// and the check that the server is service.
	ClientTLS(service string) (*tls.Config, error)
	// Transport returns the base transport of an HTTP client of the mesh: it sends the
	// attempts to an endpoint that Resolver gave for a service over mTLS to that service
	// (as ClientTLS(service) describes), and the others through base unchanged. base may be
	// nil.
	Transport(base *http.Transport) http.RoundTripper
}

// WithMesh makes a constructor a member of mesh m, in one option:
//
//   - NewTransport resolves services with m.Resolver() and sends each attempt to a service's
//     endpoint over mTLS, checking that the server is that service (m.Transport over the base
//     transport, which must then be nil or an *http.Transport). Requests to hosts that are
//     not endpoints of the mesh pass through to the base transport unchanged.
//   - NewGRPCClient resolves services with m.Resolver() (when its resolver argument is nil)
//     and secures each channel with transport credentials that, at each handshake, present
//     the mesh's certificate and accept only the service the channel's authority names (the
//     target's service: "payments" for NewClient("payments")).
//   - NewHandler and NewGRPCServer authorize every request and call with m, as
//     WithAuthorizer(m) does. NewGRPCServer's ServerOptions also carries
//     grpc.Creds(credentials.NewTLS(m.ServerTLS())). The TLS of an http.Server stays the
//     server's: set its TLSConfig to m.ServerTLS().
//
// It cannot be combined with the options that set what it sets: WithResolver, WithTLS and
// WithAuthorizer. Taken by every constructor. Default: none.
func WithMesh(m Mesh) Option {
	return option(func(c *config) {
		if m == nil {
			c.errs = append(c.errs, errors.New("middleware: WithMesh: mesh is nil"))
			return
		}
		if c.mesh != nil {
			c.errs = append(c.errs, errors.New("middleware: WithMesh: given twice"))
			return
		}
		c.mesh = m
	})
}

// joinMesh applies WithMesh once every option has run, refusing the options it replaces.
func (c *config) joinMesh() []error {
	var errs []error
	if c.server.authz != nil {
		errs = append(errs, errors.New("middleware: WithMesh and WithAuthorizer both set the authorizer: drop WithAuthorizer (the mesh authorizes)"))
	}
	if c.resolver != nil {
		errs = append(errs, errors.New("middleware: WithMesh and WithResolver both set the resolver: drop WithResolver (the mesh resolves)"))
	}
	if c.creds.tls != nil {
		errs = append(errs, errors.New("middleware: WithMesh and WithTLS both set the transport credentials: drop WithTLS (the mesh's mTLS is used)"))
	}
	c.server.authz = c.mesh
	c.resolver = c.mesh.Resolver()
	c.creds.mesh = &meshGRPCCreds{m: c.mesh}
	return errs
}

// meshBase returns the base transport of NewTransport with WithMesh: m.Transport over base.
func meshBase(m Mesh, base http.RoundTripper) (http.RoundTripper, error) {
	if base == nil {
		return m.Transport(nil), nil
	}
	ht, ok := base.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("middleware: WithMesh needs the base transport to be an *http.Transport (or nil), got %T", base)
	}
	return m.Transport(ht), nil
}

// meshGRPCCreds are the gRPC transport credentials of a mesh client: each handshake takes the
// mesh's TLS configuration for the service the channel's authority names, so that one set of
// credentials serves channels to every service and checks each server's identity.
type meshGRPCCreds struct {
	m Mesh
}

// ClientHandshake runs the mTLS handshake of a channel to the service authority names.
func (c *meshGRPCCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	service := authority
	if h, _, err := net.SplitHostPort(authority); err == nil {
		service = h
	}
	cfg, err := c.m.ClientTLS(service)
	if err != nil {
		return nil, nil, fmt.Errorf("middleware: WithMesh: the channel's authority %q: %w", authority, err)
	}
	return credentials.NewTLS(cfg).ClientHandshake(ctx, authority, raw)
}

// ServerHandshake refuses: the credentials are a client's (a server's are
// credentials.NewTLS(m.ServerTLS()), which NewGRPCServer's ServerOptions carries).
func (c *meshGRPCCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("middleware: WithMesh: the client's transport credentials do not serve")
}

// Info describes the protocol: TLS.
func (c *meshGRPCCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

// Clone returns a copy.
func (c *meshGRPCCreds) Clone() credentials.TransportCredentials { return &meshGRPCCreds{m: c.m} }

// OverrideServerName does nothing: the server name is the mesh's for each service.
//
// Deprecated: as in credentials.TransportCredentials.
func (c *meshGRPCCreds) OverrideServerName(string) error { return nil }

// meshServerCreds is the grpc.Creds option of a gRPC server of mesh m.
func meshServerCreds(m Mesh) grpc.ServerOption {
	return grpc.Creds(credentials.NewTLS(m.ServerTLS()))
}
