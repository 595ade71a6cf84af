// Command secure shows a service secured with mTLS and JWTs, and clients calling it.
//
// It generates, in-process, a certificate authority, a server certificate and client
// certificates carrying SPIFFE IDs, and writes them to a temporary directory. An identity
// provider serves its signing key as a JWKS on loopback. The server is an http.Server whose
// TLS comes from auth.ServerTLS (client certificates required, files reloaded when they
// change) and whose handler is middleware.NewHandler with
//
//   - middleware.WithPeerAuthorization: only workloads of spiffe://example.org/ns/prod/ may
//     call it;
//   - middleware.WithJWT: a token from the provider, for the audience "payments", with the
//     scope "payments:write".
//
// Clients make their TLS with auth.ClientTLS (checking the server's SPIFFE ID too), attach
// their token with an outbound credentials transport, and go through middleware.NewTransport.
// The program prints what each call got, and exits by itself.
//
//	go run ./examples/secure
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/middleware"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "secure:", err)
		os.Exit(1)
	}
}

const (
	issuer     = "https://idp.example.org"
	audience   = "payments"
	scope      = "payments:write"
	serverID   = "spiffe://example.org/ns/prod/sa/payments"
	checkoutID = "spiffe://example.org/ns/prod/sa/checkout"
	intruderID = "spiffe://example.org/ns/dev/sa/intruder"
)

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("secure", flag.ContinueOnError)
	fs.SetOutput(out)
	timeout := fs.Duration("timeout", 30*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *timeout <= 0 {
		return errors.New("-timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "proxyless-secure-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	results, err := example(ctx, dir)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "caller\ttoken\tresult")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.caller, r.token, r.result)
	}
	return tw.Flush()
}

// result is what one call got.
type result struct {
	caller, token, result string
}

func example(ctx context.Context, dir string) ([]result, error) {
	files, caFile, err := writeCertificates(dir)
	if err != nil {
		return nil, err
	}

	// The identity provider: a signing key, its public half served as a JWKS on loopback.
	idp, err := startIDP()
	if err != nil {
		return nil, err
	}
	defer idp.close()
	v, err := auth.NewValidator([]auth.Issuer{{
		Issuer: issuer, Audiences: []string{audience}, Algorithms: []string{"ES256"},
		JWKSURL: idp.jwksURL,
	}})
	if err != nil {
		return nil, err
	}
	defer v.Close()

	target, stop, err := startServer(v, files, caFile)
	if err != nil {
		return nil, err
	}
	defer stop()
	return makeCalls(ctx, idp, target, caFile, files)
}

// writeCertificates writes, in dir, a CA and a certificate and key for the server and for each
// client workload; it returns the certificate and key files by SPIFFE ID + ".crt" / ".key",
// and the CA's file.
func writeCertificates(dir string) (files map[string]string, caFile string, err error) {
	ca, err := newCA()
	if err != nil {
		return nil, "", err
	}
	files = map[string]string{}
	for _, id := range []string{serverID, checkoutID, intruderID} {
		name := id[strings.LastIndexByte(id, '/')+1:]
		certFile, keyFile, err := ca.issue(dir, name, id, id == serverID)
		if err != nil {
			return nil, "", err
		}
		files[id+".crt"], files[id+".key"] = certFile, keyFile
	}
	caFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pemBlock("CERTIFICATE", ca.cert.Raw), 0o600); err != nil {
		return nil, "", err
	}
	return files, caFile, nil
}

// startServer starts the server on loopback: mTLS from auth.ServerTLS, then peer authorization
// and JWTs checked by v in NewHandler. It returns the URL to call and a func that shuts it down.
func startServer(v *auth.Validator, files map[string]string, caFile string) (string, func(), error) {
	srvTLS, err := auth.ServerTLS(auth.ServerTLSConfig{
		CertFile: files[serverID+".crt"], KeyFile: files[serverID+".key"], ClientCAFile: caFile,
	})
	if err != nil {
		return "", nil, err
	}
	prod, err := auth.NewPeerAuthorizer(auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://example.org/ns/prod/*"}})
	if err != nil {
		return "", nil, err
	}
	h, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.PeerFromContext(r.Context())
		fmt.Fprintf(w, "hello %s via %s", auth.SubjectFromContext(r.Context()), p.SPIFFEID)
	}),
		middleware.WithPeerAuthorization(prod),
		middleware.WithJWT(v, auth.WithRule(auth.Rule{Scopes: []string{scope}})),
	)
	if err != nil {
		return "", nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{
		Handler: h, TLSConfig: srvTLS, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0), // refused handshakes are part of the show
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(lis, "", "") }()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}
	return "https://" + lis.Addr().String() + "/charges", stop, nil
}

// calls are the calls the example makes, in order.
var calls = []struct {
	caller, token string
	id            string // client certificate; "" for none
	claims        map[string]any
}{
	{"checkout", "none", checkoutID, nil},
	{"checkout", "without the scope", checkoutID, map[string]any{"sub": "checkout", "scope": "payments:read"}},
	{"checkout", "valid", checkoutID, map[string]any{"sub": "checkout", "scope": scope}},
	{"intruder", "valid", intruderID, map[string]any{"sub": "intruder", "scope": scope}},
	{"no certificate", "valid", "", map[string]any{"sub": "anonymous", "scope": scope}},
}

// makeCalls makes each of calls to target, with the caller's client certificate and a token
// signed by signer, and returns what each saw.
func makeCalls(ctx context.Context, signer *idp, target, caFile string, files map[string]string) ([]result, error) {
	var results []result
	for _, c := range calls {
		tok := ""
		if c.claims != nil {
			var err error
			if tok, err = signer.sign(c.claims); err != nil {
				return nil, err
			}
		}
		got, err := call(ctx, target, caFile, files[c.id+".crt"], files[c.id+".key"], tok)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.caller, err)
		}
		results = append(results, result{caller: c.caller, token: c.token, result: got})
	}
	return results, nil
}

// call sends one request as a client with the given certificate files ("" for none) and token
// ("" for none), and describes the outcome.
func call(ctx context.Context, target, caFile, certFile, keyFile, token string) (string, error) {
	tlsCfg, err := auth.ClientTLS(auth.ClientTLSConfig{
		CAFile: caFile, CertFile: certFile, KeyFile: keyFile,
		Peers: auth.PeerPolicy{SPIFFEIDs: []string{serverID}}, // the server must be payments
	})
	if err != nil {
		return "", err
	}
	// TLS is the base transport's; the token is attached to each attempt.
	base := &http.Transport{TLSClientConfig: tlsCfg}
	defer base.CloseIdleConnections()
	var rt http.RoundTripper = base
	if token != "" {
		if rt, err = auth.NewTransport(base, auth.StaticToken(token)); err != nil {
			return "", err
		}
	}
	tr, err := middleware.NewTransport(rt)
	if err != nil {
		return "", err
	}
	defer tr.Close()

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "remote error":
		// The server sent a TLS alert: the handshake failed on its side.
		return "refused in the TLS handshake (" + op.Err.Error() + ")", nil
	case err != nil:
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body))), nil
}

// idp is a token issuer whose public key is served as a JWKS on loopback.
type idp struct {
	key     *ecdsa.PrivateKey
	srv     *http.Server
	served  chan error
	jwksURL string
}

func startIDP() (*idp, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig",
	}}})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	})
	p := &idp{key: key, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, served: make(chan error, 1),
		jwksURL: "http://" + lis.Addr().String() + "/.well-known/jwks.json"}
	go func() { p.served <- p.srv.Serve(lis) }()
	return p, nil
}

func (p *idp) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	<-p.served
}

// sign issues a token with claims plus issuer, audience and a one-hour expiry.
func (p *idp) sign(claims map[string]any) (string, error) {
	all := map[string]any{"iss": issuer, "aud": audience, "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		all[k] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(all)
	if err != nil {
		return "", err
	}
	obj, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// ca issues certificates.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA() (*ca, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "example.org CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &ca{cert: cert, key: key}, nil
}

// issue writes name.crt and name.key for a workload with the SPIFFE ID id; a server
// certificate is also valid for 127.0.0.1.
func (c *ca) issue(dir, name, id string, server bool) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	u, err := url.Parse(id)
	if err != nil {
		return "", "", err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		URIs:         []*url.URL{u},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return "", "", err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pemBlock("CERTIFICATE", der), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pemBlock("PRIVATE KEY", pk), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
