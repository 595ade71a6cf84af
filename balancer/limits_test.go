package balancer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
)

func ExampleNewLimiter() {
	// A Balancer makes its own from Config.Limits (Balancer.Limiter); NewLimiter makes one
	// apart.
	lone, _ := balancer.NewLimiter(balancer.Limits{MaxRequests: 1})
	fmt.Println(lone.AcquireRequest(), lone.AcquireRequest() != nil)

	b, _ := balancer.New(balancer.Config{Limits: balancer.Limits{MaxRequests: 2}})
	defer b.Close()
	lim := b.Limiter()
	fmt.Println(lim.AcquireRequest(), lim.AcquireRequest())
	err := lim.AcquireRequest()
	fmt.Println(err, errors.Is(err, balancer.ErrMaxRequests), errors.Is(err, balancer.ErrOverflow))
	lim.ReleaseRequest()
	fmt.Println(lim.AcquireRequest())
	// Output:
	// <nil> true
	// <nil> <nil>
	// balancer: destination's maximum requests reached true true
	// <nil>
}

// Connection slots: at the bound, requests wait (up to MaxPendingRequests) and are handed
// released slots first come, first served; one that gives up leaves the queue.
func TestLimiterConnections(t *testing.T) {
	lim, err := balancer.NewLimiter(balancer.Limits{MaxConnections: 1, MaxPendingRequests: 2})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, lim.AcquireConn(ctx, nil))

	got := make(chan int, 2)
	stop1 := make(chan struct{})
	go func() {
		if lim.AcquireConn(ctx, stop1) == nil {
			got <- 1
		}
	}()
	eventually(t, "first waits", func() bool { return lim.InUse(balancer.LimitPendingRequests) == 1 })
	go func() {
		if lim.AcquireConn(ctx, nil) == nil {
			got <- 2
		}
	}()
	eventually(t, "second waits", func() bool { return lim.InUse(balancer.LimitPendingRequests) == 2 })
	assert.ErrorIs(t, lim.AcquireConn(ctx, nil), balancer.ErrMaxPendingRequests)

	close(stop1) // the first found a connection elsewhere
	eventually(t, "first left", func() bool { return lim.InUse(balancer.LimitPendingRequests) == 1 })
	lim.ReleaseConn()
	select {
	case n := <-got:
		assert.Equal(t, 2, n)
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request got no slot")
	}
	assert.Equal(t, 1, lim.InUse(balancer.LimitConnections))
	assert.Zero(t, lim.InUse(balancer.LimitPendingRequests))

	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, lim.AcquireConn(cctx, nil), context.DeadlineExceeded)
	lim.ReleaseConn()
	assert.Zero(t, lim.InUse(balancer.LimitConnections))

	none, err := balancer.NewLimiter(balancer.Limits{MaxConnections: 1, MaxPendingRequests: -1})
	require.NoError(t, err)
	require.NoError(t, none.AcquireConn(ctx, nil))
	assert.ErrorIs(t, none.AcquireConn(ctx, nil), balancer.ErrMaxConnections)
}

func TestLimiterRetriesAndNil(t *testing.T) {
	lim, err := balancer.NewLimiter(balancer.Limits{MaxRetries: 1})
	require.NoError(t, err)
	require.NoError(t, lim.AcquireRetry())
	assert.ErrorIs(t, lim.AcquireRetry(), balancer.ErrMaxRetries)
	assert.NotErrorIs(t, lim.AcquireRetry(), balancer.ErrMaxRequests)
	lim.ReleaseRetry()
	require.NoError(t, lim.AcquireRetry())
	require.NoError(t, lim.AcquireRequest(), "no request limit")

	var none *balancer.Limiter
	require.NoError(t, none.AcquireRequest())
	require.NoError(t, none.AcquireConn(context.Background(), nil))
	none.ReleaseConn()
	l, err := balancer.NewLimiter(balancer.Limits{})
	require.NoError(t, err)
	assert.Nil(t, l)
	_, err = balancer.New(balancer.Config{Limits: balancer.Limits{MaxConnections: -1}})
	assert.ErrorContains(t, err, "Limits.MaxConnections")
}
