package connect_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/middleware"
)

var _ middleware.Mesh = (*connect.Mesh)(nil)

// Servers and clients joined with middleware.WithMesh alone (no WithResolver, WithTLS,
// WithAuthorizer, base transport or grpc.Creds of their own) call each other over mTLS with
// the agent's leaves; each server sees the caller's identity; a deny intention refuses them
// (403, PERMISSION_DENIED); a gRPC channel whose authority names another service than the
// one it reaches fails its handshake.
func TestWithMeshJoinsHTTPAndGRPC(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	cleanEntries(t, c, [2]string{api.ServiceIntentions, "joinhttp"}, [2]string{api.ServiceIntentions, "joingrpc"})
	hsrv, gsrv, cli := newMesh(t, a, "joinhttp"), newMesh(t, a, "joingrpc"), newMesh(t, a, "joinweb")
	serveJoinedHTTP(t, hsrv)
	serveJoinedGRPC(t, gsrv)

	// HTTP: NewTransport(nil, WithMesh) resolves and dials over mTLS.
	tr, err := middleware.NewTransport(nil, middleware.WithMesh(cli), middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	require.NoError(t, err)
	t.Cleanup(func() { tr.CloseIdleConnections(); _ = tr.Close() })
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var body string
	eventually(t, 10*time.Second, "HTTP call over the mesh", func() error {
		code, b, err := get(hc, "http://joinhttp/")
		if err == nil && code != http.StatusOK {
			err = status.Errorf(codes.Unknown, "status %d", code)
		}
		body = b
		return err
	})
	assert.Equal(t, cli.Identity().URI(), body, "the HTTP server sees the client's SPIFFE identity")

	// gRPC: NewGRPCClient(nil, WithMesh) resolves and dials with per-service credentials.
	gc, err := middleware.NewGRPCClient(nil, middleware.WithMesh(cli), middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = gc.Close() })
	conn, err := gc.NewClient("joingrpc")
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	check := func(cc *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	eventually(t, 10*time.Second, "gRPC call over the mesh", func() error { return check(conn) })

	// The expected identity follows the channel's authority: dialled as "joinhttp", the
	// server (joingrpc) is refused in the handshake.
	wrong, err := gc.NewClient("joingrpc", grpc.WithAuthority("joinhttp"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = wrong.Close() })
	err = check(wrong)
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	assert.Contains(t, err.Error(), "/svc/joingrpc")

	// Deny intentions refuse both.
	idx := setIntentions(t, c, "joinhttp", deny("joinweb"))
	waitIntentions(t, idx, hsrv)
	code, _, err := get(hc, "http://joinhttp/")
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, code)
	idx = setIntentions(t, c, "joingrpc", deny("joinweb"))
	waitIntentions(t, idx, gsrv)
	assert.Equal(t, codes.PermissionDenied, status.Code(check(conn)))
}

// serveJoinedHTTP serves whoami over HTTPS as m, with NewHandler(WithMesh(m)) and the
// http.Server's TLS from m.ServerTLS(), and registers it.
func serveJoinedHTTP(t *testing.T, m *connect.Mesh) { t.Helper(); serveJoinedHTTPListener(t, m) }

// serveJoinedHTTPListener is serveJoinedHTTP, returning the listener.
func serveJoinedHTTPListener(t *testing.T, m *connect.Mesh) net.Listener {
	t.Helper()
	h, err := middleware.NewHandler(whoami, middleware.WithMesh(m))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, TLSConfig: m.ServerTLS(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: discardLog}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	register(t, m, ln)
	return ln
}

// serveJoinedGRPC serves the health service as m with NewGRPCServer(WithMesh(m)) and nothing
// but its ServerOptions (which carry the mesh's grpc.Creds), and registers it.
func serveJoinedGRPC(t *testing.T, m *connect.Mesh) {
	t.Helper()
	gs, err := middleware.NewGRPCServer(middleware.WithMesh(m))
	require.NoError(t, err)
	s := grpc.NewServer(gs.ServerOptions()...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	register(t, m, ln)
}

func register(t *testing.T, m *connect.Mesh, ln net.Listener) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dereg, err := m.Register(ctx, consulRegistration(ln))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = dereg(ctx)
	})
}

// WithMesh refuses the options whose settings it makes, naming them, and a base transport it
// cannot dial TLS with.
func TestWithMeshRefusesConflicts(t *testing.T) {
	m := newMesh(t, shared.Agent(t), "joinconf")
	_, err := middleware.NewTransport(nil, middleware.WithMesh(m), middleware.WithResolver(m.Resolver()))
	require.ErrorContains(t, err, "WithResolver")
	_, err = middleware.NewHandler(whoami, middleware.WithAuthorizer(m), middleware.WithMesh(m))
	require.ErrorContains(t, err, "WithAuthorizer")
	_, err = middleware.NewGRPCClient(nil, middleware.WithMesh(m), middleware.WithTLS(&tls.Config{}))
	require.ErrorContains(t, err, "WithTLS")
	_, err = middleware.NewGRPCServer(middleware.WithMesh(m), middleware.WithMesh(m))
	require.ErrorContains(t, err, "twice")
	_, err = middleware.NewTransport(roundTripperFunc(nil), middleware.WithMesh(m))
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "*http.Transport"), err.Error())
	_, err = middleware.NewGRPCClient(nil)
	require.ErrorContains(t, err, "resolver is nil")
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// An address that is an endpoint of two services (two registrations of one port) is refused:
// no identity can be checked for it, and the request does not go in clear text to the base
// transport either.
func TestWithMeshSharedAddressRefused(t *testing.T) {
	a := shared.Agent(t)
	srv, alias, cli := newMesh(t, a, "sharea"), newMesh(t, a, "shareb"), newMesh(t, a, "sharecli")
	ln := serveJoinedHTTPListener(t, srv)
	register(t, alias, ln)
	tr, err := middleware.NewTransport(nil, middleware.WithMesh(cli), middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	require.NoError(t, err)
	t.Cleanup(func() { tr.CloseIdleConnections(); _ = tr.Close() })
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	eventually(t, 10*time.Second, "sharea over the mesh", func() error {
		code, _, err := get(hc, "http://sharea/")
		if err == nil && code != http.StatusOK {
			err = status.Errorf(codes.Unknown, "status %d", code)
		}
		return err
	})
	eventually(t, 10*time.Second, "shareb's endpoint is known", func() error {
		_, _, err := get(hc, "http://shareb/")
		if err == nil || !strings.Contains(err.Error(), "several mesh services") {
			return status.Errorf(codes.Unknown, "not refused yet: %v", err)
		}
		return nil
	})
	_, _, err = get(hc, "http://sharea/")
	require.ErrorContains(t, err, "several mesh services")
}
