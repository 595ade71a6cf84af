package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

const defaultReloadInterval = 5 * time.Second

// ServerTLSConfig configures TLS termination. Zero fields mean their defaults.
type ServerTLSConfig struct {
	// CertFile and KeyFile are the PEM server certificate (chain) and key. Required. They are
	// re-read when they change; new handshakes use the new pair within ReloadInterval, open
	// connections are unaffected, and a pair that fails to load keeps the last good one.
	CertFile string `json:"certFile" yaml:"certFile"`
	KeyFile  string `json:"keyFile" yaml:"keyFile"`
	// ClientCAFile is a PEM bundle of CAs for client certificates. When set, every client must
	// present a certificate that verifies against it (mTLS). Reloaded like the pair.
	ClientCAFile string `json:"clientCAFile,omitempty" yaml:"clientCAFile,omitempty"`
	// Peers authorizes verified clients by identity during the handshake. Requires
	// ClientCAFile. Default (the zero policy): every client whose certificate verifies against
	// ClientCAFile, as PeerPolicy{AnyVerifiedPeer: true}.
	Peers PeerPolicy `json:"peers" yaml:"peers"`
	// MinVersion is the lowest TLS version accepted. Default tls.VersionTLS12; lower values are
	// refused.
	MinVersion uint16 `json:"minVersion,omitempty" yaml:"minVersion,omitempty"`
	// NextProtos are the ALPN protocols offered. Default ["h2", "http/1.1"].
	NextProtos []string `json:"nextProtos,omitempty" yaml:"nextProtos,omitempty"`
	// ReloadInterval is how often, at most, the files are checked for changes (lazily, during
	// handshakes: no goroutine). Default 5s.
	ReloadInterval time.Duration `json:"reloadInterval,omitempty" yaml:"reloadInterval,omitempty"`
	// Logger receives reload failures. Default: none.
	Logger *slog.Logger `json:"-" yaml:"-"`
}

// ServerTLS builds a *tls.Config for servers (http.Server.TLSConfig, credentials.NewTLS) that
// reloads its certificate and client CAs from files. The returned config answers each
// handshake through GetConfigForClient; do not set Certificates or ClientCAs on it. It starts
// no goroutine and needs no cleanup.
func ServerTLS(cfg ServerTLSConfig) (*tls.Config, error) {
	if cfg.CertFile == "" {
		return nil, cfgErr("CertFile", "required")
	}
	if cfg.KeyFile == "" {
		return nil, cfgErr("KeyFile", "required")
	}
	minV, err := minVersion(cfg.MinVersion)
	if err != nil {
		return nil, err
	}
	if cfg.ReloadInterval < 0 {
		return nil, cfgErr("ReloadInterval", "must not be negative")
	}
	interval := cmpOr(cfg.ReloadInterval, defaultReloadInterval)
	if !cfg.Peers.empty() && cfg.ClientCAFile == "" {
		return nil, cfgErr("ClientCAFile", "required when Peers is set")
	}
	peers := cfg.Peers
	if peers.empty() {
		peers.AnyVerifiedPeer = true // the CA file is the policy: see Peers
	}
	authz, err := NewPeerAuthorizer(peers)
	if err != nil {
		return nil, err
	}
	protos := cfg.NextProtos
	if len(protos) == 0 {
		protos = []string{"h2", "http/1.1"}
	}
	paths := []string{cfg.CertFile, cfg.KeyFile}
	if cfg.ClientCAFile != "" {
		paths = append(paths, cfg.ClientCAFile)
	}
	build := func(data [][]byte) (*tls.Config, error) {
		pair, err := tls.X509KeyPair(data[0], data[1])
		if err != nil {
			return nil, fmt.Errorf("auth: server certificate: %w", err)
		}
		c := &tls.Config{
			Certificates: []tls.Certificate{pair},
			MinVersion:   minV,
			NextProtos:   protos,
		}
		if len(data) == 3 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(data[2]) {
				return nil, errors.New("auth: client CA file: no certificate")
			}
			c.ClientCAs = pool
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.VerifyConnection = authz.VerifyConnection
		}
		return c, nil
	}
	fs, err := newFileSet(paths, interval, build, reloadLogger(cfg.Logger, "server"))
	if err != nil {
		return nil, cfgErr("CertFile", err.Error())
	}
	return &tls.Config{
		MinVersion: minV,
		NextProtos: protos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return fs.get(), nil
		},
	}, nil
}

// ClientTLSConfig configures TLS origination. Zero fields mean their defaults.
type ClientTLSConfig struct {
	// CAFile is a PEM bundle of CAs that server certificates must verify against. Default: the
	// system roots. Read once (see ClientTLS).
	CAFile string `json:"caFile,omitempty" yaml:"caFile,omitempty"`
	// CertFile and KeyFile are a PEM client certificate and key presented for mTLS; both or
	// neither. Re-read when they change, like ServerTLSConfig's pair.
	CertFile string `json:"certFile,omitempty" yaml:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty" yaml:"keyFile,omitempty"`
	// ServerName is the name verified in server certificates. Default: the host being dialed
	// (http.Transport and gRPC fill it per endpoint).
	ServerName string `json:"serverName,omitempty" yaml:"serverName,omitempty"`
	// Peers additionally authorizes the server by identity (for example its SPIFFE ID) after
	// the usual chain and name verification. Default: any verified server.
	Peers PeerPolicy `json:"peers" yaml:"peers"`
	// MinVersion is the lowest TLS version offered. Default tls.VersionTLS12; lower values are
	// refused.
	MinVersion uint16 `json:"minVersion,omitempty" yaml:"minVersion,omitempty"`
	// ReloadInterval is how often, at most, the client certificate files are checked for
	// changes (lazily, when a server asks for a certificate). Default 5s.
	ReloadInterval time.Duration `json:"reloadInterval,omitempty" yaml:"reloadInterval,omitempty"`
	// Logger receives reload failures. Default: none.
	Logger *slog.Logger `json:"-" yaml:"-"`
}

// ClientTLS builds a *tls.Config for clients (http.Transport.TLSClientConfig,
// credentials.NewTLS). The client certificate is reloaded from its files; the CA bundle is read
// once, because crypto/tls has no hook for changing root CAs short of replacing its
// verification, which this package does not do. It starts no goroutine and needs no cleanup.
func ClientTLS(cfg ClientTLSConfig) (*tls.Config, error) {
	minV, err := minVersion(cfg.MinVersion)
	if err != nil {
		return nil, err
	}
	if cfg.ReloadInterval < 0 {
		return nil, cfgErr("ReloadInterval", "must not be negative")
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, cfgErr("KeyFile", "CertFile and KeyFile go together")
	}
	c := &tls.Config{MinVersion: minV, ServerName: cfg.ServerName}
	if cfg.CAFile != "" {
		fs, err := newFileSet([]string{cfg.CAFile}, time.Hour, func(data [][]byte) (*x509.CertPool, error) {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(data[0]) {
				return nil, errors.New("no certificate")
			}
			return pool, nil
		}, nil)
		if err != nil {
			return nil, cfgErr("CAFile", err.Error())
		}
		c.RootCAs = fs.get()
	}
	if cfg.CertFile != "" {
		fs, err := newFileSet([]string{cfg.CertFile, cfg.KeyFile}, cmpOr(cfg.ReloadInterval, defaultReloadInterval),
			func(data [][]byte) (*tls.Certificate, error) {
				pair, err := tls.X509KeyPair(data[0], data[1])
				if err != nil {
					return nil, fmt.Errorf("auth: client certificate: %w", err)
				}
				return &pair, nil
			}, reloadLogger(cfg.Logger, "client"))
		if err != nil {
			return nil, cfgErr("CertFile", err.Error())
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return fs.get(), nil
		}
	}
	if !cfg.Peers.empty() {
		authz, err := NewPeerAuthorizer(cfg.Peers)
		if err != nil {
			return nil, err
		}
		c.VerifyConnection = authz.VerifyConnection
	}
	return c, nil
}

func minVersion(v uint16) (uint16, error) {
	switch {
	case v == 0:
		return tls.VersionTLS12, nil
	case v < tls.VersionTLS12:
		return 0, cfgErr("MinVersion", "below TLS 1.2")
	case v > tls.VersionTLS13:
		return 0, cfgErr("MinVersion", "unknown TLS version")
	}
	return v, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func reloadLogger(l *slog.Logger, side string) func(error) {
	if l == nil {
		return nil
	}
	return func(err error) { l.Warn("auth: "+side+" TLS reload failed; keeping the last good files", "error", err) }
}
