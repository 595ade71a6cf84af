package discovery_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/discovery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func eps(addrs ...string) []discovery.Endpoint {
	out := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = discovery.Endpoint{Addr: a}
	}
	return out
}

func TestEndpointValidate(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:80", true},
		{"[::1]:8080", true},
		{"node-1.dc1.consul:443", true},
		{"127.0.0.1:0", false},
		{"127.0.0.1:65536", false},
		{"127.0.0.1", false},
		{":80", false},
		{"bad host:80", false},
		{"-a.b:80", false},
		{"a..b:80", false},
		{"a.b-:80", false},
	} {
		err := discovery.Endpoint{Addr: tc.addr}.Validate()
		assert.Equal(t, tc.ok, err == nil, "%q: %v", tc.addr, err)
	}
}

func TestEffectiveWeight(t *testing.T) {
	assert.Equal(t, uint32(1), discovery.Endpoint{}.EffectiveWeight())
	assert.Equal(t, uint32(7), discovery.Endpoint{Weight: 7}.EffectiveWeight())
}

func TestStaticWatch(t *testing.T) {
	s := discovery.MustNewStatic(map[string][]discovery.Endpoint{"a": eps("127.0.0.1:1")})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err := s.Watch(ctx, "nope")
	require.ErrorIs(t, err, discovery.ErrUnknownService)
	_, err = s.Watch(ctx, "")
	require.Error(t, err)

	w, err := s.Watch(ctx, "a")
	require.NoError(t, err)
	got, err := w.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, eps("127.0.0.1:1"), got)

	// No change: Next blocks until ctx ends.
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = w.Next(short)
	cancelShort()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// Setting the same set is not a change.
	s.Set("a", eps("127.0.0.1:1"))
	short, cancelShort = context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = w.Next(short)
	cancelShort()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	done := make(chan []discovery.Endpoint)
	go func() {
		got, _ := w.Next(ctx)
		done <- got
	}()
	s.Set("a", eps("127.0.0.1:1", "127.0.0.1:2"))
	assert.Equal(t, eps("127.0.0.1:1", "127.0.0.1:2"), <-done)

	// The returned slice is the caller's.
	got[0].Addr = "changed"
	w2, err := s.Watch(ctx, "a")
	require.NoError(t, err)
	got2, err := w2.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:1", got2[0].Addr)

	// Close wakes a blocked Next.
	go func() {
		time.Sleep(10 * time.Millisecond)
		_ = w.Close()
	}()
	_, err = w.Next(ctx)
	require.ErrorIs(t, err, discovery.ErrClosed)
	require.NoError(t, w.Close(), "Close is idempotent")
	require.NoError(t, w2.Close())
}

func TestCache(t *testing.T) {
	s := discovery.MustNewStatic(map[string][]discovery.Endpoint{"a": eps("127.0.0.1:1")})
	c, err := discovery.NewCache(s)
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	assert.Nil(t, c.Load("a"), "not followed yet")
	snap, err := c.Get(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, eps("127.0.0.1:1"), snap.Endpoints)
	assert.Equal(t, uint64(1), snap.Version)
	assert.Same(t, snap, c.Load("a"))

	_, err = c.Get(ctx, "unknown")
	require.ErrorIs(t, err, discovery.ErrUnknownService)
	assert.Nil(t, c.Load("unknown"))

	s.Set("a", eps("127.0.0.1:2"))
	select {
	case <-snap.Changed():
	case <-ctx.Done():
		t.Fatal("snapshot never changed")
	}
	next := c.Load("a")
	assert.Equal(t, eps("127.0.0.1:2"), next.Endpoints)
	assert.Equal(t, uint64(2), next.Version)
	assert.Equal(t, []string{"a"}, c.Services())

	allocs := testing.AllocsPerRun(100, func() { _ = c.Load("a") })
	assert.Zero(t, allocs, "Load must not allocate")

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")
	select {
	case <-next.Changed():
	default:
		t.Fatal("Close must release Changed waiters")
	}
	_, err = c.Get(ctx, "b")
	require.ErrorIs(t, err, discovery.ErrClosed)
}

// A resolver whose watcher never yields: Get must honour its context and Close must not hang.
type silentResolver struct{}

type silentWatcher struct{ closed chan struct{} }

func (silentResolver) Watch(context.Context, string) (discovery.Watcher, error) {
	return &silentWatcher{closed: make(chan struct{})}, nil
}
func (w *silentWatcher) Next(ctx context.Context) ([]discovery.Endpoint, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-w.closed:
		return nil, discovery.ErrClosed
	}
}
func (w *silentWatcher) Close() error { close(w.closed); return nil }

func TestCacheGetWaitsOnContext(t *testing.T) {
	c, err := discovery.NewCache(silentResolver{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err = c.Get(ctx, "a")
	require.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)

	waiting := make(chan error)
	go func() {
		_, err := c.Get(context.Background(), "a")
		waiting <- err
	}()
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, c.Close())
	require.ErrorIs(t, <-waiting, discovery.ErrClosed)
}

func TestNewCacheNil(t *testing.T) {
	_, err := discovery.NewCache(nil)
	require.Error(t, err)
}

// Forget ends a service's watch and its goroutine, releases readers of its last snapshot, and
// lets a later Get follow it afresh.
func TestCacheForget(t *testing.T) {
	s := discovery.MustNewStatic(map[string][]discovery.Endpoint{"a": eps("127.0.0.1:1")})
	c, err := discovery.NewCache(s)
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := c.Get(ctx, "a")
	require.NoError(t, err)
	require.NoError(t, c.Forget("a"))
	select {
	case <-snap.Changed():
	default:
		t.Fatal("Forget must release Changed waiters")
	}
	assert.Nil(t, c.Load("a"))
	assert.Empty(t, c.Services())
	require.NoError(t, c.Forget("a"), "forgetting twice does nothing")
	again, err := c.Get(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), again.Version, "followed afresh")

	// A watch that never answered is forgotten too; its waiters get ErrClosed.
	sc, err := discovery.NewCache(silentResolver{})
	require.NoError(t, err)
	defer sc.Close()
	waiting := make(chan error)
	go func() {
		_, err := sc.Get(context.Background(), "x")
		waiting <- err
	}()
	require.Eventually(t, func() bool { return len(sc.Services()) == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, sc.Forget("x"))
	require.ErrorIs(t, <-waiting, discovery.ErrClosed)
}
