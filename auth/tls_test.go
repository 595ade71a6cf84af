package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/auth"
)

type pki struct {
	dir                   string
	ca, foreign           *testCA
	caFile                string
	serverCert, serverKey string
	serverSerial          int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), ca: newCA(t, "test CA"), foreign: newCA(t, "foreign CA")}
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writeFile(t, p.caFile, p.ca.pem)
	p.serverCert, p.serverKey = filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server-key.pem")
	p.rotateServer(t)
	return p
}

func (p *pki) rotateServer(t *testing.T) int64 {
	c, k, s := p.ca.issue(t, leafOpts{cn: "server", dns: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, uris: []string{"spiffe://example.org/server"}})
	writeFile(t, p.serverKey, k)
	writeFile(t, p.serverCert, c)
	p.serverSerial = s
	return s
}

// client writes a client certificate pair and returns its files.
func (p *pki) client(t *testing.T, ca *testCA, name string, o leafOpts) (certFile, keyFile string) {
	c, k, _ := ca.issue(t, o)
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writeFile(t, certFile, c)
	writeFile(t, keyFile, k)
	return certFile, keyFile
}

// serveTLS runs an HTTP server on a loopback TLS listener; it counts the requests that reach
// the handler and reports the client certificate serial it saw.
func serveTLS(t *testing.T, cfg *tls.Config, h http.Handler) (addr string, hits *atomic.Int64) {
	t.Helper()
	hits = &atomic.Int64{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if h != nil {
				h.ServeHTTP(w, r)
				return
			}
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				_, _ = w.Write([]byte(r.TLS.PeerCertificates[0].SerialNumber.String()))
			}
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          nil,
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), hits
}

// get makes one request over a fresh connection (a new handshake).
func get(t *testing.T, cfg *tls.Config, addr string) (string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b := make([]byte, 64)
	n, _ := resp.Body.Read(b)
	return string(b[:n]), nil
}

func TestMTLS(t *testing.T) {
	p := newPKI(t)
	serverCfg, err := auth.ServerTLS(auth.ServerTLSConfig{
		CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile,
		Peers:          auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://example.org/ns/prod/*"}},
		ReloadInterval: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	addr, hits := serveTLS(t, serverCfg, nil)

	goodCert, goodKey := p.client(t, p.ca, "good", leafOpts{cn: "api", uris: []string{"spiffe://example.org/ns/prod/sa/api"}})
	good, err := auth.ClientTLS(auth.ClientTLSConfig{CAFile: p.caFile, CertFile: goodCert, KeyFile: goodKey, ReloadInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	_, err = get(t, good, addr)
	require.NoError(t, err)
	require.EqualValues(t, 1, hits.Load())

	clientWith := func(ca *testCA, name string, o leafOpts) *tls.Config {
		c, k := p.client(t, ca, name, o)
		cfg, err := auth.ClientTLS(auth.ClientTLSConfig{CAFile: p.caFile, CertFile: c, KeyFile: k})
		require.NoError(t, err)
		return cfg
	}
	noCert, err := auth.ClientTLS(auth.ClientTLSConfig{CAFile: p.caFile})
	require.NoError(t, err)
	goodPair, err := tls.LoadX509KeyPair(goodCert, goodKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.ca.pem)

	denied := map[string]*tls.Config{
		"no client certificate": noCert,
		"foreign CA":            clientWith(p.foreign, "foreign", leafOpts{uris: []string{"spiffe://example.org/ns/prod/sa/api"}}),
		"SAN not allowed":       clientWith(p.ca, "dev", leafOpts{uris: []string{"spiffe://example.org/ns/dev/sa/api"}}),
		"prefix is not a match": clientWith(p.ca, "prodx", leafOpts{uris: []string{"spiffe://example.org/ns/production/sa/api"}}),
		"expired":               clientWith(p.ca, "expired", leafOpts{uris: []string{"spiffe://example.org/ns/prod/sa/api"}, notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)}),
		"TLS 1.1":               {RootCAs: pool, Certificates: []tls.Certificate{goodPair}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
	}
	for name, cfg := range denied {
		t.Run(name, func(t *testing.T) {
			_, err := get(t, cfg, addr)
			require.Error(t, err)
		})
	}
	assert.EqualValues(t, 1, hits.Load(), "no refused client reaches the handler")

	t.Run("server certificate rotation", func(t *testing.T) {
		before := p.serverSerial
		newSerial := p.rotateServer(t)
		require.NotEqual(t, before, newSerial)
		eventually(t, 5*time.Second, func() bool {
			conn, err := tls.Dial("tcp", addr, good)
			if err != nil {
				return false
			}
			defer conn.Close()
			return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64() == newSerial
		}, "new handshakes use the new certificate")

		// A broken file keeps the last good pair.
		writeFile(t, p.serverCert, []byte("garbage"))
		time.Sleep(60 * time.Millisecond) // several reload intervals; nothing to poll: the point is that nothing changes
		conn, err := tls.Dial("tcp", addr, good)
		require.NoError(t, err)
		assert.Equal(t, newSerial, conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64())
		_ = conn.Close()
	})

	t.Run("client certificate rotation", func(t *testing.T) {
		c, k, s := p.ca.issue(t, leafOpts{uris: []string{"spiffe://example.org/ns/prod/sa/api"}})
		writeFile(t, goodKey, k)
		writeFile(t, goodCert, c)
		eventually(t, 5*time.Second, func() bool {
			body, err := get(t, good, addr)
			return err == nil && body == serialString(s)
		}, "the client presents its new certificate")
	})
}

func serialString(n int64) string { return big.NewInt(n).String() }

func TestClientTLSPeersAndGRPCAdapters(t *testing.T) {
	p := newPKI(t)
	// The server accepts any client the CA signed; the gRPC interceptors authorize by CN.
	serverCfg, err := auth.ServerTLS(auth.ServerTLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile})
	require.NoError(t, err)
	authz, err := auth.NewPeerAuthorizer(auth.PeerPolicy{CommonNames: []string{"billing"}})
	require.NoError(t, err)
	seen := make(chan string, 4)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		pr, _ := auth.PeerFromContext(ctx)
		seen <- pr.CommonName
		return h(ctx, req)
	}
	addr := grpcServer(t, grpc.Creds(credentials.NewTLS(serverCfg)),
		grpc.ChainUnaryInterceptor(authz.UnaryServerInterceptor(), record),
		grpc.ChainStreamInterceptor(authz.StreamServerInterceptor()))

	call := func(cn string, peers auth.PeerPolicy) error {
		c, k := p.client(t, p.ca, cn, leafOpts{cn: cn})
		cfg, err := auth.ClientTLS(auth.ClientTLSConfig{CAFile: p.caFile, CertFile: c, KeyFile: k, Peers: peers})
		require.NoError(t, err)
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		require.NoError(t, err)
		defer cc.Close()
		_, err = healthpb.NewHealthClient(cc).Check(ctxT(t), &healthpb.HealthCheckRequest{})
		return err
	}
	require.NoError(t, call("billing", auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://example.org/server"}}))
	assert.Equal(t, "billing", <-seen)
	assert.Equal(t, codes.PermissionDenied, status.Code(call("intruder", auth.PeerPolicy{})))
	// The client refuses a server whose SPIFFE ID it does not expect.
	err = call("billing", auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://example.org/other"}})
	assert.Equal(t, codes.Unavailable, status.Code(err))

	// The HTTP adapter, over the same server configuration.
	h := authz.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pr, _ := auth.PeerFromContext(r.Context())
		_, _ = w.Write([]byte(pr.CommonName))
	}))
	httpAddr, _ := serveTLS(t, serverCfg, h)
	c, k := p.client(t, p.ca, "billing", leafOpts{cn: "billing"})
	cfg, err := auth.ClientTLS(auth.ClientTLSConfig{CAFile: p.caFile, CertFile: c, KeyFile: k})
	require.NoError(t, err)
	body, err := get(t, cfg, httpAddr)
	require.NoError(t, err)
	assert.Equal(t, "billing", body)
	c, k = p.client(t, p.ca, "other", leafOpts{cn: "other"})
	cfg, err = auth.ClientTLS(auth.ClientTLSConfig{CAFile: p.caFile, CertFile: c, KeyFile: k})
	require.NoError(t, err)
	body, err = get(t, cfg, httpAddr)
	require.NoError(t, err)
	assert.Equal(t, "Forbidden\n", body)
}

func TestTLSConfigErrors(t *testing.T) {
	p := newPKI(t)
	var ce *auth.ConfigError
	for name, tc := range map[string]struct {
		cfg   auth.ServerTLSConfig
		field string
	}{
		"no cert":       {auth.ServerTLSConfig{KeyFile: p.serverKey}, "CertFile"},
		"no key":        {auth.ServerTLSConfig{CertFile: p.serverCert}, "KeyFile"},
		"tls 1.1":       {auth.ServerTLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, MinVersion: tls.VersionTLS11}, "MinVersion"},
		"peers, no CA":  {auth.ServerTLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, Peers: auth.PeerPolicy{CommonNames: []string{"x"}}}, "ClientCAFile"},
		"bad spiffe":    {auth.ServerTLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile, Peers: auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://Upper/x"}}}, "PeerPolicy.SPIFFEIDs[0]"},
		"pair mismatch": {auth.ServerTLSConfig{CertFile: p.serverCert, KeyFile: p.caFile}, "CertFile"},
	} {
		_, err := auth.ServerTLS(tc.cfg)
		require.ErrorAs(t, err, &ce, name)
		assert.Equal(t, tc.field, ce.Field, name)
	}
	_, err := auth.ClientTLS(auth.ClientTLSConfig{CertFile: p.serverCert})
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "KeyFile", ce.Field)
	_, err = auth.ClientTLS(auth.ClientTLSConfig{CAFile: p.serverKey})
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "CAFile", ce.Field)
}

func TestPeerPolicyMatching(t *testing.T) {
	authz, err := auth.NewPeerAuthorizer(auth.PeerPolicy{
		SPIFFEIDs:   []string{"spiffe://example.org/ns/prod/sa/api", "spiffe://partner.org/*"},
		URIs:        []string{"urn:example:svc"},
		DNSNames:    []string{"db.internal", "*.svc.example.com"},
		CommonNames: []string{"legacy"},
	})
	require.NoError(t, err)
	cert := func(cn string, dns []string, uris ...string) *x509.Certificate {
		c := &x509.Certificate{DNSNames: dns}
		c.Subject.CommonName = cn
		for _, u := range uris {
			pu, _ := url.Parse(u)
			c.URIs = append(c.URIs, pu)
		}
		return c
	}
	cases := []struct {
		name string
		cert *x509.Certificate
		ok   bool
	}{
		{"exact spiffe", cert("", nil, "spiffe://example.org/ns/prod/sa/api"), true},
		{"spiffe sibling", cert("", nil, "spiffe://example.org/ns/prod/sa/apix"), false},
		{"trust domain wildcard", cert("", nil, "spiffe://partner.org/anything/here"), true},
		{"two URI SANs is no SPIFFE ID", cert("", nil, "spiffe://partner.org/a", "spiffe://partner.org/b"), false},
		{"uri", cert("", nil, "urn:example:svc"), true},
		{"dns exact, case-insensitive", cert("", []string{"DB.internal."}), true},
		{"dns wildcard one label", cert("", []string{"api.svc.example.com"}), true},
		{"dns wildcard two labels", cert("", []string{"a.b.svc.example.com"}), false},
		{"dns wildcard apex", cert("", []string{"svc.example.com"}), false},
		{"a wildcard SAN never matches a wildcard entry", cert("", []string{"*.svc.example.com"}), false},
		{"nor in upper case", cert("", []string{"*.SVC.example.com."}), false},
		{"nor a partial-label wildcard", cert("", []string{"a*.svc.example.com"}), false},
		{"cn", cert("legacy", nil), true},
		{"nothing", cert("other", []string{"other.test"}, "spiffe://example.org/other"), false},
	}
	for _, tc := range cases {
		_, err := authz.Authorize(tc.cert)
		if tc.ok {
			assert.NoError(t, err, tc.name)
		} else {
			assert.True(t, errors.Is(err, auth.ErrPeerNotAllowed), tc.name)
		}
	}
	assert.Error(t, authz.VerifyConnection(tls.ConnectionState{}), "no peer certificate")
	none, err := auth.NewPeerAuthorizer(auth.PeerPolicy{})
	require.NoError(t, err)
	_, err = none.Authorize(cert("whoever", nil))
	assert.ErrorIs(t, err, auth.ErrPeerNotAllowed, "the zero policy allows no peer")
	allowAll, err := auth.NewPeerAuthorizer(auth.PeerPolicy{AnyVerifiedPeer: true})
	require.NoError(t, err)
	_, err = allowAll.Authorize(cert("whoever", nil))
	assert.NoError(t, err, "AnyVerifiedPeer allows every verified peer")
}
