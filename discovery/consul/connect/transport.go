package connect

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
)

// Transport returns the base transport of a mesh HTTP client: give it to
// middleware.NewTransport with middleware.WithResolver(m.Resolver()). An attempt to an
// endpoint the Mesh's resolver gave for a service goes over mTLS as ClientTLS(service)
// describes (HTTP/1.1 over TLS, whatever the URL's scheme); a request to an address that is an
// endpoint of several services is refused (no one identity could be checked); any other
// request passes through to base unchanged. base may be nil (a clone of http.DefaultTransport); its TLS settings are
// not used for mesh endpoints. Close the Mesh's idle connections with CloseIdleConnections.
func (m *Mesh) Transport(base *http.Transport) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	mesh := base.Clone()
	mesh.TLSClientConfig = nil
	mesh.Proxy = nil // mesh endpoints are dialled directly, never through an HTTP proxy
	mesh.ForceAttemptHTTP2 = false
	mesh.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	dialer := &net.Dialer{}
	dial := base.DialContext
	if dial == nil {
		dial = dialer.DialContext
	}
	mesh.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		service, ok := m.addrs.Service(addr)
		if !ok {
			return nil, fmt.Errorf("connect: %s is no longer an endpoint of a mesh service", addr)
		}
		cfg, err := m.ClientTLS(service)
		if err != nil {
			return nil, err
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("connect: mTLS handshake with %s (service %q): %w", addr, service, err)
		}
		return conn, nil
	}
	return &meshTransport{m: m, base: base, mesh: mesh}
}

type meshTransport struct {
	m    *Mesh
	base http.RoundTripper
	mesh *http.Transport
}

// RoundTrip sends req over mTLS when its host is a mesh endpoint, else through base.
func (t *meshTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		return t.base.RoundTrip(req)
	}
	if _, ok := t.m.addrs.Service(req.URL.Host); !ok {
		if t.m.addrs.Shared(req.URL.Host) {
			// An endpoint of several services: no identity can be checked, and it must not
			// go in clear text to base either.
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("connect: %s is an endpoint of several mesh services: refused", req.URL.Host)
		}
		return t.base.RoundTrip(req)
	}
	out := req.WithContext(req.Context()) // a shallow copy: the caller's request is not modified
	u := *req.URL
	u.Scheme = "https"
	out.URL = &u
	return t.mesh.RoundTrip(out)
}

// CloseIdleConnections closes the idle connections of both transports.
func (t *meshTransport) CloseIdleConnections() {
	t.mesh.CloseIdleConnections()
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
