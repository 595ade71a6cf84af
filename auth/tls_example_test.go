package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/proxyless/proxyless/auth"
)

// examplePKI writes, into dir, a CA (ca.pem) and two certificates it signs: the server's
// (server.pem, server-key.pem, for 127.0.0.1) and a client's (client.pem, client-key.pem)
// whose identity is the SPIFFE ID spiffe://example.org/ns/shop/sa/web. In production they
// come from your CA (Consul Connect's, cert-manager's, ...).
func examplePKI(dir string) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		panic(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, edit func(*x509.Certificate)) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		edit(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
		writePEM(filepath.Join(dir, name+"-key.pem"), "PRIVATE KEY", keyDER)
	}
	leaf("server", 2, x509.ExtKeyUsageServerAuth, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	})
	leaf("client", 3, x509.ExtKeyUsageClientAuth, func(c *x509.Certificate) {
		c.URIs = []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/ns/shop/sa/web"}}
	})
}

func writePEM(path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		panic(err)
	}
}

// Mutual TLS between a server and a client on loopback: the server requires a client
// certificate from its CA and allows only the shop namespace's SPIFFE IDs; the client
// verifies the server against the same CA. Both reload their certificates when the files
// change.
func ExampleServerTLS() {
	dir, err := os.MkdirTemp("", "pki")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	examplePKI(dir)
	file := func(name string) string { return filepath.Join(dir, name) }

	serverTLS, err := auth.ServerTLS(auth.ServerTLSConfig{
		CertFile: file("server.pem"), KeyFile: file("server-key.pem"),
		ClientCAFile: file("ca.pem"),
		Peers:        auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://example.org/ns/shop/*"}},
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.TLS.PeerCertificates[0].URIs[0])
	}))
	srv.TLS = serverTLS
	srv.StartTLS()
	defer srv.Close()

	get := func(cfg auth.ClientTLSConfig) {
		clientTLS, err := auth.ClientTLS(cfg)
		if err != nil {
			panic(err)
		}
		tr := &http.Transport{TLSClientConfig: clientTLS}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(srv.URL)
		if err != nil {
			fmt.Println("refused") // the server asks for a certificate the client does not have
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, string(body))
	}
	// With its certificate, the client is let in; without one, the handshake fails.
	get(auth.ClientTLSConfig{CAFile: file("ca.pem"), CertFile: file("client.pem"), KeyFile: file("client-key.pem")})
	get(auth.ClientTLSConfig{CAFile: file("ca.pem")})
	// Output:
	// 200 hello spiffe://example.org/ns/shop/sa/web
	// refused
}

// A client that verifies the server against a private CA, and checks the server's identity
// too.
func ExampleClientTLS() {
	dir, err := os.MkdirTemp("", "pki")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	examplePKI(dir)
	file := func(name string) string { return filepath.Join(dir, name) }
	serverTLS, err := auth.ServerTLS(auth.ServerTLSConfig{CertFile: file("server.pem"), KeyFile: file("server-key.pem")})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	srv.TLS = serverTLS
	srv.StartTLS()
	defer srv.Close()

	for _, cn := range []string{"server", "someone-else"} {
		clientTLS, err := auth.ClientTLS(auth.ClientTLSConfig{
			CAFile: file("ca.pem"),
			Peers:  auth.PeerPolicy{CommonNames: []string{cn}},
		})
		if err != nil {
			panic(err)
		}
		tr := &http.Transport{TLSClientConfig: clientTLS}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		tr.CloseIdleConnections()
		fmt.Printf("server allowed as %q: %t\n", cn, err == nil)
	}
	// Output:
	// server allowed as "server": true
	// server allowed as "someone-else": false
}

func ExampleNewTokenFile() {
	dir, err := os.MkdirTemp("", "token")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "token") // a projected service account token, say
	if err := os.WriteFile(path, []byte("first-token\n"), 0o600); err != nil {
		panic(err)
	}
	tf, err := auth.NewTokenFile(path, time.Millisecond)
	if err != nil {
		panic(err)
	}
	tok, err := tf.Token(context.Background())
	fmt.Println(tok, err)

	_, err = auth.NewTokenFile(filepath.Join(dir, "missing"), 0)
	fmt.Println(err != nil)
	// Output:
	// first-token <nil>
	// true
}

func ExampleNewTransport() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("Authorization"))
	}))
	defer api.Close()

	tr, err := auth.NewTransport(nil, auth.StaticToken("s3cr3t"))
	if err != nil {
		panic(err)
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(api.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: Bearer s3cr3t
}
