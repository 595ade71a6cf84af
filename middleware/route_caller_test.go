package middleware_test

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// callerMesh is an edge server (NewHandler with WithJWT) whose handler calls svc through a
// routed Transport with the incoming request's context, forwarding the X-Canary header it
// received and naming the caller in X-User; svc has a v1 and a v2 endpoint on loopback.
type callerMesh struct {
	v1, v2 *faultbackend.Backend
	tr     *middleware.Transport
	edge   string // the edge server's URL
	idp    *testIDP
	fresh  bool // the handler calls with a fresh context instead of the request's
}

func newCallerMesh(t *testing.T, table string, opts ...route.Option) *callerMesh {
	t.Helper()
	m := &callerMesh{v1: faultbackend.New(t), v2: faultbackend.New(t), idp: newIDP(t)}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {
		{Addr: m.v1.Addr(), Meta: map[string]string{"version": "v1"}},
		{Addr: m.v2.Addr(), Meta: map[string]string{"version": "v2"}},
	}})
	cfg, err := route.ParseConfig([]byte(table))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg, opts...)
	require.NoError(t, err)
	base := &http.Transport{}
	m.tr, err = middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithRoutes(router))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, m.tr.Close())
		base.CloseIdleConnections()
	})
	client := &http.Client{Transport: m.tr}
	edge := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if m.fresh {
			ctx = context.Background()
		}
		out, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
		out.Header.Set("X-Canary", r.Header.Get("X-Canary"))
		out.Header.Set("X-User", r.Header.Get("X-User"))
		resp, err := client.Do(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}), middleware.WithJWT(m.idp.v))
	m.edge = edge.URL
	return m
}

// call sends one request to the edge with a token for sub and the X-Canary header.
func (m *callerMesh) call(t *testing.T, sub, canary string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, m.edge+"/", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+m.idp.token(t, sub, ""))
	req.Header.Set("X-Canary", canary)
	req.Header.Set("X-User", sub)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// users returns how many requests of each X-User b saw.
func users(b *faultbackend.Backend) map[string]int {
	n := map[string]int{}
	for _, r := range b.Requests() {
		n[r.Header.Get("X-User")]++
	}
	return n
}

const pinnableCanary = `
routes:
  - name: canary
    match: {hosts: [svc]}
    canary:
      stable: {service: svc, subset: {meta: {version: v1}}}
      canary: {service: svc, subset: {meta: {version: v2}}}
      weight: 0
      override: {header: x-canary}
`

// TestTransportTrustsTheVerifiedCallerIdentity: a canary override forwarded by an edge
// handler pins the canary only for the caller whose verified token subject the router's
// TrustIdentities admits; another verified caller writing the same header does not.
func TestTransportTrustsTheVerifiedCallerIdentity(t *testing.T) {
	m := newCallerMesh(t, pinnableCanary, route.WithTrust(route.TrustIdentities("alice")))
	const n = 10
	for range n {
		m.call(t, "alice", "canary")
		m.call(t, "mallory", "canary")
	}
	assert.Equal(t, map[string]int{"alice": n}, users(m.v2), "only the trusted identity pins the canary")
	assert.Equal(t, map[string]int{"mallory": n}, users(m.v1), "an untrusted identity steers nothing")

	// The same trusted caller, but the handler calls with a fresh context: no caller, no trust.
	m.fresh = true
	for range n {
		m.call(t, "alice", "canary")
	}
	assert.Equal(t, n, users(m.v1)["alice"], "a call without the incoming request's context is trusted by no identity")
}

// TestTransportTrustsTheCallerAddress: TrustPrefixes admits, on the client side, the address
// of the caller being served (the edge's direct peer, loopback here), when the outbound
// request carries that request's context.
func TestTransportTrustsTheCallerAddress(t *testing.T) {
	m := newCallerMesh(t, pinnableCanary, route.WithTrust(route.TrustPrefixes(netip.MustParsePrefix("127.0.0.0/8"))))
	const n = 10
	for range n {
		m.call(t, "alice", "canary")
	}
	assert.Equal(t, n, len(m.v2.Requests()), "the loopback caller pins the canary")
	m.fresh = true
	for range n {
		m.call(t, "alice", "canary")
	}
	assert.Equal(t, n, len(m.v1.Requests()), "a call without the caller's context has no address to trust")
	assert.Equal(t, n, len(m.v2.Requests()))
}

const stickySplit = `
routes:
  - name: split
    match: {hosts: [svc]}
    split:
      - {service: svc, subset: {meta: {version: v1}}, weight: 1}
      - {service: svc, subset: {meta: {version: v2}}, weight: 1}
    sticky: {key: true}
`

// TestTransportStickyKeyIsTheVerifiedSubject: sticky: {key: true} keeps each verified caller
// on one arm of a 50/50 split, without any trust predicate (the key is verified, not written
// by the caller).
func TestTransportStickyKeyIsTheVerifiedSubject(t *testing.T) {
	m := newCallerMesh(t, stickySplit)
	subjects := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}
	const n = 12
	for _, sub := range subjects {
		for range n {
			m.call(t, sub, "")
		}
	}
	on1, on2 := users(m.v1), users(m.v2)
	for _, sub := range subjects {
		assert.True(t, on1[sub] == n || on2[sub] == n, "%s split %d/%d over the arms", sub, on1[sub], on2[sub])
	}
	assert.NotEmpty(t, on1, "some subject hashes to v1")
	assert.NotEmpty(t, on2, "some subject hashes to v2")
}

// TestWithRouteKeyIsTheStickyKey: a key the application puts in the context with
// WithRouteKey keeps its requests on one arm; another key may go to the other.
func TestWithRouteKeyIsTheStickyKey(t *testing.T) {
	m := newCallerMesh(t, stickySplit)
	client := &http.Client{Transport: m.tr}
	arms := map[string]int{}
	for _, key := range []string{"k1", "k2", "k3", "k4", "k5", "k6"} {
		before1, before2 := len(m.v1.Requests()), len(m.v2.Requests())
		for range 10 {
			req, err := http.NewRequestWithContext(middleware.WithRouteKey(ctxFor(t, 10*time.Second), key), http.MethodGet, "http://svc/", nil)
			require.NoError(t, err)
			resp, err := client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
		}
		d1, d2 := len(m.v1.Requests())-before1, len(m.v2.Requests())-before2
		assert.True(t, d1 == 10 || d2 == 10, "key %s split %d/%d over the arms", key, d1, d2)
		if d1 == 10 {
			arms["v1"]++
		} else {
			arms["v2"]++
		}
	}
	assert.Len(t, arms, 2, "the keys hash to both arms")
}

// TestServerFaultTrustsTheVerifiedIdentity: WithServerFaults injects a fault matched on a
// header only for the caller whose verified token subject TrustIdentities admits.
func TestServerFaultTrustsTheVerifiedIdentity(t *testing.T) {
	idp := newIDP(t)
	cfg, err := route.ParseConfig([]byte(callerFaults))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg, route.WithTrust(route.TrustIdentities("alice")))
	require.NoError(t, err)
	srv := startHTTP(t, whoami, middleware.WithJWT(idp.v), middleware.WithServerFaults(router))
	get := func(sub string) int {
		req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, srv.URL+"/", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+idp.token(t, sub, ""))
		req.Header.Set("X-Chaos", "abort")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 5 {
		assert.Equal(t, http.StatusServiceUnavailable, get("alice"), "the trusted identity triggers the fault")
		assert.Equal(t, http.StatusOK, get("mallory"), "an untrusted identity does not")
	}
}
