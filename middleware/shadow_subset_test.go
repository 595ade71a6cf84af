package middleware_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/route"
)

// TestShadowHonoursItsSubset: a shadow destination naming a subset sends every copy to that
// subset's endpoints only, never to the service's other endpoints.
func TestShadowHonoursItsSubset(t *testing.T) {
	r := newRouted(t, `
routes:
  - name: mirror
    match: {hosts: [svc]}
    destination: {service: shadow}
    shadow: {destination: {service: svc, subset: {meta: {version: v2}}}, maxConcurrency: 1000, timeout: 5s}
`)
	const n = 60
	for range n {
		assert.Equal(t, 200, r.do(t, "GET", "http://svc/", nil).StatusCode)
	}
	require.Eventually(t, func() bool { return r.tr.Stats().Shadow.InFlight == 0 }, 10*time.Second, time.Millisecond)
	sh := r.tr.Stats().Shadow
	assert.Equal(t, int64(n), sh.Mirrored)
	assert.Equal(t, int64(n), r.shadow.Attempts(), "the primaries went to the route's destination")
	assert.Zero(t, r.v1a.Attempts()+r.v1b.Attempts(), "no copy reaches an endpoint outside the shadow's subset")
	assert.Equal(t, int64(n), r.v2.Attempts(), "every copy reaches the shadow's subset")
	for _, q := range r.v2.Requests() {
		assert.Equal(t, "true", q.Header.Get(route.ShadowHeader))
	}
}
