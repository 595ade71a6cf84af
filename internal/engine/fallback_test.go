package engine_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/outcome"
)

// pickingSender admits each attempt through the engine (as the HTTP adapter does) and
// answers for the endpoint picked: 503 from a "canary" address, 200 from any other.
type pickingSender struct {
	mu   sync.Mutex
	sent []string
}

func (s *pickingSender) Send(a *engine.Attempt) (string, error) {
	if err := a.Admit(nil); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.sent = append(s.sent, a.Endpoint())
	s.mu.Unlock()
	if strings.HasPrefix(a.Endpoint(), "127.0.0.9") {
		return "503", nil
	}
	return "200", nil
}

func (s *pickingSender) Classify(a *engine.Attempt, v string, err error, _ outcome.Cause) (outcome.Outcome, bool) {
	switch {
	case err != nil:
		return outcome.Outcome{Kind: outcome.LocalRefusal}, false
	case v == "503":
		return outcome.Outcome{Kind: outcome.GatewayFailure}, true
	}
	return outcome.Outcome{}, false
}

func (s *pickingSender) Discard(*engine.Attempt, string, error)            {}
func (s *pickingSender) Detach(_ *engine.Attempt, v string) (string, bool) { return v, true }

func newDest(t *testing.T, addrs ...string) *engine.Dest {
	t.Helper()
	bal, err := balancer.New(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = bal.Close() })
	var eps []discovery.Endpoint
	for _, a := range addrs {
		eps = append(eps, discovery.Endpoint{Addr: a})
	}
	bal.Update(eps)
	set, err := breaker.NewSet(breaker.Config{MinimumVolume: 2, OpenDelay: time.Hour})
	require.NoError(t, err)
	set.Sync(addrs...)
	return &engine.Dest{Balancer: bal, Breakers: set}
}

// Attempts the destination cannot take go to the fallback: a retry that would go back to the
// one endpoint it used, and, once that endpoint's breaker is open, every first attempt. Each
// call's switch is reported once, and its refusal counted once.
func TestFallbackDest(t *testing.T) {
	canary, stable := newDest(t, "127.0.0.9:1"), newDest(t, "127.0.0.1:1", "127.0.0.1:2")
	stats := &engine.Stats{}
	run := func(fallback *engine.Dest) (engine.Result[string], *pickingSender, int) {
		s, switched := &pickingSender{}, 0
		c := &engine.Call[string]{Policy: &engine.Policy{Retry: retry}, Budget: engine.NewBudget(1, 1000), Stats: stats,
			Sender: s, Dest: canary, Fallback: fallback, OnFallback: func() { switched++ }}
		res := engine.Run(context.Background(), c)
		res.Release()
		return res, s, switched
	}
	// The canary answers 503; the retry has no other canary endpoint: it goes to stable.
	res, s, switched := run(stable)
	require.NoError(t, res.Err)
	assert.Equal(t, "200", res.Value)
	assert.Equal(t, 1, switched)
	require.Len(t, s.sent, 2)
	assert.Equal(t, "127.0.0.9:1", s.sent[0])
	assert.True(t, strings.HasPrefix(s.sent[1], "127.0.0.1:"))
	assert.Zero(t, stats.BreakerRefusals.Load())

	// Without a fallback the retries go back to the canary, whose breaker opens.
	res, s, _ = run(nil)
	require.NoError(t, res.Err)
	assert.Equal(t, "503", res.Value)
	assert.Equal(t, "127.0.0.9:1", s.sent[0])
	require.Eventually(t, func() bool {
		_, err := canary.Breakers.Allow("127.0.0.9:1")
		return err != nil
	}, time.Second, time.Millisecond, "the canary's breaker opened")
	before := stats.BreakerRefusals.Load()

	// Open: the first attempt goes to stable, one refusal counted.
	res, s, switched = run(stable)
	require.NoError(t, res.Err)
	assert.Equal(t, "200", res.Value)
	assert.Equal(t, 1, switched)
	require.Len(t, s.sent, 1)
	assert.True(t, strings.HasPrefix(s.sent[0], "127.0.0.1:"))
	assert.Equal(t, before+1, stats.BreakerRefusals.Load())

	// The stable breakers took the stable outcomes: both closed and admitting.
	for _, a := range []string{"127.0.0.1:1", "127.0.0.1:2"} {
		p, err := stable.Breakers.Allow(a)
		require.NoError(t, err, a)
		p.Done(breaker.Success)
	}
	// No fallback, breaker open: the refusal reaches the caller.
	res, _, _ = run(nil)
	require.ErrorIs(t, res.Err, breaker.ErrOpen)
}
