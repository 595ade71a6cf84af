package middleware_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// connLimitDoc is a Document whose only setting is svc's maxConnections: 1, with no request
// allowed to wait for a connection.
const connLimitDoc = `
routes: []
destinations:
  svc:
    balancer: {outlier: {disabled: true}, limits: {maxConnections: 1, maxPendingRequests: -1}}
`

func connLimitConfig(t *testing.T, doc string) *middleware.Config {
	t.Helper()
	d, err := middleware.ParseDocument([]byte(doc))
	require.NoError(t, err)
	c, err := middleware.NewConfig(d)
	require.NoError(t, err)
	return c
}

// A service's maxConnections set in the destinations of a Config applies although the
// Transport has no limits of its own (no WithLimits, no limits in WithBalancer): of three
// requests held by an HTTP/1.1 server, each needing its own connection, one gets the one
// connection and two are refused with ErrMaxConnections.
func TestConfigMaxConnectionsApplies(t *testing.T) {
	b := newGatedBackend(t, false)
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: b.Addr()}}})
	base := &http.Transport{MaxIdleConnsPerHost: 16}
	tr, err := middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithoutBreaker(),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}), middleware.WithConfig(connLimitConfig(t, connLimitDoc)))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, tr.Close())
		base.CloseIdleConnections()
	})
	app := &limitApp{tr: tr, client: &http.Client{Transport: tr}}
	out := app.fire(t, 3)
	checkRefusals(t, collect(t, out, 2), balancer.ErrMaxConnections)
	require.NoError(t, b.Wait(ctxFor(t, 10*time.Second), func(s faultbackend.Stats) bool { return s.Attempts >= 1 }))
	assert.EqualValues(t, 1, b.Attempts())
	assert.EqualValues(t, 1, b.NewConnections())
	assert.EqualValues(t, 2, tr.Stats().Overflows)
	b.open()
	checkServed(t, collect(t, out, 1))
	checkServed(t, collect(t, app.fire(t, 1), 1))
	assert.EqualValues(t, 1, b.NewConnections(), "the idle connection is reused")
}

// A Transport whose base cannot count connections refuses, at construction, a Config that
// sets a maxConnections, naming the field; a Config without one is taken, and an update that
// adds one is refused while such a Transport follows the Config, and taken once it is closed.
func TestConfigMaxConnectionsUncountableBase(t *testing.T) {
	base := roundTripperFunc(http.DefaultTransport.RoundTrip)
	_, err := middleware.NewTransport(base, middleware.WithConfig(connLimitConfig(t, connLimitDoc)))
	require.Error(t, err)
	assert.ErrorIs(t, err, route.ErrInvalidConfig)
	assert.ErrorContains(t, err, "destinations.svc.balancer.limits.maxConnections")
	assert.ErrorContains(t, err, "roundTripperFunc")

	c := connLimitConfig(t, "routes: []\ndestinations:\n  svc: {timeout: 1s}\n")
	tr, err := middleware.NewTransport(base, middleware.WithConfig(c))
	require.NoError(t, err)
	err = c.Load([]byte(connLimitDoc))
	require.Error(t, err)
	assert.ErrorContains(t, err, "destinations.svc.balancer.limits.maxConnections")
	assert.Equal(t, uint64(1), c.Version(), "the refused document did not apply")
	require.NoError(t, tr.Close())
	require.NoError(t, c.Load([]byte(connLimitDoc)), "no Transport that cannot count follows it now")
}
