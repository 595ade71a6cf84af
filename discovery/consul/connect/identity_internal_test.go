package connect

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseIdentity(t *testing.T) {
	id, err := ParseIdentity("spiffe://11111111-2222.consul/ns/default/dc/dc1/svc/web")
	require.NoError(t, err)
	assert.Equal(t, Identity{TrustDomain: "11111111-2222.consul", Namespace: "default", Datacenter: "dc1", Service: "web"}, id)
	assert.Equal(t, "spiffe://11111111-2222.consul/ns/default/dc/dc1/svc/web", id.URI())
	for _, bad := range []string{
		"", "spiffe://td.consul", "spiffe://td.consul/agent/client/dc/dc1/id/x",
		"spiffe://td.consul/ns/default/dc/dc1/svc/web/extra", "spiffe://td.consul/ns/default/dc/dc1/svc/",
		"spiffe://td.consul/ns/default/dc/dc1/xyz/web", "https://td.consul/ns/default/dc/dc1/svc/web",
		"spiffe://TD.consul/ns/default/dc/dc1/svc/web", "spiffe://td.consul/ns/default/dc/dc1/svc/w%20b",
		"spiffe://td.consul/ns/default/dc/../svc/web",
	} {
		_, err := ParseIdentity(bad)
		assert.ErrorIs(t, err, ErrNotServiceIdentity, bad)
	}
}

func FuzzParseIdentity(f *testing.F) {
	f.Add("spiffe://a.consul/ns/default/dc/dc1/svc/web")
	f.Add("spiffe://a.consul/agent/client/dc/dc1/id/x")
	f.Add("spiffe://a.consul/ns/default/dc/dc1/svc/web/../x")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentity(s)
		if err != nil {
			return
		}
		if id.URI() != s {
			t.Fatalf("%q parsed as %+v, which prints as %q", s, id, id.URI())
		}
	})
}

// testCA is a CA of the test's own making.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// leaf issues a leaf for id, valid from nb to na.
func (ca *testCA) leaf(t *testing.T, id Identity, nb, na time.Time) (*x509.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: id.Service},
		NotBefore: nb, NotAfter: na, URIs: []*url.URL{spiffeURL(id)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	kd, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

func TestVerifyPeer(t *testing.T) {
	now := time.Now()
	ca, other := newCA(t, "ca"), newCA(t, "other")
	roots, err := parseRoots("td.consul", []string{"a", "b"}, []string{ca.pem, newCA(t, "old").pem})
	require.NoError(t, err)
	web := Identity{TrustDomain: "td.consul", Namespace: "default", Datacenter: "dc1", Service: "web"}
	good, _, _ := ca.leaf(t, web, now.Add(-time.Minute), now.Add(time.Hour))

	id, err := verifyPeer(roots, []*x509.Certificate{good}, x509.ExtKeyUsageClientAuth, nil, now)
	require.NoError(t, err)
	assert.Equal(t, web, id)
	_, err = verifyPeer(roots, []*x509.Certificate{good}, x509.ExtKeyUsageServerAuth, &web, now)
	require.NoError(t, err)

	api := web
	api.Service = "api"
	_, err = verifyPeer(roots, []*x509.Certificate{good}, x509.ExtKeyUsageServerAuth, &api, now)
	var idErr *IdentityError
	require.ErrorAs(t, err, &idErr, "a server that is not the service dialled")

	_, err = verifyPeer(roots, []*x509.Certificate{good}, x509.ExtKeyUsageClientAuth, nil, now.Add(2*time.Hour))
	require.Error(t, err, "expired")

	foreign, _, _ := other.leaf(t, web, now.Add(-time.Minute), now.Add(time.Hour))
	_, err = verifyPeer(roots, []*x509.Certificate{foreign}, x509.ExtKeyUsageClientAuth, nil, now)
	var ua x509.UnknownAuthorityError
	require.ErrorAs(t, err, &ua, "another CA")

	elsewhere := web
	elsewhere.TrustDomain = "other.consul"
	wrongTD, _, _ := ca.leaf(t, elsewhere, now.Add(-time.Minute), now.Add(time.Hour))
	_, err = verifyPeer(roots, []*x509.Certificate{wrongTD}, x509.ExtKeyUsageClientAuth, nil, now)
	require.ErrorContains(t, err, "not in trust domain")

	_, err = verifyPeer(roots, make([]*x509.Certificate, maxPeerChain+1), x509.ExtKeyUsageClientAuth, nil, now)
	require.ErrorContains(t, err, "certificates (at most")
	_, err = verifyPeer(roots, nil, x509.ExtKeyUsageClientAuth, nil, now)
	require.Error(t, err)
	_, err = verifyPeer(nil, []*x509.Certificate{good}, x509.ExtKeyUsageClientAuth, nil, now)
	require.Error(t, err)
}

// The last good leaf serves until it expires; then handshakes fail closed with an error that
// says when it expired and why it was not renewed.
func TestLeafFailsClosedAfterExpiry(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "ca")
	web := Identity{TrustDomain: "td.consul", Namespace: "default", Datacenter: "dc1", Service: "web"}
	_, certPEM, keyPEM := ca.leaf(t, web, now.Add(-time.Minute), now.Add(time.Hour))
	l, err := parseLeaf(certPEM, keyPEM, "web")
	require.NoError(t, err)
	agentDown := errors.New("dial tcp 127.0.0.1:8500: connection refused")
	cert, err := currentCert(l, now.Add(59*time.Minute), func() error { return agentDown })
	require.NoError(t, err)
	assert.Same(t, l.cert, cert)
	_, err = currentCert(l, now.Add(time.Hour), func() error { return agentDown })
	require.ErrorIs(t, err, ErrLeafExpired)
	assert.Contains(t, err.Error(), "connection refused")
	assert.Contains(t, err.Error(), `"web"`)

	_, err = parseLeaf(certPEM, keyPEM, "api")
	require.ErrorContains(t, err, `is for service "web", not "api"`)
	_, err = parseLeaf("junk", keyPEM, "web")
	require.Error(t, err)
}

func TestParseRootsRefusesBadBundles(t *testing.T) {
	ca := newCA(t, "ca")
	_, err := parseRoots("", []string{"a"}, []string{ca.pem})
	require.ErrorContains(t, err, "trust domain")
	_, err = parseRoots("td.consul", nil, nil)
	require.ErrorContains(t, err, "0 roots")
	_, err = parseRoots("td.consul", []string{"a"}, []string{"not pem"})
	require.ErrorContains(t, err, `CA root "a"`)
	rs, err := parseRoots("TD.consul", []string{"a"}, []string{ca.pem})
	require.NoError(t, err)
	assert.Equal(t, "td.consul", rs.trustDomain)
}

// spiffeURL is id's SPIFFE URI for a certificate template.
func spiffeURL(id Identity) *url.URL {
	u, _ := url.Parse(id.URI())
	return u
}
