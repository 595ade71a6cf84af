package connect_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/internal/consultest"
	"github.com/proxyless/proxyless/internal/testenv"
)

// proxyLifetime bounds each `consul connect proxy` child process.
const proxyLifetime = 2 * time.Minute

// startProxy runs Consul's built-in proxy, `consul connect proxy -sidecar-for id`, against a,
// and kills it at cleanup (or after proxyLifetime). It returns the proxy's output.
func startProxy(t *testing.T, a *consultest.Agent, id string) *syncBuffer {
	t.Helper()
	bin, err := testenv.ConsulBinary()
	if err != nil {
		testenv.Unavailable(t, err)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), proxyLifetime)
	cmd := exec.CommandContext(ctx, bin, "connect", "proxy", "-sidecar-for", id, "-http-addr", a.HTTPAddr, "-log-level", "debug")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("consul connect proxy output:\n%s", out)
		}
	})
	return out
}

// registerWithSidecar registers service id (name) at 127.0.0.1:port with a sidecar whose
// public listener is 127.0.0.1:sidecarPort and whose upstreams are ups.
func registerWithSidecar(t *testing.T, c *api.Client, id, name string, port, sidecarPort int, ups []api.Upstream) {
	t.Helper()
	reg := &api.AgentServiceRegistration{
		ID: id, Name: name, Address: "127.0.0.1", Port: port,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Address: "127.0.0.1", Port: sidecarPort,
			Proxy: &api.AgentServiceConnectProxyConfig{Upstreams: ups},
		}},
	}
	require.NoError(t, c.Agent().ServiceRegister(reg))
	t.Cleanup(func() {
		_ = c.Agent().ServiceDeregister(id)
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := testenv.FreePort()
	require.NoError(t, err)
	return p
}

// plainServer runs a loopback HTTP server answering body, and returns its port.
func plainServer(t *testing.T, body string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	}), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port
}

// A proxyless client calls a plain HTTP service fronted by `consul connect proxy
// -sidecar-for`, over mTLS with its Connect identity; the proxy authorizes it by intentions:
// after a deny its log shows "authz call denied" and new connections fail; an allow brings the
// calls back.
func TestProxylessClientToSidecar(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	cleanEntries(t, c, [2]string{api.ServiceIntentions, "sidecarred"})
	backend := plainServer(t, "legacy says hi")
	registerWithSidecar(t, c, "sidecarred-1", "sidecarred", backend, freePort(t), nil)
	logs := startProxy(t, a, "sidecarred-1")
	web := newMesh(t, a, "pxclient")
	hc := meshClient(t, web)

	eventually(t, 90*time.Second, "a call through the sidecar", func() error {
		code, body, err := get(hc, "http://sidecarred/")
		if err == nil && (code != 200 || body != "legacy says hi") {
			err = fmt.Errorf("%d %q", code, body)
		}
		return err
	})

	setIntentions(t, c, "sidecarred", deny("pxclient"))
	eventually(t, 10*time.Second, "the sidecar refuses a new connection", func() error {
		hc.CloseIdleConnections() // the built-in proxy authorizes connections, not requests
		_, _, err := get(hc, "http://sidecarred/")
		if err == nil {
			return errors.New("still allowed")
		}
		return nil
	})
	// The proxy logs the denial as it refuses; the log may reach us after the failed call.
	eventually(t, 10*time.Second, "the sidecar's log of the denial", func() error {
		hc.CloseIdleConnections()
		_, _, _ = get(hc, "http://sidecarred/")
		if l := logs.String(); !strings.Contains(l, "authz call denied") || !strings.Contains(l, "pxclient") {
			return errors.New("no \"authz call denied\" for pxclient in the proxy's log yet")
		}
		return nil
	})

	setIntentions(t, c, "sidecarred", allow("pxclient"))
	eventually(t, 10*time.Second, "allowed again", func() error {
		hc.CloseIdleConnections()
		code, _, err := get(hc, "http://sidecarred/")
		if err == nil && code != 200 {
			err = fmt.Errorf("%d", code)
		}
		return err
	})
}

// A client behind `consul connect proxy` (an upstream listener) calls a proxyless
// Connect-native server, which sees the client service's identity; a deny makes the server
// refuse within a second, on the connection opened before the deny too; an allow brings it
// back.
func TestSidecarClientToProxylessServer(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	cleanEntries(t, c, [2]string{api.ServiceIntentions, "nativeapi"})
	srv := newMesh(t, a, "nativeapi")
	serveMesh(t, srv, whoami)
	upstream := freePort(t)
	registerWithSidecar(t, c, "legacyclient-1", "legacyclient", freePort(t), freePort(t),
		[]api.Upstream{{DestinationName: "nativeapi", LocalBindAddress: "127.0.0.1", LocalBindPort: upstream}})
	startProxy(t, a, "legacyclient-1")
	idx := setIntentions(t, c, "nativeapi", allow("legacyclient"))
	waitIntentions(t, idx, srv)

	tr := &http.Transport{MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	url := "http://" + hostport(upstream) + "/"
	var body string
	eventually(t, 45*time.Second, "a call through the client sidecar", func() error {
		code, b, err := get(hc, url)
		if err == nil && code != 200 {
			err = fmt.Errorf("%d %q", code, b)
		}
		body = b
		return err
	})
	assert.True(t, strings.HasSuffix(body, "/svc/legacyclient"), "the server sees the sidecar's service identity: %q", body)

	conns := newConnCounter()
	ctx := conns.trace(context.Background())
	require.Equal(t, http.StatusOK, mustGet(t, hc, ctx, url))
	setIntentions(t, c, "nativeapi", deny("legacyclient"))
	wrote := time.Now()
	var denied time.Duration
	for time.Since(wrote) < 5*time.Second {
		if code := mustGet(t, hc, ctx, url); code == http.StatusForbidden {
			denied = time.Since(wrote)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NotZero(t, denied, "the deny was not enforced")
	assert.Less(t, denied, time.Second)
	fresh, reused := conns.counts()
	assert.Zero(t, fresh, "the deny applied on the connection opened before it")
	assert.Positive(t, reused)

	setIntentions(t, c, "nativeapi", allow("legacyclient"))
	eventually(t, time.Second, "allowed again", func() error {
		if code := mustGet(t, hc, ctx, url); code != 200 {
			return fmt.Errorf("%d", code)
		}
		return nil
	})
}
