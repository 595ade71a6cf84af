package middleware_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

func TestWiredDialOptions(t *testing.T) {
	pki := newPKI(t)
	idp := newIDP(t)
	authz, err := auth.NewPeerAuthorizer(auth.PeerPolicy{SPIFFEIDs: []string{"spiffe://test/ns/a/*"}})
	require.NoError(t, err)
	srec, stp := newRecorder(t)
	addr := startGRPC(t, append(serverOptions(t,
		middleware.WithTracerProvider(stp),
		middleware.WithPeerAuthorization(authz),
		middleware.WithJWT(idp.v),
	), grpc.Creds(credentials.NewTLS(pki.serverTLS(t))))...)
	_, ctp := newRecorder(t)
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: addr}}})
	cfg := pki.clientTLS(t, "spiffe://test/ns/a/sa/api")
	cfg.ServerName = "127.0.0.1"
	conn, err := grpc.NewClient("proxyless:///svc", dialOptions(t, static,
		middleware.WithTracerProvider(ctp),
		middleware.WithTLS(cfg),
		middleware.WithCredentials(auth.StaticToken(idp.token(t, "alice", ""))))...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c := testgrpc.NewTestServiceClient(conn)
	tracer := ctp.Tracer("test")
	ctx, span := tracer.Start(ctxFor(t, 10*time.Second), "root")
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
	span.End()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(resp.GetUsername(), "alice|spiffe://test/ns/a/sa/api|"+span.SpanContext().TraceID().String()), resp.GetUsername())
	s := serverSpans(t, srec, 1)[0]
	assert.Equal(t, span.SpanContext().TraceID(), s.SpanContext().TraceID())
	assert.Equal(t, trace.SpanKindServer, s.SpanKind())
}

func TestWiredTransport(t *testing.T) {
	idp := newIDP(t)
	srv := startHTTP(t, whoami, middleware.WithJWT(idp.v))
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: srv.Listener.Addr().String()}}})
	tr, err := middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithCredentials(auth.StaticToken(idp.token(t, "svc-a", ""))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	code, body, _ := do(t, &http.Client{Transport: tr}, "http://svc/")
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, strings.HasPrefix(body, "svc-a|"), body)
	// WithTLS given to NewTransport does not compile: see TestOptionTypesRefuseOtherConstructors.
}
