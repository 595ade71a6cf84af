package grpcresolver_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/grpcresolver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a resolver.ClientConn that records what the resolver tells the channel. It is a
// fake because the test asserts the resolver's side of the contract, call by call.
type recorder struct {
	resolver.ClientConn // not called
	mu                  sync.Mutex
	states              []resolver.State
	errs                []error
	changed             chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 100)} }

func (r *recorder) UpdateState(s resolver.State) error {
	r.mu.Lock()
	r.states = append(r.states, s)
	r.mu.Unlock()
	r.changed <- struct{}{}
	return nil
}

func (r *recorder) ReportError(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

func (r *recorder) snapshot() ([]resolver.State, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]resolver.State(nil), r.states...), append([]error(nil), r.errs...)
}

func (r *recorder) wait(t *testing.T, cond func([]resolver.State, []error) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		if cond(r.snapshot()) {
			return
		}
		select {
		case <-r.changed:
		case <-timeout:
			t.Fatal("timed out waiting for the resolver")
		}
	}
}

func target(service string) resolver.Target {
	var t resolver.Target
	t.URL.Scheme = grpcresolver.Scheme
	t.URL.Path = "/" + service
	return t
}

func addrs(s resolver.State) []string {
	var out []string
	for _, e := range s.Endpoints {
		out = append(out, e.Addresses[0].Addr)
	}
	return out
}

func TestStateCarriesEndpoints(t *testing.T) {
	eps := []discovery.Endpoint{
		{Addr: "127.0.0.1:1", Weight: 3, Zone: "dc1/a", Tags: []string{"v2"}, Meta: map[string]string{"version": "2"}},
		{Addr: "127.0.0.1:2"},
	}
	s := grpcresolver.State(eps)
	require.Len(t, s.Endpoints, 2)
	require.Len(t, s.Addresses, 2)
	for i, e := range s.Endpoints {
		got, ok := grpcresolver.FromEndpoint(e)
		assert.True(t, ok)
		assert.True(t, discovery.Equal([]discovery.Endpoint{eps[i]}, []discovery.Endpoint{got}))
		got, ok = grpcresolver.FromAddress(s.Addresses[i])
		assert.True(t, ok)
		assert.Equal(t, eps[i].Addr, got.Addr)
	}
	// Equal attributes compare without panicking, though an Endpoint is not comparable.
	assert.True(t, s.Endpoints[0].Attributes.Equal(grpcresolver.State(eps).Endpoints[0].Attributes))

	foreign, ok := grpcresolver.FromEndpoint(resolver.Endpoint{Addresses: []resolver.Address{{Addr: "10.0.0.1:80"}}})
	assert.False(t, ok)
	assert.Equal(t, discovery.Endpoint{Addr: "10.0.0.1:80"}, foreign)
}

func TestBuilderFollowsStatic(t *testing.T) {
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "127.0.0.1:1"}}})
	rec := newRecorder()
	r, err := grpcresolver.NewBuilder(static).Build(target("svc"), rec, resolver.BuildOptions{})
	require.NoError(t, err)
	defer r.Close()
	rec.wait(t, func(s []resolver.State, _ []error) bool { return len(s) == 1 })
	static.Set("svc", []discovery.Endpoint{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2"}})
	rec.wait(t, func(s []resolver.State, _ []error) bool { return len(s) == 2 })
	states, errs := rec.snapshot()
	assert.Equal(t, []string{"127.0.0.1:1", "127.0.0.1:2"}, addrs(states[1]))
	assert.Empty(t, errs)
	r.Close()
	r.Close() // idempotent
}

func TestBuildRefusesBadTargets(t *testing.T) {
	_, err := grpcresolver.NewBuilder(nil).Build(target("svc"), newRecorder(), resolver.BuildOptions{})
	assert.Error(t, err)
	_, err = grpcresolver.NewBuilder(discovery.MustNewStatic(nil)).Build(target(""), newRecorder(), resolver.BuildOptions{})
	assert.Error(t, err)
	assert.Equal(t, "proxyless", grpcresolver.NewBuilder(nil).Scheme())
}

// flaky is a discovery.Resolver whose first watch yields one set and then fails, and whose
// later watches fail at once: a source that went down. It is a fake because a real source
// cannot be made to fail this precisely.
type flaky struct {
	mu      sync.Mutex
	watches int
}

var errDown = errors.New("source down")

func (f *flaky) Watch(context.Context, string) (discovery.Watcher, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watches++
	if f.watches > 1 {
		return nil, errDown
	}
	return &flakyWatcher{}, nil
}

func (f *flaky) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watches
}

type flakyWatcher struct{ n int }

func (w *flakyWatcher) Next(context.Context) ([]discovery.Endpoint, error) {
	w.n++
	if w.n == 1 {
		return []discovery.Endpoint{{Addr: "127.0.0.1:1"}}, nil
	}
	return nil, errDown
}

func (w *flakyWatcher) Close() error { return nil }

func TestFailsStatic(t *testing.T) {
	f := &flaky{}
	rec := newRecorder()
	r, err := grpcresolver.NewBuilder(f).Build(target("svc"), rec, resolver.BuildOptions{})
	require.NoError(t, err)
	defer r.Close()
	deadline := time.Now().Add(10 * time.Second)
	for f.count() < 3 {
		require.True(t, time.Now().Before(deadline), "the resolver keeps trying to watch again")
		time.Sleep(10 * time.Millisecond)
	}
	states, errs := rec.snapshot()
	assert.Len(t, states, 1, "the last good set stays")
	assert.Empty(t, errs, "a channel with a set is not told of the outage")
}

func TestReportsErrorBeforeFirstSet(t *testing.T) {
	rec := newRecorder()
	r, err := grpcresolver.NewBuilder(discovery.MustNewStatic(nil)).Build(target("unknown"), rec, resolver.BuildOptions{})
	require.NoError(t, err)
	defer r.Close()
	rec.wait(t, func(_ []resolver.State, e []error) bool { return len(e) > 0 })
	_, errs := rec.snapshot()
	assert.ErrorIs(t, errs[0], discovery.ErrUnknownService)
}

func TestWithAttributesCarriedInEveryState(t *testing.T) {
	type key struct{}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "127.0.0.1:1"}}})
	rec := newRecorder()
	b := grpcresolver.NewBuilder(static, grpcresolver.WithAttributes(attributes.New(key{}, "monitor")))
	r, err := b.Build(target("svc"), rec, resolver.BuildOptions{})
	require.NoError(t, err)
	defer r.Close()
	rec.wait(t, func(s []resolver.State, _ []error) bool { return len(s) == 1 })
	static.Set("svc", []discovery.Endpoint{{Addr: "127.0.0.1:2"}})
	rec.wait(t, func(s []resolver.State, _ []error) bool { return len(s) == 2 })
	states, _ := rec.snapshot()
	for _, s := range states {
		assert.Equal(t, "monitor", s.Attributes.Value(key{}))
	}
}
