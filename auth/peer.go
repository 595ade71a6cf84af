package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// PeerPolicy is an allow-list of mTLS peer identities. A peer is allowed when its leaf
// certificate matches any entry of any field. The zero PeerPolicy allows no peer at all: to
// allow every peer whose certificate chain verified, say so with AnyVerifiedPeer.
type PeerPolicy struct {
	// AnyVerifiedPeer allows every peer whose certificate chain verified, whatever its
	// identity; the other fields then add nothing. Default false.
	AnyVerifiedPeer bool `json:"anyVerifiedPeer,omitempty" yaml:"anyVerifiedPeer,omitempty"`
	// SPIFFEIDs are accepted SPIFFE IDs. "spiffe://td/path" matches exactly; an entry ending in
	// "/*" matches every ID below it ("spiffe://td/ns/prod/*"); "spiffe://td/*" matches the
	// whole trust domain. A certificate has a SPIFFE ID when it has exactly one URI SAN and
	// that URI is a valid SPIFFE ID.
	SPIFFEIDs []string `json:"spiffeIDs,omitempty" yaml:"spiffeIDs,omitempty"`
	// URIs are accepted URI SANs, matched exactly.
	URIs []string `json:"uris,omitempty" yaml:"uris,omitempty"`
	// DNSNames are accepted DNS SANs, matched case-insensitively; "*.example.com" matches one
	// label below example.com. A certificate's own wildcard SAN ("*.example.com" in the
	// certificate) never matches: a peer is one host, not a pattern.
	DNSNames []string `json:"dnsNames,omitempty" yaml:"dnsNames,omitempty"`
	// CommonNames are accepted subject common names, matched exactly.
	CommonNames []string `json:"commonNames,omitempty" yaml:"commonNames,omitempty"`
}

// empty reports whether p says nothing: neither entries nor AnyVerifiedPeer.
func (p PeerPolicy) empty() bool {
	return !p.AnyVerifiedPeer && len(p.SPIFFEIDs)+len(p.URIs)+len(p.DNSNames)+len(p.CommonNames) == 0
}

// Peer is the verified identity of an mTLS peer. Immutable.
type Peer struct {
	SPIFFEID    string            // "" when the certificate has none
	URIs        []string          // URI SANs
	DNSNames    []string          // DNS SANs
	CommonName  string            // subject CN
	Certificate *x509.Certificate // the leaf
}

type peerKey struct{}

// ContextWithPeer returns a copy of ctx carrying p.
func ContextWithPeer(ctx context.Context, p *Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerFromContext returns the peer identity a PeerAuthorizer adapter put in the context.
func PeerFromContext(ctx context.Context) (*Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(*Peer)
	return p, ok && p != nil
}

// PeerAuthorizer checks mTLS peers against a PeerPolicy. Immutable, safe for concurrent use,
// nothing to close.
type PeerAuthorizer struct {
	spiffeExact  map[string]bool
	spiffePrefix []string // each ends in "/"
	uris         map[string]bool
	dnsExact     map[string]bool
	dnsWildcard  []string // ".example.com"
	cns          map[string]bool
	allowAll     bool
}

// NewPeerAuthorizer compiles p, naming the first bad entry.
func NewPeerAuthorizer(p PeerPolicy) (*PeerAuthorizer, error) {
	a := &PeerAuthorizer{
		spiffeExact: map[string]bool{}, uris: map[string]bool{}, dnsExact: map[string]bool{}, cns: map[string]bool{},
		allowAll: p.AnyVerifiedPeer,
	}
	for i, id := range p.SPIFFEIDs {
		field := fmt.Sprintf("PeerPolicy.SPIFFEIDs[%d]", i)
		if base, ok := strings.CutSuffix(id, "/*"); ok {
			if _, err := ParseSPIFFEID(base); err != nil && !isTrustDomainOnly(base) {
				return nil, cfgErr(field, err.Error())
			}
			a.spiffePrefix = append(a.spiffePrefix, base+"/")
			continue
		}
		if _, err := ParseSPIFFEID(id); err != nil {
			return nil, cfgErr(field, err.Error())
		}
		a.spiffeExact[id] = true
	}
	for i, u := range p.URIs {
		if pu, err := url.Parse(u); err != nil || pu.Scheme == "" {
			return nil, cfgErr(fmt.Sprintf("PeerPolicy.URIs[%d]", i), "not an absolute URI")
		}
		a.uris[u] = true
	}
	for i, d := range p.DNSNames {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if rest, ok := strings.CutPrefix(d, "*."); ok {
			if !validDNSName(rest) || !strings.Contains(rest, ".") {
				return nil, cfgErr(fmt.Sprintf("PeerPolicy.DNSNames[%d]", i), "bad wildcard name")
			}
			a.dnsWildcard = append(a.dnsWildcard, "."+rest)
			continue
		}
		if !validDNSName(d) {
			return nil, cfgErr(fmt.Sprintf("PeerPolicy.DNSNames[%d]", i), "not a DNS name")
		}
		a.dnsExact[d] = true
	}
	for i, cn := range p.CommonNames {
		if cn == "" {
			return nil, cfgErr(fmt.Sprintf("PeerPolicy.CommonNames[%d]", i), "empty")
		}
		a.cns[cn] = true
	}
	return a, nil
}

func isTrustDomainOnly(s string) bool {
	td, ok := strings.CutPrefix(s, "spiffe://")
	return ok && validTrustDomain(td)
}

func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

var errBadSPIFFEID = errors.New("auth: not a SPIFFE ID")

// ParseSPIFFEID checks that s is a SPIFFE ID ("spiffe://trust-domain/path", per the SPIFFE
// ID specification: lower-case trust domain of letters, digits, '.', '-' and '_'; path
// segments of letters, digits, '.', '-' and '_', none empty, "." or "..") and returns its
// trust domain.
func ParseSPIFFEID(s string) (trustDomain string, err error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok || len(s) > 2048 {
		return "", errBadSPIFFEID
	}
	td, path, hasPath := strings.Cut(rest, "/")
	if !validTrustDomain(td) {
		return "", errBadSPIFFEID
	}
	if !hasPath {
		return td, nil
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", errBadSPIFFEID
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return "", errBadSPIFFEID
			}
		}
	}
	return td, nil
}

func validTrustDomain(td string) bool {
	if td == "" || len(td) > 255 {
		return false
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// identity extracts the Peer of a leaf certificate.
func identity(cert *x509.Certificate) *Peer {
	p := &Peer{CommonName: cert.Subject.CommonName, DNSNames: cert.DNSNames, Certificate: cert}
	for _, u := range cert.URIs {
		p.URIs = append(p.URIs, u.String())
	}
	if len(p.URIs) == 1 && strings.HasPrefix(p.URIs[0], "spiffe://") {
		if _, err := ParseSPIFFEID(p.URIs[0]); err == nil {
			p.SPIFFEID = p.URIs[0]
		}
	}
	return p
}

// Authorize returns the identity of the leaf certificate cert when the policy allows it, and
// an error matching ErrPeerNotAllowed otherwise. It does not verify the chain: that is the
// TLS handshake's job.
func (a *PeerAuthorizer) Authorize(cert *x509.Certificate) (*Peer, error) {
	if cert == nil {
		return nil, ErrPeerNotAllowed
	}
	p := identity(cert)
	if a.allows(p) {
		return p, nil
	}
	return nil, ErrPeerNotAllowed
}

func (a *PeerAuthorizer) allows(p *Peer) bool {
	if a.allowAll {
		return true
	}
	if p.SPIFFEID != "" {
		if a.spiffeExact[p.SPIFFEID] {
			return true
		}
		for _, pre := range a.spiffePrefix {
			if strings.HasPrefix(p.SPIFFEID, pre) {
				return true
			}
		}
	}
	for _, u := range p.URIs {
		if a.uris[u] {
			return true
		}
	}
	for _, d := range p.DNSNames {
		if strings.Contains(d, "*") {
			continue // a wildcard in the certificate: never an identity
		}
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if a.dnsExact[d] {
			return true
		}
		for _, w := range a.dnsWildcard {
			if label, ok := strings.CutSuffix(d, w); ok && label != "" && !strings.Contains(label, ".") {
				return true
			}
		}
	}
	return p.CommonName != "" && a.cns[p.CommonName]
}

// VerifyConnection authorizes the peer of a completed handshake; use it as
// tls.Config.VerifyConnection (ServerTLS and ClientTLS do). It refuses a connection without a
// verified peer certificate.
func (a *PeerAuthorizer) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 || len(cs.VerifiedChains) == 0 {
		return ErrPeerNotAllowed
	}
	_, err := a.Authorize(cs.PeerCertificates[0])
	return err
}
