package engine_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/outcome"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scriptSender is a Sender whose attempts do what the test says, each in its turn. It is a
// stand-in for a transport adapter, for the engine's own logic (the adapters are tested over
// real loopback servers in package middleware); it picks no endpoint (Dest is nil, as for
// gRPC, whose picker picks).
type scriptSender struct {
	mu        sync.Mutex
	sends     []func(a *engine.Attempt) (string, error)
	discarded []int
	ctxs      []context.Context
}

func (s *scriptSender) Send(a *engine.Attempt) (string, error) {
	s.mu.Lock()
	s.ctxs = append(s.ctxs, a.Context())
	f := s.sends[a.N]
	s.mu.Unlock()
	return f(a)
}

func (s *scriptSender) Classify(a *engine.Attempt, v string, err error, cause outcome.Cause) (outcome.Outcome, bool) {
	if err != nil {
		o := outcome.FromError(err, cause)
		return o, o.Kind == outcome.GatewayFailure
	}
	if v == "503" {
		return outcome.Outcome{Kind: outcome.GatewayFailure}, true
	}
	return outcome.Outcome{}, false
}

func (s *scriptSender) Discard(a *engine.Attempt, _ string, _ error) {
	s.mu.Lock()
	s.discarded = append(s.discarded, a.N)
	s.mu.Unlock()
}

func (s *scriptSender) Detach(_ *engine.Attempt, v string) (string, bool) { return v, true }

func call(s *scriptSender, p engine.Policy) *engine.Call[string] {
	return &engine.Call[string]{Policy: &p, Budget: engine.NewBudget(1, 1000), Stats: &engine.Stats{}, Sender: s, Hedgeable: true}
}

var retry = engine.Retry{MaxRetries: 2, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, MaxRetryAfter: time.Second}

// A hedge that has not yet reached its endpoint is cancelled when another attempt wins: its
// context is done by the time Run returns, and its result is discarded.
func TestHedgeCancelledBeforeItPicks(t *testing.T) {
	hedgeStarted := make(chan struct{})
	var hedgeReturned atomic.Bool
	s := &scriptSender{sends: []func(*engine.Attempt) (string, error){
		func(a *engine.Attempt) (string, error) { // the first attempt answers once the hedge is out
			<-hedgeStarted
			return "ok-first", nil
		},
		func(a *engine.Attempt) (string, error) { // the hedge, still "picking" until cancelled
			close(hedgeStarted)
			<-a.Context().Done()
			defer hedgeReturned.Store(true)
			return "", a.Context().Err()
		},
	}}
	c := call(s, engine.Policy{Retry: retry, Hedge: engine.Hedge{Enabled: true, Delay: time.Millisecond, MaxHedges: 1}})
	res := engine.Run(context.Background(), c)
	defer res.Release()
	require.NoError(t, res.Err)
	assert.Equal(t, "ok-first", res.Value)
	s.mu.Lock()
	hedgeCtx := s.ctxs[1]
	s.mu.Unlock()
	assert.ErrorIs(t, hedgeCtx.Err(), context.Canceled, "the hedge was cancelled when the first attempt won")
	// Run waited for the hedge's Send to return: nothing of the call runs after it.
	assert.True(t, hedgeReturned.Load(), "a hedge was still sending when Run returned")
	assert.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.discarded) == 1 && s.discarded[0] == 1
	}, 5*time.Second, time.Millisecond, "the hedge's result was discarded")
	assert.EqualValues(t, 1, c.Stats.Hedges.Load())
	assert.Zero(t, c.Stats.HedgeWins.Load())
}

// A panic in a hedge's Send reaches the caller's goroutine; the other attempts are cancelled.
func TestHedgePanicReachesCaller(t *testing.T) {
	firstDone := make(chan struct{})
	s := &scriptSender{sends: []func(*engine.Attempt) (string, error){
		func(a *engine.Attempt) (string, error) {
			<-a.Context().Done()
			close(firstDone)
			return "", a.Context().Err()
		},
		func(a *engine.Attempt) (string, error) { panic("hedge exploded") },
	}}
	c := call(s, engine.Policy{Retry: retry, Hedge: engine.Hedge{Enabled: true, Delay: time.Millisecond, MaxHedges: 1}})
	assert.PanicsWithValue(t, "hedge exploded", func() { engine.Run(context.Background(), c) })
	select {
	case <-firstDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the first attempt was not cancelled")
	}
}

// A retried failure is returned, not the refusal, when the retry is refused locally.
func TestRetryKeepsTheFailure(t *testing.T) {
	refused := errors.New("every breaker open")
	s := &scriptSender{sends: []func(*engine.Attempt) (string, error){
		func(*engine.Attempt) (string, error) { return "503", nil },
		func(*engine.Attempt) (string, error) { return "", refused },
	}}
	s2 := &refusingSender{scriptSender: s, refused: refused}
	c := &engine.Call[string]{Policy: &engine.Policy{Retry: retry}, Budget: engine.NewBudget(1, 1000), Stats: &engine.Stats{}, Sender: s2}
	res := engine.Run(context.Background(), c)
	defer res.Release()
	require.NoError(t, res.Err)
	assert.Equal(t, "503", res.Value, "the caller gets the failure the refused retry would have replaced")
	assert.Equal(t, []int{1}, s.discarded, "the refused retry was discarded, not the failure the caller gets")
}

// refusingSender classifies its refused error as a local refusal.
type refusingSender struct {
	*scriptSender
	refused error
}

func (s *refusingSender) Classify(a *engine.Attempt, v string, err error, cause outcome.Cause) (outcome.Outcome, bool) {
	if errors.Is(err, s.refused) {
		return outcome.Outcome{Kind: outcome.LocalRefusal}, false
	}
	return s.scriptSender.Classify(a, v, err, cause)
}

// The overall timeout ends the call; a result that comes later is discarded.
func TestOverallTimeout(t *testing.T) {
	s := &scriptSender{sends: []func(*engine.Attempt) (string, error){
		func(a *engine.Attempt) (string, error) { <-a.Context().Done(); return "", a.Context().Err() },
	}}
	c := call(s, engine.Policy{Retry: retry, Timeout: 20 * time.Millisecond})
	start := time.Now()
	res := engine.Run(context.Background(), c)
	defer res.Release()
	assert.ErrorIs(t, res.Err, context.DeadlineExceeded)
	assert.Equal(t, outcome.LocalTimeout, res.Outcome.Kind)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.EqualValues(t, 0, c.Stats.Retries.Load(), "no time left for a retry")
}
