package connect

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ErrLeafExpired is the handshake error once the leaf certificate has expired and the agent
// has not given a new one: the Mesh fails closed.
var ErrLeafExpired = errors.New("connect: leaf certificate expired and not renewed")

// certificate returns the current leaf for a handshake at now, or an error matching
// ErrLeafExpired once it has expired.
func (m *Mesh) certificate(now time.Time) (*tls.Certificate, error) {
	return currentCert(m.leaf.Load(), now, func() error { return m.status[partLeaf].get().Err })
}

// currentCert returns l's certificate while it is valid at now; after, an error matching
// ErrLeafExpired that says when it expired and, from lastErr, why it was not renewed.
func currentCert(l *leafState, now time.Time, lastErr func() error) (*tls.Certificate, error) {
	if !now.Before(l.notAfter) {
		return nil, fmt.Errorf("%w: the certificate of %q expired at %s; last error from the agent: %v",
			ErrLeafExpired, l.id.Service, l.notAfter.UTC().Format(time.RFC3339), lastErr())
	}
	return l.cert, nil
}

// ServerTLS returns the TLS configuration of a Connect-native server (http.Server.TLSConfig,
// or credentials.NewTLS for gRPC): it serves the current leaf certificate (its whole chain)
// and requires a client certificate that verifies against any of the current CA roots and
// carries a Connect service identity of the trust domain. Certificates and roots rotate
// without a restart: each handshake uses what the agent gave last. Which client may call is
// decided per request by the authorizer (Handler, UnaryServerInterceptor), from intentions.
//
// Each call returns a new configuration; it offers ALPN "h2" and "http/1.1" (Consul's
// proxies negotiate none and get HTTP/1.1).
func (m *Mesh) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.certificate(time.Now())
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPeer(m.roots.Load(), cs.PeerCertificates, x509.ExtKeyUsageClientAuth, nil, time.Now())
			return err
		},
	}
}

// ClientTLS returns the TLS configuration for calling service over the mesh (one of its
// endpoints from Resolver: a sidecar or a Connect-native instance), for
// middleware.WithTLS(gRPC) or a base http.Transport: it presents the current leaf (its whole
// chain), sends the server name Consul assigns the service
// (<service>.default.<dc>.internal.<trust domain>), and accepts only a server whose
// certificate verifies against any of the current CA roots and whose SPIFFE URI is the
// service's Connect identity (spiffe://<trust domain>/ns/default/dc/<dc>/svc/<service>), the
// datacenter being this service's. Host names are not checked: the identity is. The
// certificate, roots and identity are read at each handshake; the server name is fixed when
// ClientTLS is called.
//
// It offers no ALPN protocol of its own: gRPC adds "h2", and an http.Transport given this
// configuration speaks HTTP/1.1 (Consul's proxies negotiate no ALPN). For HTTP clients,
// Transport does this for every mesh service.
func (m *Mesh) ClientTLS(service string) (*tls.Config, error) {
	if service == "" || service == "*" {
		return nil, fmt.Errorf("connect: ClientTLS: %q is not a service name", service)
	}
	self, td := m.leaf.Load().id, m.roots.Load().trustDomain
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: sni(service, "default", self.Datacenter, td),
		// Verification is VerifyConnection's: the chain against the current roots (which a
		// fixed RootCAs could not follow), and the SPIFFE identity instead of a host name.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return m.certificate(time.Now())
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			roots := m.roots.Load()
			want := Identity{TrustDomain: roots.trustDomain, Namespace: "default", Datacenter: m.leaf.Load().id.Datacenter, Service: service}
			_, err := verifyPeer(roots, cs.PeerCertificates, x509.ExtKeyUsageServerAuth, &want, time.Now())
			return err
		},
	}, nil
}
