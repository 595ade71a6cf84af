package middleware_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// MaxConnections counts the connections of a base transport that dials https endpoints with
// the deprecated DialTLS (as it does those of the deprecated Dial): of 2 held requests, one
// gets the one connection and the other is refused.
func TestLimitMaxConnectionsCountsDialTLS(t *testing.T) {
	b := newGatedBackend(t, false)
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: b.Addr()}}})
	// DialTLS returns a plain connection: the backend speaks plain HTTP, which is all the
	// test needs of an "https" endpoint.
	base := &http.Transport{DialTLS: func(network, addr string) (net.Conn, error) { //nolint:staticcheck // the deprecated hook is the point
		return net.Dial(network, addr)
	}}
	tr, err := middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithoutBreaker(),
		middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}),
		middleware.WithLimits(balancer.Limits{MaxConnections: 1, MaxPendingRequests: -1}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()); base.CloseIdleConnections() })

	ctx := ctxFor(t, 20*time.Second)
	out := make(chan error, 2)
	for range 2 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://svc/", nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			out <- err
		}()
	}
	select {
	case err := <-out:
		require.ErrorIs(t, err, balancer.ErrMaxConnections)
	case <-time.After(5 * time.Second):
		t.Fatal("both requests got a connection: DialTLS's are not counted")
	}
	b.open()
	require.NoError(t, <-out)
	require.EqualValues(t, 1, tr.Stats().Overflows)
}
