package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
)

// anyService resolves every name to one endpoint, as a Consul resolver treats every
// single-label host as a service (one it does not know has no endpoints): a caller choosing
// hosts at will makes the transport follow new destinations. It is a stand-in for the agent,
// whose answer for unknown names is the same empty or fixed set.
type anyService struct{ addr string }

func (r anyService) Watch(_ context.Context, service string) (discovery.Watcher, error) {
	return discovery.MustNewStatic(map[string][]discovery.Endpoint{service: {{Addr: r.addr}}}).Watch(context.Background(), service)
}

func get(t *testing.T, c *http.Client, host string) error {
	t.Helper()
	resp, err := c.Get("http://" + host + "/")
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	return nil
}

// A destination no request uses is released after the idle timeout, with its watch and its
// goroutines; a later request follows it afresh.
func TestDestinationsReleasedWhenIdle(t *testing.T) {
	b := faultbackend.New(t)
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(anyService{addr: b.Addr()}),
		middleware.WithDestinationIdleTimeout(time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	c := &http.Client{Transport: tr}
	before := runtime.NumGoroutine()
	for i := range 20 {
		require.NoError(t, get(t, c, fmt.Sprintf("svc%d", i)))
	}
	require.NotNil(t, tr.Endpoints("svc0"))
	grown := runtime.NumGoroutine()
	assert.Greater(t, grown, before, "each destination has its watch and follower")
	// Keep one destination busy: only the others are idle.
	deadline := time.Now().Add(5 * time.Second)
	for tr.Endpoints("svc1") != nil && time.Now().Before(deadline) {
		require.NoError(t, get(t, c, "svc0"))
		time.Sleep(50 * time.Millisecond)
	}
	assert.Nil(t, tr.Endpoints("svc1"), "an idle destination was released")
	assert.NotNil(t, tr.Endpoints("svc0"), "a busy one was kept")
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() < grown-20 }, 5*time.Second, 10*time.Millisecond,
		"the released destinations' goroutines ended: %d before, %d at most, %d now", before, grown, runtime.NumGoroutine())
	require.NoError(t, get(t, c, "svc1"), "followed afresh")
	assert.NotNil(t, tr.Endpoints("svc1"))
}

// The table is bounded: a new destination makes room by releasing idle ones, and is refused
// when every one is in use.
func TestMaxDestinations(t *testing.T) {
	b := faultbackend.New(t)
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(anyService{addr: b.Addr()}),
		middleware.WithMaxDestinations(3), middleware.WithDestinationIdleTimeout(time.Hour))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	c := &http.Client{Transport: tr}
	for _, h := range []string{"a", "b", "c"} {
		require.NoError(t, get(t, c, h))
	}
	err = get(t, c, "d")
	require.Error(t, err)
	assert.True(t, errors.Is(err, middleware.ErrTooManyDestinations), "%v", err)
	assert.Nil(t, tr.Endpoints("d"))
	require.NoError(t, get(t, c, "a"), "known destinations still work")

	// Once the others have gone a sweep unused, a new destination takes one's place, and the
	// table stays within its bound.
	tr2, err := middleware.NewTransport(nil, middleware.WithResolver(anyService{addr: b.Addr()}),
		middleware.WithMaxDestinations(3), middleware.WithDestinationIdleTimeout(time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr2.Close()) })
	c2 := &http.Client{Transport: tr2}
	for _, h := range []string{"a", "b", "c"} {
		require.NoError(t, get(t, c2, h))
	}
	require.Eventually(t, func() bool { return get(t, c2, "d") == nil }, 5*time.Second, 20*time.Millisecond)
	followed := 0
	for _, h := range []string{"a", "b", "c", "d"} {
		if tr2.Endpoints(h) != nil {
			followed++
		}
	}
	assert.LessOrEqual(t, followed, 3)

	_, err = middleware.NewTransport(nil, middleware.WithMaxDestinations(0))
	assert.ErrorContains(t, err, "WithMaxDestinations")
	_, err = middleware.NewTransport(nil, middleware.WithDestinationIdleTimeout(time.Millisecond))
	assert.ErrorContains(t, err, "WithDestinationIdleTimeout")
}

// silentDiscovery never answers: a stand-in for a Consul agent that cannot be reached (the
// real resolver retries in the background and never yields a first set).
type silentDiscovery struct{}

func (silentDiscovery) Watch(context.Context, string) (discovery.Watcher, error) {
	return &silentWatch{closed: make(chan struct{})}, nil
}

type silentWatch struct{ closed chan struct{} }

func (w *silentWatch) Next(ctx context.Context) ([]discovery.Endpoint, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-w.closed:
		return nil, discovery.ErrClosed
	}
}
func (w *silentWatch) Close() error { close(w.closed); return nil }

// With no discovery answer, a request fails within the transport's timeout rather than
// hanging: WithTimeout, else WithAttemptTimeout, bounds the wait for the first set.
func TestFirstDiscoveryAnswerIsBounded(t *testing.T) {
	for _, opt := range []middleware.TransportOption{
		middleware.WithTimeout(200 * time.Millisecond),
		middleware.WithAttemptTimeout(200 * time.Millisecond),
	} {
		tr, err := middleware.NewTransport(nil, middleware.WithResolver(silentDiscovery{}), opt)
		require.NoError(t, err)
		start := time.Now()
		_, err = (&http.Client{Transport: tr}).Get("http://payments/")
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorContains(t, err, `no endpoints of "payments"`)
		assert.Less(t, time.Since(start), 2*time.Second)
		require.NoError(t, tr.Close())
	}
}
