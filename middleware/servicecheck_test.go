package middleware_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

const ghostRoutes = `
routes:
  - name: to-ghost
    match: {hosts: [svc]}
    canary:
      stable: {service: svc}
      canary: {service: ghost}
      weight: 10
`

// A route to a service a static resolver does not know is refused when the transport (or
// gRPC client) is made, naming the route, the field and the service.
func TestRouteToUnknownServiceRefusedAtLoad(t *testing.T) {
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "127.0.0.1:1"}}})
	cfg, err := route.ParseConfig([]byte(ghostRoutes))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)

	_, err = middleware.NewTransport(nil, middleware.WithResolver(static), middleware.WithRoutes(router))
	require.ErrorIs(t, err, discovery.ErrUnknownService)
	assert.Contains(t, err.Error(), `route "to-ghost" canary.canary: service "ghost"`)

	_, err = middleware.NewGRPCClient(static, middleware.WithRoutes(router))
	require.ErrorIs(t, err, discovery.ErrUnknownService)

	// A router checked against the resolver refuses the route itself, at load and at reload.
	_, err = route.NewRouter(cfg, route.WithServiceCheck(discovery.CheckKnown(static)))
	require.ErrorIs(t, err, discovery.ErrUnknownService)
	assert.Contains(t, err.Error(), "routes[0].canary.canary.service")

	// Once the resolver knows it, the same routes load.
	require.NoError(t, static.Set("ghost", []discovery.Endpoint{{Addr: "127.0.0.1:2"}}))
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(static), middleware.WithRoutes(router))
	require.NoError(t, err)
	require.NoError(t, tr.Close())
}

// dynamicOnly hides Static's Knows: a resolver that must ask its source (as Consul and DNS
// do) to learn whether it serves a name. Unknown names are empty sets, as Consul answers.
type dynamicOnly struct{ s *discovery.Static }

func (d dynamicOnly) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	if !d.s.Knows(service) {
		_ = d.s.Set(service, nil)
	}
	return d.s.Watch(ctx, service)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// With a resolver that cannot tell up front, the transport loads and warns through its
// logger about the route's service that resolves to nothing.
func TestRouteToUnservedServiceWarnsForDynamicResolver(t *testing.T) {
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "127.0.0.1:1"}}})
	cfg, err := route.ParseConfig([]byte(ghostRoutes))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	var logs syncBuffer
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(dynamicOnly{static}), middleware.WithRoutes(router),
		middleware.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	defer tr.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "service=ghost") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	assert.Contains(t, out, "a route names a service with no endpoints")
	assert.Contains(t, out, "route=to-ghost field=canary.canary service=ghost")
	assert.NotContains(t, out, "service=svc", "the served service draws no warning")
}
