package engine_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/outcome"
)

// With AttemptTimeoutSendOnly, the attempt timeout bounds Send: a Send that answers in time
// leaves its attempt's context alive past the timeout (until Release), one that does not is a
// timeout, said as such.
func TestAttemptTimeoutSendOnly(t *testing.T) {
	const to = 50 * time.Millisecond
	pol := engine.Policy{Retry: retry, AttemptTimeout: to, AttemptTimeoutSendOnly: true}

	s := &scriptSender{sends: []func(*engine.Attempt) (string, error){
		func(a *engine.Attempt) (string, error) { return "ok", nil },
	}}
	c := call(s, pol)
	res := engine.Run(context.Background(), c)
	require.NoError(t, res.Err)
	ctx := s.ctxs[0]
	_, has := ctx.Deadline()
	assert.False(t, has, "the attempt's context has no deadline of its own")
	time.Sleep(3 * to)
	assert.NoError(t, ctx.Err(), "the attempt timeout cut a result that had arrived")
	require.True(t, res.NeedsRelease())
	res.Release()
	assert.ErrorIs(t, ctx.Err(), context.Canceled, "Release ends the attempt's context")

	slow := func(a *engine.Attempt) (string, error) {
		<-a.Context().Done()
		return "", a.Context().Err()
	}
	s = &scriptSender{sends: []func(*engine.Attempt) (string, error){slow, slow, slow}}
	c = call(s, pol)
	res = engine.Run(context.Background(), c)
	defer res.Release()
	var te *engine.AttemptTimeoutError
	require.ErrorAs(t, res.Err, &te)
	assert.ErrorIs(t, res.Err, context.DeadlineExceeded)
	assert.False(t, errors.Is(res.Err, context.Canceled))
	var ne net.Error
	require.ErrorAs(t, res.Err, &ne)
	assert.True(t, ne.Timeout())
	assert.Contains(t, res.Err.Error(), "50ms")
	assert.Equal(t, outcome.LocalTimeout, res.Outcome.Kind, "classified as the attempt's timeout")
}

// Cancellable gives an attempt a context of its own without any timeout, which Release ends.
func TestCancellableAttempt(t *testing.T) {
	s := &scriptSender{sends: []func(*engine.Attempt) (string, error){
		func(a *engine.Attempt) (string, error) { return "ok", nil },
	}}
	c := call(s, engine.Policy{Retry: retry, Cancellable: true})
	res := engine.Run(context.Background(), c)
	require.NoError(t, res.Err)
	require.True(t, res.NeedsRelease())
	res.Release()
	assert.Error(t, s.ctxs[0].Err())
}
