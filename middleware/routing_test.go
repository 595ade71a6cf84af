package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// routed is a proxyless client whose requests are routed by a YAML table, over real loopback
// backends: svc has endpoints v1 (two) and v2 (one); shadow has one.
type routed struct {
	v1a, v1b, v2, shadow *faultbackend.Backend
	tr                   *middleware.Transport
	client               *http.Client
}

func newRouted(t *testing.T, table string, opts ...middleware.TransportOption) *routed {
	t.Helper()
	r := &routed{v1a: faultbackend.New(t), v1b: faultbackend.New(t), v2: faultbackend.New(t), shadow: faultbackend.New(t)}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"svc": {
			{Addr: r.v1a.Addr(), Meta: map[string]string{"version": "v1"}},
			{Addr: r.v1b.Addr(), Meta: map[string]string{"version": "v1"}},
			{Addr: r.v2.Addr(), Meta: map[string]string{"version": "v2"}},
		},
		"shadow": {{Addr: r.shadow.Addr()}},
	})
	cfg, err := route.ParseConfig([]byte(table))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	base := &http.Transport{MaxIdleConnsPerHost: 16}
	r.tr, err = middleware.NewTransport(base, append([]middleware.TransportOption{middleware.WithResolver(static), middleware.WithRoutes(router)}, opts...)...)
	require.NoError(t, err)
	r.client = &http.Client{Transport: r.tr}
	t.Cleanup(func() {
		require.NoError(t, r.tr.Close())
		base.CloseIdleConnections()
	})
	return r
}

func (r *routed) do(t *testing.T, method, url string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), method, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

func TestRoutesSplitBySubset(t *testing.T) {
	r := newRouted(t, `
routes:
  - name: split
    match: {hosts: [svc]}
    split:
      - {service: svc, subset: {meta: {version: v1}}, weight: 3}
      - {service: svc, subset: {meta: {version: v2}}, weight: 1}
`)
	const n = 400
	for range n {
		assert.Equal(t, 200, r.do(t, "GET", "http://svc/", nil).StatusCode)
	}
	v1, v2 := r.v1a.Attempts()+r.v1b.Attempts(), r.v2.Attempts()
	t.Logf("v1 %d (%d + %d), v2 %d", v1, r.v1a.Attempts(), r.v1b.Attempts(), v2)
	assert.Equal(t, int64(n), v1+v2)
	assert.InDelta(t, 0.25, float64(v2)/n, 0.08, "the v2 arm's share")
	assert.Positive(t, r.v1a.Attempts())
	assert.Positive(t, r.v1b.Attempts(), "the v1 subset balances over both of its endpoints")
}

func TestRoutesCanaryPinOnlyFromTrustedCallers(t *testing.T) {
	// A request whose header asks for the canary gets it only from a trusted caller; this
	// client's requests carry no remote address, so nothing is trusted and the weight decides.
	r := newRouted(t, `
routes:
  - name: canary
    match: {hosts: [svc]}
    canary:
      stable: {service: svc, subset: {meta: {version: v1}}}
      canary: {service: svc, subset: {meta: {version: v2}}}
      weight: 0
      override: {header: x-canary}
`)
	for range 50 {
		r.do(t, "GET", "http://svc/", map[string]string{"X-Canary": "always"})
	}
	assert.Zero(t, r.v2.Attempts(), "an untrusted caller cannot steer itself onto the canary")
}

func TestRoutesFaultAbortAnswersLocally(t *testing.T) {
	r := newRouted(t, `
routes:
  - name: broken
    match: {hosts: [svc], path: {prefix: /broken}}
    fault: {abort: {httpStatus: 418}, allCallers: true}
`)
	resp := r.do(t, "GET", "http://svc/broken", nil)
	assert.Equal(t, 418, resp.StatusCode)
	assert.Equal(t, "abort", resp.Header.Get("X-Proxyless-Fault"))
	assert.Zero(t, r.v1a.Attempts()+r.v1b.Attempts()+r.v2.Attempts(), "an aborted request reaches no backend")
	assert.Equal(t, 200, r.do(t, "GET", "http://svc/ok", nil).StatusCode, "other paths are not aborted")
}

func TestRoutesFaultDelayGivesUpWithTheCaller(t *testing.T) {
	r := newRouted(t, `
routes:
  - name: slow
    match: {hosts: [svc]}
    fault: {delay: {fixed: 10s}, allCallers: true}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc/", nil)
	start := time.Now()
	_, err := r.client.Do(req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)
}

func TestRoutesRetryOverrideAndRewrite(t *testing.T) {
	r := newRouted(t, `
routes:
  - name: no-retry
    match: {hosts: [svc], path: {prefix: /once}}
    destination: {service: svc, subset: {meta: {version: v2}}}
    retry: {disable: true}
    requestHeaders: {set: {x-route: no-retry}}
    rewrite: {prefix: /v2/}
  - name: default
    match: {hosts: [svc]}
    destination: {service: svc, subset: {meta: {version: v2}}}
`)
	r.v2.Set(faultbackend.Status(503))
	resp := r.do(t, "GET", "http://svc/once/x", nil)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, int64(1), r.v2.Attempts(), "the route turned retries off")
	reqs := r.v2.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "no-retry", reqs[0].Header.Get("X-Route"))
	assert.Equal(t, "/v2/x", reqs[0].Path)

	r.v2.Reset()
	r.do(t, "GET", "http://svc/other", nil)
	assert.Equal(t, int64(3), r.v2.Attempts(), "the default route keeps the transport's two retries")
}

func TestRoutesShadowNeverSlowsThePrimary(t *testing.T) {
	r := newRouted(t, `
routes:
  - name: mirror
    match: {hosts: [svc]}
    destination: {service: svc, subset: {meta: {version: v1}}}
    shadow: {destination: {service: shadow}, timeout: 2s}
`)
	r.shadow.Set(faultbackend.OK("shadow"))
	r.do(t, "GET", "http://svc/a", nil)
	// The backend counts a request before it has read and recorded it: wait for the record.
	require.Eventually(t, func() bool { return len(r.shadow.Requests()) >= 1 }, 10*time.Second, time.Millisecond)
	sreq := r.shadow.Requests()[0]
	assert.Equal(t, "svc-shadow", sreq.Host)
	assert.Equal(t, "true", sreq.Header.Get(route.ShadowHeader))

	// A hanging shadow does not hold the primary up.
	r.shadow.Set(faultbackend.Hang())
	for i := range 20 {
		start := time.Now()
		assert.Equal(t, 200, r.do(t, "GET", fmt.Sprintf("http://svc/b%d", i), nil).StatusCode)
		assert.Less(t, time.Since(start), time.Second)
	}
}

func TestRoutesNeedAResolverForServices(t *testing.T) {
	cfg, err := route.ParseConfig([]byte(`
routes:
  - match: {hosts: [svc]}
    destination: {service: svc}
`))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	tr, err := middleware.NewTransport(nil, middleware.WithRoutes(router))
	require.NoError(t, err)
	defer tr.Close()
	req, _ := http.NewRequest("GET", "http://svc/", nil)
	_, err = tr.RoundTrip(req)
	require.ErrorContains(t, err, "no resolver")
}
