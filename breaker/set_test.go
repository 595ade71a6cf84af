package breaker_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/breaker"
)

func TestSet(t *testing.T) {
	var ev events
	s, err := breaker.NewSet(breaker.Config{MinimumVolume: 1}, breaker.OnStateChange(ev.add), nil)
	require.NoError(t, err)
	require.Zero(t, s.Len())

	a := s.Get("a:1")
	require.Same(t, a, s.Get("a:1"), "one breaker per key")
	require.NotSame(t, a, s.Get("b:1"))
	require.Equal(t, 2, s.Len())

	p, err := s.Allow("a:1")
	require.NoError(t, err)
	p.Done(breaker.Failure)
	require.Equal(t, breaker.StateOpen, a.State())
	require.Equal(t, breaker.StateClosed, s.Get("b:1").State(), "keys are independent")
	require.Equal(t, []breaker.StateChange{{Key: "a:1", From: breaker.StateClosed, To: breaker.StateOpen}}, ev.list())

	s.Get("c:1")
	var keys []string
	s.Range(func(k string, b *breaker.Breaker) bool {
		require.Same(t, b, s.Get(k))
		keys = append(keys, k)
		return true
	})
	slices.Sort(keys)
	require.Equal(t, []string{"a:1", "b:1", "c:1"}, keys)

	s.Retain("b:1", "c:1", "not-there:1")
	require.Equal(t, 2, s.Len(), "Retain creates nothing")
	s.Remove("c:1")
	s.Remove("never:1")
	require.Equal(t, 1, s.Len())

	fresh := s.Get("a:1")
	require.NotSame(t, a, fresh)
	require.Equal(t, breaker.StateClosed, fresh.State(), "a key that comes back starts closed")
	p.Done(breaker.Failure) // a permit of the dropped breaker: harmless
	require.Equal(t, breaker.StateClosed, fresh.State())
}

func TestSetConcurrentGet(t *testing.T) {
	s, err := breaker.NewSet(breaker.Config{})
	require.NoError(t, err)
	const n = 50
	got := make([]*breaker.Breaker, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i] = s.Get("k")
			if i%2 == 0 {
				s.Get("other")
			}
		})
	}
	wg.Wait()
	for _, b := range got {
		require.Same(t, got[0], b)
	}
	require.Equal(t, 2, s.Len())
}
