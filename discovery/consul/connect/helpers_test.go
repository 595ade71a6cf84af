package connect_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/internal/consultest"
	"github.com/proxyless/proxyless/middleware"
)

// shared is one real Consul dev agent (Connect and its built-in CA on) for the tests that
// neither stop it nor write intentions for "*".
var shared consultest.Shared

func TestMain(m *testing.M) { goleak.VerifyTestMain(shared.Wrap(m)) }

func consulConfig(a *consultest.Agent) consul.Config {
	return consul.Config{
		Address: a.HTTPAddr, WaitTime: 10 * time.Second,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		MaxQueryRate: 50,
	}
}

func apiClient(t *testing.T, a *consultest.Agent) *api.Client {
	t.Helper()
	c, err := consul.NewAPIClient(consul.Config{Address: a.HTTPAddr})
	require.NoError(t, err)
	return c
}

// newMesh joins the mesh as service and closes the Mesh at cleanup.
func newMesh(t *testing.T, a *consultest.Agent, service string, mod ...func(*connect.Config)) *connect.Mesh {
	t.Helper()
	cfg := connect.Config{Consul: consulConfig(a), Service: service}
	for _, f := range mod {
		f(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := connect.New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// whoami answers 200 with the caller's SPIFFE ID, as the authorizer put it in the context.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.PeerFromContext(r.Context())
	if !ok {
		http.Error(w, "no peer", http.StatusInternalServerError)
		return
	}
	fmt.Fprint(w, p.SPIFFEID)
})

// serveMesh runs a Connect-native HTTPS server of m on a loopback port, each request through
// middleware.NewHandler with m as the authorizer, registers it, and returns its port.
func serveMesh(t *testing.T, m *connect.Mesh, next http.Handler) int {
	t.Helper()
	h, err := middleware.NewHandler(next, middleware.WithAuthorizer(m))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, TLSConfig: m.ServerTLS(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: discardLog}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dereg, err := m.Register(ctx, consul.Registration{Address: "127.0.0.1", Port: port})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = dereg(ctx)
	})
	return port
}

// meshClient is an http.Client of m that resolves mesh services.
func meshClient(t *testing.T, m *connect.Mesh) *http.Client {
	t.Helper()
	base := http.DefaultTransport.(*http.Transport).Clone()
	tr, err := middleware.NewTransport(m.Transport(base), middleware.WithResolver(m.Resolver()),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	require.NoError(t, err)
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = tr.Close()
	})
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// get returns the status and body of a GET, or the error.
func get(c *http.Client, url string) (int, string, error) {
	return do(c, http.MethodGet, url, nil)
}

func do(c *http.Client, method, url string, hdr http.Header) (int, string, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, "", err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b), err
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for {
		if last = cond(); last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// setIntentions writes the service-intentions entry of dest and waits until m holds it.
func setIntentions(t *testing.T, c *api.Client, dest string, sources ...*api.SourceIntention) uint64 {
	t.Helper()
	ok, _, err := c.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: dest, Sources: sources}, nil)
	require.NoError(t, err)
	require.True(t, ok)
	e, _, err := c.ConfigEntries().Get(api.ServiceIntentions, dest, nil)
	require.NoError(t, err)
	return e.GetModifyIndex()
}

// waitIntentions waits until every mesh holds intentions at least as recent as index.
func waitIntentions(t *testing.T, index uint64, ms ...*connect.Mesh) {
	t.Helper()
	for _, m := range ms {
		eventually(t, 5*time.Second, "mesh follows the intentions", func() error {
			if got := m.Status().Intentions.Index; got < index {
				return fmt.Errorf("index %d < %d", got, index)
			}
			return nil
		})
	}
}

func allow(name string) *api.SourceIntention {
	return &api.SourceIntention{Name: name, Action: api.IntentionActionAllow}
}

func deny(name string) *api.SourceIntention {
	return &api.SourceIntention{Name: name, Action: api.IntentionActionDeny}
}

var discardLog = log.New(io.Discard, "", 0) // refused handshakes are expected

// syncBuffer is an io.Writer safe for a child process's output and a test reading it.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) < 4<<20 {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// handshakeErr dials addr with cfg and returns the handshake's error (nil when it succeeds
// and the server accepts an HTTP request).
func handshakeErr(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	b := make([]byte, 12)
	if _, err := io.ReadFull(conn, b); err != nil {
		return err
	}
	if string(b[9:12]) != "200" {
		return errors.New("status " + string(b[9:12]))
	}
	return nil
}

func hostport(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func consulRegistration(ln net.Listener) consul.Registration {
	return consul.Registration{Address: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}
}

// cleanEntries deletes the config entries (kind, name) now and at the test's end, so that a
// test on the shared agent starts from none and leaves none, also under -count.
func cleanEntries(t *testing.T, c *api.Client, kindName ...[2]string) {
	t.Helper()
	del := func() {
		for i := len(kindName) - 1; i >= 0; i-- { // routers and splitters before resolvers
			_, _ = c.ConfigEntries().Delete(kindName[i][0], kindName[i][1], nil)
		}
	}
	del()
	t.Cleanup(del)
}
