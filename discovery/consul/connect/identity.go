package connect

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/proxyless/proxyless/auth"
)

// Identity is the Connect identity of a service, as its certificate's SPIFFE URI carries it:
// spiffe://<trust domain>/ns/<namespace>/dc/<datacenter>/svc/<service>.
type Identity struct {
	TrustDomain string
	Namespace   string
	Datacenter  string
	Service     string
}

// URI returns the identity's SPIFFE URI.
func (id Identity) URI() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/dc/" + id.Datacenter + "/svc/" + id.Service
}

// ErrNotServiceIdentity means a certificate carries no Connect service identity: not exactly
// one URI SAN, or one that is not spiffe://<trust domain>/ns/<ns>/dc/<dc>/svc/<service>.
var ErrNotServiceIdentity = errors.New("connect: not a Connect service identity")

// maxURILen bounds the URI a peer can make this package parse.
const maxURILen = 2048

// ParseIdentity parses a Connect service SPIFFE URI. It accepts only the service form
// (agents' and other kinds of identities are refused) and SPIFFE IDs valid by the
// specification (see auth.ParseSPIFFEID); the trust domain is lower-cased by then.
func ParseIdentity(uri string) (Identity, error) {
	if len(uri) > maxURILen {
		return Identity{}, ErrNotServiceIdentity
	}
	td, err := auth.ParseSPIFFEID(uri)
	if err != nil {
		return Identity{}, ErrNotServiceIdentity
	}
	path := strings.TrimPrefix(uri, "spiffe://"+td)
	seg := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(seg) != 6 || seg[0] != "ns" || seg[2] != "dc" || seg[4] != "svc" {
		return Identity{}, ErrNotServiceIdentity
	}
	return Identity{TrustDomain: td, Namespace: seg[1], Datacenter: seg[3], Service: seg[5]}, nil
}

// identityOf returns the Connect identity of a leaf certificate.
func identityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil || len(cert.URIs) != 1 {
		return Identity{}, ErrNotServiceIdentity
	}
	return ParseIdentity(cert.URIs[0].String())
}

// leafState is one leaf certificate from the agent. Immutable.
type leafState struct {
	cert     *tls.Certificate // the leaf, then the chain CertPEM carries (cross-signed intermediates)
	id       Identity
	notAfter time.Time
	index    uint64 // the agent's index of the answer
}

// parseLeaf builds a leafState from the agent's PEM certificate chain and key, and checks it
// is the identity of service.
func parseLeaf(certPEM, keyPEM, service string) (*leafState, error) {
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return nil, fmt.Errorf("connect: leaf certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("connect: leaf certificate: %w", err)
	}
	pair.Leaf = leaf
	id, err := identityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("connect: leaf certificate: %w", err)
	}
	if id.Service != service {
		return nil, fmt.Errorf("connect: leaf certificate is for service %q, not %q", id.Service, service)
	}
	return &leafState{cert: &pair, id: id, notAfter: leaf.NotAfter}, nil
}

// rootState is the trusted root bundle. Immutable.
type rootState struct {
	pool        *x509.CertPool
	trustDomain string // lower case
	ids         []string
	index       uint64
}

// maxRoots bounds the root bundle.
const maxRoots = 64

// parseRoots builds a rootState from the agent's root PEMs. Every root is trusted, active or
// not: after a CA rotation peers keep leaves of the old root for a while.
func parseRoots(trustDomain string, ids, pems []string) (*rootState, error) {
	td := strings.ToLower(trustDomain)
	if _, err := auth.ParseSPIFFEID("spiffe://" + td); err != nil || td == "" {
		return nil, fmt.Errorf("connect: CA roots: bad trust domain %q", trustDomain)
	}
	if len(pems) == 0 || len(pems) > maxRoots {
		return nil, fmt.Errorf("connect: CA roots: %d roots (want 1..%d)", len(pems), maxRoots)
	}
	pool := x509.NewCertPool()
	for i, p := range pems {
		block, _ := pem.Decode([]byte(p))
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("connect: CA root %q: no PEM certificate", ids[i])
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("connect: CA root %q: %w", ids[i], err)
		}
		pool.AddCert(c)
	}
	return &rootState{pool: pool, trustDomain: td, ids: append([]string(nil), ids...)}, nil
}

// maxPeerChain bounds the certificates a peer may present.
const maxPeerChain = 8

// verifyPeer verifies a peer's certificate chain against roots at now and returns the peer's
// identity, which must be in the roots' trust domain and, when want is not nil, be *want
// (service, namespace and datacenter).
func verifyPeer(roots *rootState, certs []*x509.Certificate, usage x509.ExtKeyUsage, want *Identity, now time.Time) (Identity, error) {
	if roots == nil {
		return Identity{}, errors.New("connect: no CA roots yet")
	}
	if len(certs) == 0 {
		return Identity{}, errors.New("connect: peer presented no certificate")
	}
	if len(certs) > maxPeerChain {
		return Identity{}, fmt.Errorf("connect: peer presented %d certificates (at most %d)", len(certs), maxPeerChain)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots.pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage},
	}); err != nil {
		return Identity{}, fmt.Errorf("connect: peer certificate: %w", err)
	}
	return checkIdentity(roots, certs[0], want)
}

// checkIdentity returns the identity of a verified leaf when it is in the trust domain of
// roots (and is *want, when want is not nil).
func checkIdentity(roots *rootState, leaf *x509.Certificate, want *Identity) (Identity, error) {
	id, err := identityOf(leaf)
	if err != nil {
		return Identity{}, err
	}
	if id.TrustDomain != roots.trustDomain {
		return Identity{}, fmt.Errorf("connect: peer identity %s is not in trust domain %s", id.URI(), roots.trustDomain)
	}
	if want != nil && (id.Service != want.Service || id.Namespace != want.Namespace || id.Datacenter != want.Datacenter) {
		return Identity{}, &IdentityError{Want: want.URI(), Got: id.URI()}
	}
	return id, nil
}

// IdentityError is a server whose certificate verified but names another service than the
// one dialled.
type IdentityError struct {
	Want, Got string // SPIFFE URIs
}

// Error says which identity the server had and which was wanted.
func (e *IdentityError) Error() string {
	return "connect: server identity " + e.Got + " is not the service dialled, " + e.Want
}

// sni returns the server name Consul assigns a service: <service>.<namespace>.<dc>.internal.<trust domain>.
func sni(service, namespace, dc, trustDomain string) string {
	return service + "." + namespace + "." + dc + ".internal." + trustDomain
}
