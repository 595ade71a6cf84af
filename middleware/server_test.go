package middleware_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/route"
)

// ---- test machinery: a CA, JWTs, a gRPC service that reports who called it ----

// testPKI is a CA that issues loopback server certificates and client certificates with a
// SPIFFE ID.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "proxyless test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{cert: cert, key: key, pool: pool}
}

var lastSerial atomic.Int64

// issue returns a leaf certificate: a server certificate for 127.0.0.1 when spiffeID is "",
// otherwise a client certificate with that SPIFFE ID.
func (p *testPKI) issue(t testing.TB, spiffeID string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(lastSerial.Add(1) + 1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if spiffeID == "" {
		tmpl.Subject.CommonName = "server"
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		u, err := url.Parse(spiffeID)
		require.NoError(t, err)
		tmpl.URIs = []*url.URL{u}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// serverTLS asks for client certificates and verifies those given, leaving the decision to
// the peer authorization under test.
func (p *testPKI) serverTLS(t testing.TB) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.issue(t, "")},
		ClientCAs:    p.pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}
}

// clientTLS presents a certificate with spiffeID ("" for none).
func (p *testPKI) clientTLS(t testing.TB, spiffeID string) *tls.Config {
	c := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if spiffeID != "" {
		c.Certificates = []tls.Certificate{p.issue(t, spiffeID)}
	}
	return c
}

const (
	testIssuer   = "https://idp.test"
	testAudience = "svc"
)

// testIDP signs ES256 tokens that its validator accepts.
type testIDP struct {
	key *ecdsa.PrivateKey
	v   *auth.Validator
}

func newIDP(t testing.TB) *testIDP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	v, err := auth.NewValidator([]auth.Issuer{{
		Issuer: testIssuer, Audiences: []string{testAudience}, Algorithms: []string{"ES256"},
		Keys: []auth.Key{{ID: "k1", Key: &key.PublicKey}},
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return &testIDP{key: key, v: v}
}

func signJWT(key any, alg jose.SignatureAlgorithm, claims map[string]any) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	obj, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// token returns a valid token for sub with the given scope ("" for none).
func (p *testIDP) token(t testing.TB, sub, scope string) string {
	t.Helper()
	claims := map[string]any{"iss": testIssuer, "aud": testAudience, "sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
	if scope != "" {
		claims["scope"] = scope
	}
	tok, err := signJWT(p.key, jose.ES256, claims)
	require.NoError(t, err)
	return tok
}

// whoami answers "subject|spiffe-id|trace-id" from the request context.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, identityOf(r.Context()))
})

func identityOf(ctx context.Context) string {
	id := ""
	if p, ok := auth.PeerFromContext(ctx); ok {
		id = p.SPIFFEID
	}
	return auth.SubjectFromContext(ctx) + "|" + id + "|" + trace.SpanContextFromContext(ctx).TraceID().String()
}

// identityServer is a gRPC TestService whose UnaryCall answers identityOf in Username.
type identityServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (identityServer) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Username: identityOf(ctx)}, nil
}

func (identityServer) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, ss testgrpc.TestService_StreamingOutputCallServer) error {
	return ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(identityOf(ss.Context()))}})
}

// startGRPC serves identityServer on loopback with sopts and returns its address.
func startGRPC(t testing.TB, sopts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(sopts...)
	testgrpc.RegisterTestServiceServer(srv, identityServer{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func dialGRPC(t testing.TB, addr string, dopts ...grpc.DialOption) testgrpc.TestServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, dopts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

func unary(t testing.TB, c testgrpc.TestServiceClient, copts ...grpc.CallOption) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, copts...)
	return resp.GetUsername(), err
}

// bearer is a call option sending tok over an insecure channel.
func bearer(tok string) grpc.CallOption {
	return grpc.PerRPCCredentials(auth.PerRPCCredentials{Token: auth.StaticToken(tok), AllowInsecure: true})
}

// httpsClient is a client of a TLS server, presenting cfg's certificate.
func httpsClient(t testing.TB, cfg *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// do sends a GET to url with the given header pairs and returns the status and body.
func do(t *testing.T, c *http.Client, target string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, target, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer drain(resp)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body), resp.Header
}

func startHTTP(t *testing.T, h http.Handler, opts ...middleware.HandlerOption) *httptest.Server {
	t.Helper()
	hh, err := middleware.NewHandler(h, opts...)
	require.NoError(t, err)
	srv := httptest.NewServer(hh)
	t.Cleanup(srv.Close)
	return srv
}

// ---- JWT ----

func TestHandlerJWT(t *testing.T) {
	idp := newIDP(t)
	srv := startHTTP(t, whoami, middleware.WithJWT(idp.v, auth.WithRule(auth.Rule{Scopes: []string{"write"}})))
	c := srv.Client()

	code, _, h := do(t, c, srv.URL)
	assert.Equal(t, http.StatusUnauthorized, code, "no token")
	assert.Equal(t, "Bearer", h.Get("WWW-Authenticate"))

	code, _, h = do(t, c, srv.URL, "Authorization", "Bearer "+idp.token(t, "alice", "write")+"x")
	assert.Equal(t, http.StatusUnauthorized, code, "bad signature")
	assert.Equal(t, `Bearer error="invalid_token"`, h.Get("WWW-Authenticate"))

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	forged, err := signJWT(other, jose.ES256, map[string]any{"iss": testIssuer, "aud": testAudience, "sub": "mallory", "scope": "write", "exp": time.Now().Add(time.Hour).Unix()})
	require.NoError(t, err)
	code, _, _ = do(t, c, srv.URL, "Authorization", "Bearer "+forged)
	assert.Equal(t, http.StatusUnauthorized, code, "signed by another key")

	code, _, h = do(t, c, srv.URL, "Authorization", "Bearer "+idp.token(t, "bob", "read"))
	assert.Equal(t, http.StatusForbidden, code, "missing scope")
	assert.Equal(t, `Bearer error="insufficient_scope"`, h.Get("WWW-Authenticate"))

	code, body, _ := do(t, c, srv.URL, "Authorization", "Bearer "+idp.token(t, "alice", "read write"))
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, strings.HasPrefix(body, "alice|"), body)
}

func TestHandlerRateLimitBySubject(t *testing.T) {
	idp := newIDP(t)
	lim := keyed(t, ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 0.001, Burst: 2}})
	srv := startHTTP(t, whoami, middleware.WithJWT(idp.v), middleware.WithServerRateLimit(lim, middleware.KeyBySubject()))
	c := srv.Client()
	alice, bob := "Bearer "+idp.token(t, "alice", ""), "Bearer "+idp.token(t, "bob", "")

	for range 3 {
		code, _, _ := do(t, c, srv.URL)
		assert.Equal(t, http.StatusUnauthorized, code, "authentication comes before the limit")
	}
	for i := range 2 {
		code, _, _ := do(t, c, srv.URL, "Authorization", alice)
		assert.Equal(t, http.StatusOK, code, "alice's request %d", i)
	}
	code, _, h := do(t, c, srv.URL, "Authorization", alice)
	assert.Equal(t, http.StatusTooManyRequests, code, "alice's quota is spent")
	assert.NotEmpty(t, h.Get("Retry-After"))
	// A second token for alice (new jti, new signature) is still alice.
	code, _, _ = do(t, c, srv.URL, "Authorization", "Bearer "+idp.token(t, "alice", "other"))
	assert.Equal(t, http.StatusTooManyRequests, code, "a fresh token does not buy a fresh bucket")
	code, body, _ := do(t, c, srv.URL, "Authorization", bob)
	assert.Equal(t, http.StatusOK, code, "bob has his own quota")
	assert.True(t, strings.HasPrefix(body, "bob|"), body)
}

func TestGRPCJWTAndRateLimitBySubject(t *testing.T) {
	idp := newIDP(t)
	lim := keyed(t, ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 0.001, Burst: 2}})
	addr := startGRPC(t, serverOptions(t,
		middleware.WithGRPCStatsHandler(nil),
		middleware.WithJWT(idp.v, auth.WithMethodRules(map[string]auth.Rule{
			"/grpc.testing.TestService/StreamingOutputCall": {Scopes: []string{"stream"}},
		})),
		middleware.WithServerRateLimit(lim, middleware.KeyBySubject()),
	)...)
	c := dialGRPC(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))

	_, err := unary(t, c)
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "no token")
	_, err = unary(t, c, bearer("not.a.token"))
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "bad token")

	alice := bearer(idp.token(t, "alice", ""))
	for range 2 {
		who, err := unary(t, c, alice)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(who, "alice|"), who)
	}
	_, err = unary(t, c, alice)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "alice's quota is spent")
	_, err = unary(t, c, bearer(idp.token(t, "bob", "")))
	assert.NoError(t, err, "bob has his own quota")

	// Streams: the method rule asks for a scope.
	ctx := ctxFor(t, 10*time.Second)
	s, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{}, bearer(idp.token(t, "carol", "")))
	require.NoError(t, err)
	_, err = s.Recv()
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "the stream's rule wants scope stream")
	s, err = c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{}, bearer(idp.token(t, "carol", "stream")))
	require.NoError(t, err)
	msg, err := s.Recv()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(msg.GetPayload().GetBody()), "carol|"), "claims reach the stream's context")
}

// ---- mTLS peers ----

func TestHandlerPeerAuthorization(t *testing.T) {
	pki := newPKI(t)
	authz, err := auth.NewPeerAuthorizer(auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://test/ns/a/*"}})
	require.NoError(t, err)
	idp := newIDP(t)
	h, err := middleware.NewHandler(whoami, middleware.WithPeerAuthorization(authz), middleware.WithJWT(idp.v, auth.WithOptionalToken()))
	require.NoError(t, err)
	var reached sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Store(r.URL.Path, true)
		h.ServeHTTP(w, r)
	}))
	srv.TLS = pki.serverTLS(t)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the foreign certificate's handshake error
	srv.StartTLS()
	t.Cleanup(srv.Close)

	code, body, _ := do(t, httpsClient(t, pki.clientTLS(t, "spiffe://test/ns/a/sa/api")), srv.URL,
		"Authorization", "Bearer "+idp.token(t, "alice", ""))
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, strings.HasPrefix(body, "alice|spiffe://test/ns/a/sa/api|"), body)

	code, _, _ = do(t, httpsClient(t, pki.clientTLS(t, "spiffe://test/ns/b/sa/api")), srv.URL)
	assert.Equal(t, http.StatusForbidden, code, "a peer outside the policy")
	code, _, _ = do(t, httpsClient(t, pki.clientTLS(t, "")), srv.URL)
	assert.Equal(t, http.StatusForbidden, code, "no client certificate")

	// A certificate from another CA fails in the handshake.
	foreign := newPKI(t).clientTLS(t, "spiffe://test/ns/a/sa/api")
	foreign.RootCAs = pki.pool
	req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, srv.URL+"/foreign", nil)
	require.NoError(t, err)
	_, err = httpsClient(t, foreign).Do(req)
	require.Error(t, err)
	_, ok := reached.Load("/foreign")
	assert.False(t, ok, "no request reached the handler")
}

func TestGRPCPeerAuthorizationAndOutboundCredentials(t *testing.T) {
	pki := newPKI(t)
	idp := newIDP(t)
	authz, err := auth.NewPeerAuthorizer(auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://test/ns/a/*"}})
	require.NoError(t, err)
	addr := startGRPC(t, append(serverOptions(t,
		middleware.WithGRPCStatsHandler(nil),
		middleware.WithPeerAuthorization(authz),
		middleware.WithJWT(idp.v),
	), grpc.Creds(credentials.NewTLS(pki.serverTLS(t))))...)

	client := func(spiffeID string, withToken bool) testgrpc.TestServiceClient {
		opts := []middleware.GRPCClientOption{middleware.WithTLS(pki.clientTLS(t, spiffeID))}
		if withToken {
			opts = append(opts, middleware.WithCredentials(auth.StaticToken(idp.token(t, "alice", ""))))
		}
		dopts, err := middleware.OutboundDialOptions(opts...)
		require.NoError(t, err)
		return dialGRPC(t, addr, dopts...)
	}

	who, err := unary(t, client("spiffe://test/ns/a/sa/api", true))
	require.NoError(t, err, "the token and the client certificate reach the server")
	assert.True(t, strings.HasPrefix(who, "alice|spiffe://test/ns/a/sa/api|"), who)

	_, err = unary(t, client("spiffe://test/ns/a/sa/api", false))
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "no token")
	_, err = unary(t, client("spiffe://test/ns/b/sa/api", true))
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "a peer outside the policy")
	_, err = unary(t, client("", true))
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "no client certificate")
}

// ---- outbound credentials over HTTP ----

func TestOutboundCredentialsHTTP(t *testing.T) {
	idp := newIDP(t)
	srv := startHTTP(t, whoami, middleware.WithJWT(idp.v))
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: srv.Listener.Addr().String()}}})
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)

	var calls atomic.Int64
	tr, err := middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithCredentials(func(context.Context) (string, error) {
		calls.Add(1)
		return idp.token(t, "svc-a", ""), nil
	}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	c := &http.Client{Transport: tr}
	code, body, _ := do(t, c, "http://svc/")
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, strings.HasPrefix(body, "svc-a|"), body)
	assert.Equal(t, int64(1), calls.Load())

	code, _, _ = do(t, c, "http://svc/", "Authorization", "Bearer mine")
	assert.Equal(t, http.StatusUnauthorized, code, "the request's own header is kept")
	assert.Equal(t, int64(1), calls.Load(), "and no token is asked for")

	failing, err := middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithCredentials(func(context.Context) (string, error) {
		return "", errors.New("no token today")
	}), middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = failing.Close() })
	req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, "http://svc/", nil)
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: failing}).Do(req)
	if resp != nil {
		drain(resp)
	}
	require.ErrorContains(t, err, "no token today")

	// WithTLS given to NewTransport does not compile: see TestOptionTypesRefuseOtherConstructors.
	same, err := middleware.OutboundTransport(base)
	require.NoError(t, err)
	assert.Same(t, base, same, "no credentials: the base transport itself")
}

// ---- server-side faults ----

func faultRouter(t *testing.T) *route.Router {
	t.Helper()
	cfg, err := route.ParseConfig([]byte(`
routes:
  - name: abort-http
    match: {path: {prefix: /abort}}
    fault: {abort: {httpStatus: 418}}
  - name: slow-http
    match: {path: {prefix: /slow}}
    fault: {delay: {fixed: 50ms}}
  - name: abort-grpc
    match: {grpc: {service: grpc.testing.TestService, method: UnaryCall}}
    fault: {abort: {grpcCode: 8}}
  - name: hang-grpc
    match: {grpc: {service: grpc.testing.TestService, method: EmptyCall}}
    fault: {delay: {fixed: 10s}}
`))
	require.NoError(t, err)
	r, err := route.NewRouter(cfg)
	require.NoError(t, err)
	return r
}

func TestHandlerServerFaults(t *testing.T) {
	idp := newIDP(t)
	var handled sync.Map
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Store(r.URL.Path, true)
		_, _ = io.WriteString(w, "ok")
	})
	srv := startHTTP(t, next, middleware.WithServerFaults(faultRouter(t)), middleware.WithJWT(idp.v))
	c := srv.Client()
	tok := "Bearer " + idp.token(t, "alice", "")

	code, _, _ := do(t, c, srv.URL+"/abort")
	assert.Equal(t, http.StatusUnauthorized, code, "authentication comes before faults")
	code, body, _ := do(t, c, srv.URL+"/abort", "Authorization", tok)
	assert.Equal(t, 418, code)
	assert.Contains(t, body, "route: injected abort")
	_, ok := handled.Load("/abort")
	assert.False(t, ok, "an aborted request never reaches the handler")

	start := time.Now()
	code, _, _ = do(t, c, srv.URL+"/slow", "Authorization", tok)
	assert.Equal(t, http.StatusOK, code)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "the delay was applied")

	code, _, _ = do(t, c, srv.URL+"/other", "Authorization", tok)
	assert.Equal(t, http.StatusOK, code, "no route, no fault")
}

func TestGRPCServerFaults(t *testing.T) {
	addr := startGRPC(t, serverOptions(t,
		middleware.WithGRPCStatsHandler(nil),
		middleware.WithServerFaults(faultRouter(t)),
	)...)
	c := dialGRPC(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))

	_, err := unary(t, c)
	require.Error(t, err)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "the fault's gRPC code 8")
	assert.Equal(t, "route: injected abort", status.Convert(err).Message())

	ctx := ctxFor(t, 10*time.Second)
	s, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	require.NoError(t, err)
	_, err = s.Recv()
	assert.NoError(t, err, "a method without a fault")

	// A delayed call gives up as soon as its client does.
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.EmptyCall(short, &testgrpc.Empty{})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	assert.Less(t, time.Since(start), 5*time.Second)
}

// ---- tracing ----

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
	traceparent = "00-" + parentTrace + "-" + parentSpan + "-01"
)

// serverSpans returns the recorder's ended spans of kind SERVER, once there are n of them.
func serverSpans(t *testing.T, rec *tracetest.SpanRecorder, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	var out []sdktrace.ReadOnlySpan
	eventually(t, func() bool {
		out = out[:0]
		for _, s := range rec.Ended() {
			if s.SpanKind() == trace.SpanKindServer {
				out = append(out, s)
			}
		}
		return len(out) >= n
	}, fmt.Sprintf("%d server spans", n))
	return out
}

func newRecorder(t *testing.T) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, tp
}

func TestHandlerContinuesIncomingTrace(t *testing.T) {
	rec, tp := newRecorder(t)
	idp := newIDP(t)
	srv := startHTTP(t, whoami, middleware.WithTracerProvider(tp), middleware.WithJWT(idp.v, auth.WithOptionalToken()))
	c := srv.Client()

	code, body, _ := do(t, c, srv.URL, "traceparent", traceparent)
	require.Equal(t, http.StatusOK, code)
	assert.True(t, strings.HasSuffix(body, "|"+parentTrace), "the handler runs in the incoming trace: %s", body)
	s := serverSpans(t, rec, 1)[0]
	assert.Equal(t, parentTrace, s.SpanContext().TraceID().String())
	assert.Equal(t, parentSpan, s.Parent().SpanID().String())
	assert.True(t, s.Parent().IsRemote())

	// Malformed: ignored, a new trace begins, the request is served.
	code, body, _ = do(t, c, srv.URL, "traceparent", "00-zzzz-"+parentSpan+"-01")
	require.Equal(t, http.StatusOK, code)
	s = serverSpans(t, rec, 2)[1]
	assert.False(t, s.Parent().IsValid(), "no parent")
	assert.True(t, s.SpanContext().TraceID().IsValid())
	assert.NotEqual(t, parentTrace, s.SpanContext().TraceID().String())
	assert.True(t, strings.HasSuffix(body, "|"+s.SpanContext().TraceID().String()), body)

	// Refusals are traced too: telemetry is the outermost stage.
	code, _, _ = do(t, c, srv.URL, "Authorization", "Bearer bad", "traceparent", traceparent)
	require.Equal(t, http.StatusUnauthorized, code)
	s = serverSpans(t, rec, 3)[2]
	assert.Equal(t, parentTrace, s.SpanContext().TraceID().String())
	var statusCode int64
	for _, kv := range s.Attributes() {
		if kv.Key == "http.response.status_code" {
			statusCode = kv.Value.AsInt64()
		}
	}
	assert.EqualValues(t, http.StatusUnauthorized, statusCode)
}

func TestGRPCServerContinuesIncomingTrace(t *testing.T) {
	rec, tp := newRecorder(t)
	addr := startGRPC(t, serverOptions(t, middleware.WithGRPCTracerProvider(tp))...)
	c := dialGRPC(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))

	ctx := metadata.AppendToOutgoingContext(ctxFor(t, 10*time.Second), "traceparent", traceparent)
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(resp.GetUsername(), "|"+parentTrace), resp.GetUsername())
	s := serverSpans(t, rec, 1)[0]
	assert.Equal(t, parentTrace, s.SpanContext().TraceID().String())
	assert.Equal(t, parentSpan, s.Parent().SpanID().String())

	ctx = metadata.AppendToOutgoingContext(ctxFor(t, 10*time.Second), "traceparent", "00-"+parentTrace+"-zz-01")
	resp, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	require.NoError(t, err, "a malformed traceparent is ignored")
	s = serverSpans(t, rec, 2)[1]
	assert.False(t, s.Parent().IsValid())
	assert.NotEqual(t, parentTrace, s.SpanContext().TraceID().String())
	assert.True(t, strings.HasSuffix(resp.GetUsername(), "|"+s.SpanContext().TraceID().String()))
}

// ---- option validation ----

func TestServerOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		opt  middleware.ServerOption
		want string
	}{
		{middleware.WithJWT(nil), "middleware: WithJWT: auth: invalid validator"},
		{middleware.WithJWT(newIDP(t).v, auth.WithRule(auth.Rule{Scopes: []string{"a b"}})), "middleware: WithJWT: auth: invalid Rule.Scopes[0]"},
		{middleware.WithPeerAuthorization(nil), "middleware: WithPeerAuthorization: authorizer is nil"},
		{middleware.WithServerFaults(nil), "middleware: WithServerFaults: router is nil"},
		{middleware.WithAuthorizer(nil), "middleware: WithAuthorizer: authorizer is nil"},
	} {
		_, err := middleware.NewHandler(okHandler, tc.opt)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)

		// NewGRPCServer reports it too, rather than fail every call.
		_, err = middleware.NewGRPCServer(middleware.WithGRPCStatsHandler(nil), tc.opt)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
	}
	for _, tc := range []struct {
		opt  middleware.GRPCClientOption
		want string
	}{
		{middleware.WithCredentials(nil), "middleware: WithCredentials: token function is nil"},
		{middleware.WithTLS(nil), "middleware: WithTLS: config is nil"},
	} {
		_, err := middleware.NewGRPCClient(discovery.MustNewStatic(nil), tc.opt)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
	}
}

// ---- example ----

func ExampleWithJWT() {
	// The identity provider's signing key; the server knows only its public half.
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	v, err := auth.NewValidator([]auth.Issuer{{
		Issuer: "https://idp.example", Audiences: []string{"payments"}, Algorithms: []string{"EdDSA"},
		Keys: []auth.Key{{ID: "k1", Key: key.Public()}},
	}})
	if err != nil {
		panic(err)
	}
	defer v.Close()

	// One request per subject and hour at most: rate-limit keys read the verified subject.
	perUser, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1.0 / 3600, Burst: 1}})
	if err != nil {
		panic(err)
	}
	h, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", auth.SubjectFromContext(r.Context()))
	}),
		middleware.WithJWT(v, auth.WithRule(auth.Rule{Scopes: []string{"charges:write"}})),
		middleware.WithServerRateLimit(perUser, middleware.KeyBySubject()),
	)
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	call := func(sub, scope string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/charges", nil)
		if sub != "" {
			tok, err := signJWT(key, jose.EdDSA, map[string]any{
				"iss": "https://idp.example", "aud": "payments", "sub": sub, "scope": scope,
				"exp": time.Now().Add(time.Hour).Unix(),
			})
			if err != nil {
				panic(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	}
	call("", "")
	call("bob", "charges:read")
	call("alice", "charges:write")
	call("alice", "charges:write")
	call("carol", "charges:write")
	// Output:
	// 401 Unauthorized
	// 403 Forbidden
	// 200 hello alice
	// 429 Too Many Requests
	// 200 hello carol
}
