package middleware_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/route"
)

// A caller whose headers a service forwards may send the shadow marker header. It must not
// switch routing off: the request still goes where its route says, with the route's header
// changes and fault.
func TestHostileShadowHeaderDoesNotBypassRoutes(t *testing.T) {
	r := newRouted(t, `
routes:
  - name: broken
    match: {path: {prefix: /broken}}
    fault: {abort: {httpStatus: 418}}
  - name: pinned
    match: {hosts: [svc]}
    destination: {service: svc, subset: {meta: {version: v2}}}
    requestHeaders:
      remove: [x-internal]
      set: {x-routed: "yes"}
`)
	hostile := map[string]string{route.ShadowHeader: "true", "X-Internal": "secret"}
	for i := range 10 {
		assert.Equal(t, 200, r.do(t, "GET", fmt.Sprintf("http://svc/p%d", i), hostile).StatusCode)
	}
	assert.Equal(t, int64(10), r.v2.Attempts(), "every request reached the route's destination")
	assert.Zero(t, r.v1a.Attempts()+r.v1b.Attempts(), "no request escaped to the rest of the service")
	for _, got := range r.v2.Requests() {
		assert.Empty(t, got.Header.Get("X-Internal"), "the route's header removal applied")
		assert.Equal(t, "yes", got.Header.Get("X-Routed"), "the route's header set applied")
	}

	resp := r.do(t, "GET", "http://svc/broken", hostile)
	assert.Equal(t, 418, resp.StatusCode, "the route's fault applied")
	assert.Equal(t, int64(10), r.v2.Attempts()+r.v1a.Attempts()+r.v1b.Attempts(), "the aborted request reached no backend")
}

// A real mirrored copy, marked in its context, is not routed (so not mirrored) again, even by
// a route that matches every request and mirrors to the same service.
func TestShadowCopyIsNotMirroredAgain(t *testing.T) {
	r := newRouted(t, `
routes:
  - name: all
    destination: {service: svc, subset: {meta: {version: v1}}}
    shadow: {destination: {service: svc}, timeout: 2s}
`)
	const n = 5
	for i := range n {
		assert.Equal(t, 200, r.do(t, "GET", fmt.Sprintf("http://svc/m%d", i), nil).StatusCode)
	}
	total := func() int64 { return r.v1a.Attempts() + r.v1b.Attempts() + r.v2.Attempts() }
	require.Eventually(t, func() bool { return total() >= 2*n }, 10*time.Second, time.Millisecond)
	time.Sleep(200 * time.Millisecond) // room for a copy of a copy, were one sent
	assert.Equal(t, int64(2*n), total(), "each primary is mirrored once, and no copy again")
	copies := 0
	for _, b := range []*faultbackend.Backend{r.v1a, r.v1b, r.v2} {
		for _, got := range b.Requests() {
			if got.Header.Get(route.ShadowHeader) == "true" {
				copies++
			}
		}
	}
	assert.Equal(t, n, copies, "the copies still tell the shadow backend what they are")
}
