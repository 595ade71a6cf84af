package connect_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/middleware"
)

func httpPerm(action api.IntentionAction, h *api.IntentionHTTPPermission) *api.IntentionPermission {
	return &api.IntentionPermission{Action: action, HTTP: h}
}

// L7 permissions are enforced per request on the proxyless server, by path (exact, prefix,
// regex), method and header, first match deciding, the default policy when none matches; a
// source without an intention gets the default. Denials are counted.
func TestL7PermissionsPerPathMethodHeader(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	cleanEntries(t, c, [2]string{api.ServiceDefaults, "l7api"}, [2]string{api.ServiceIntentions, "l7api"})
	srv := newMesh(t, a, "l7api", func(cfg *connect.Config) { cfg.MeterProvider = mp })
	web := newMesh(t, a, "l7web")
	other := newMesh(t, a, "l7other")
	serveMesh(t, srv, whoami)
	_, _, err := c.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "l7api", Protocol: "http"}, nil)
	require.NoError(t, err)
	idx := setIntentions(t, c, "l7api", &api.SourceIntention{Name: "l7web", Permissions: []*api.IntentionPermission{
		httpPerm(api.IntentionActionDeny, &api.IntentionHTTPPermission{PathPrefix: "/admin"}),
		httpPerm(api.IntentionActionAllow, &api.IntentionHTTPPermission{PathExact: "/read", Methods: []string{"GET"}}),
		httpPerm(api.IntentionActionAllow, &api.IntentionHTTPPermission{PathRegex: "/items/[0-9]+", Methods: []string{"GET", "PUT"}}),
		httpPerm(api.IntentionActionAllow, &api.IntentionHTTPPermission{Header: []api.IntentionHTTPHeaderPermission{{Name: "X-Role", Exact: "admin"}}}),
		httpPerm(api.IntentionActionDeny, &api.IntentionHTTPPermission{PathPrefix: "/"}),
	}})
	waitIntentions(t, idx, srv)
	wc, oc := meshClient(t, web), meshClient(t, other)
	eventually(t, 10*time.Second, "the server is a mesh endpoint", func() error {
		_, _, err := get(wc, "http://l7api/read")
		return err
	})
	admin := http.Header{"X-Role": {"admin"}}
	cases := []struct {
		c            *http.Client
		method, path string
		hdr          http.Header
		want         int
	}{
		{wc, "GET", "/read", nil, 200},
		{wc, "POST", "/read", nil, 403},
		{wc, "GET", "/read/more", nil, 403},
		{wc, "GET", "/items/42", nil, 200},
		{wc, "PUT", "/items/42", nil, 200},
		{wc, "DELETE", "/items/42", nil, 403},
		{wc, "GET", "/items/42x", nil, 403},
		{wc, "GET", "/admin/users", admin, 403},
		{wc, "GET", "/other", admin, 200},
		{wc, "GET", "/other", http.Header{"X-Role": {"user"}}, 403},
		{wc, "GET", "/other", nil, 403},
		{oc, "GET", "/admin/users", nil, 200}, // no intention for l7other: the default (allow)
	}
	for _, tc := range cases {
		code, _, err := do(tc.c, tc.method, "http://l7api"+tc.path, tc.hdr)
		require.NoError(t, err)
		assert.Equal(t, tc.want, code, "%s %s %v", tc.method, tc.path, tc.hdr)
	}
	assert.Equal(t, int64(7), denials(t, reader, "l7web"), "one per 403")
	// Consul's own check cannot evaluate permissions: it says deny; so does AllowedL4.
	assert.False(t, srv.AllowedL4("l7web"))
	assert.Equal(t, agentCheck(t, c, "l7web", "l7api"), srv.AllowedL4("l7web"))
}

// denials sums the denial counter for source.
func denials(t *testing.T, r *sdkmetric.ManualReader, source string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != connect.DenialsMetric {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, ok := dp.Attributes.Value("connect.source"); ok && v.AsString() == source {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// A gRPC server authorizes each call by intentions (PERMISSION_DENIED, per call, on the open
// channel) with L7 permissions on the full method name; the client dials it through the
// mesh resolver with ClientTLS.
func TestGRPCAuthorizedByIntentions(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	cleanEntries(t, c, [2]string{api.ServiceDefaults, "grpcapi"}, [2]string{api.ServiceIntentions, "grpcapi"})
	srv := newMesh(t, a, "grpcapi")
	cli := newMesh(t, a, "grpcweb")
	gs, err := middleware.NewGRPCServer(middleware.WithAuthorizer(srv))
	require.NoError(t, err)
	s := grpc.NewServer(append(gs.ServerOptions(), grpc.Creds(credentials.NewTLS(srv.ServerTLS())))...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dereg, err := srv.Register(ctx, consulRegistration(ln))
	require.NoError(t, err)
	t.Cleanup(func() { _ = dereg(context.Background()) })

	tlsCfg, err := cli.ClientTLS("grpcapi")
	require.NoError(t, err)
	gc, err := middleware.NewGRPCClient(cli.Resolver(), middleware.WithTLS(tlsCfg))
	require.NoError(t, err)
	t.Cleanup(func() { _ = gc.Close() })
	conn, err := gc.NewClient("grpcapi")
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	hc := healthpb.NewHealthClient(conn)
	check := func() codes.Code {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		return status.Code(err)
	}
	eventually(t, 10*time.Second, "first call", func() error {
		if code := check(); code != codes.OK {
			return status.Error(code, "not yet")
		}
		return nil
	})
	_, _, err = c.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "grpcapi", Protocol: "grpc"}, nil)
	require.NoError(t, err)
	idx := setIntentions(t, c, "grpcapi", &api.SourceIntention{Name: "grpcweb", Permissions: []*api.IntentionPermission{
		httpPerm(api.IntentionActionDeny, &api.IntentionHTTPPermission{PathExact: "/grpc.health.v1.Health/Check"}),
	}})
	waitIntentions(t, idx, srv)
	assert.Equal(t, codes.PermissionDenied, check())
	idx = setIntentions(t, c, "grpcapi", &api.SourceIntention{Name: "grpcweb", Permissions: []*api.IntentionPermission{
		httpPerm(api.IntentionActionDeny, &api.IntentionHTTPPermission{PathPrefix: "/grpc.health.v1.Health/Watch"}),
	}})
	waitIntentions(t, idx, srv)
	assert.Equal(t, codes.OK, check())
	idx = setIntentions(t, c, "grpcapi", deny("grpcweb"))
	waitIntentions(t, idx, srv)
	assert.Equal(t, codes.PermissionDenied, check())
}
