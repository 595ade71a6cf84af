package overload_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
)

func ExampleNewBulkhead() {
	// At most two calls in flight; a third is refused at once (maxWait 0).
	b, err := overload.NewBulkhead(2, 0)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	release1, _ := b.Acquire(ctx)
	release2, _ := b.Acquire(ctx)
	_, err = b.Acquire(ctx)
	fmt.Println("third call:", errors.Is(err, ratelimit.ErrLimited))

	release1(overload.Success) // a call ends: its slot is free again
	release3, err := b.Acquire(ctx)
	fmt.Println("after a release:", err)
	release2(overload.Success)
	release3(overload.Dropped) // the caller gave up: not counted
	// Output:
	// third call: true
	// after a release: <nil>
}

func ExampleNewAdaptive() {
	a, err := overload.NewAdaptive(overload.AdaptiveConfig{MinLimit: 1, MaxLimit: 50, InitialLimit: 2})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	fmt.Println("limit", a.Limit())
	release1, _ := a.Acquire(ctx)
	release2, _ := a.Acquire(ctx)
	fmt.Println("in flight", a.Inflight())
	_, err = a.Acquire(ctx) // over the limit, and MaxWait is 0
	fmt.Println("third call:", errors.Is(err, ratelimit.ErrLimited))
	release1(overload.Success) // the limit follows the latencies reported here
	release2(overload.Success)
	fmt.Println("in flight", a.Inflight())
	// Output:
	// limit 2
	// in flight 2
	// third call: true
	// in flight 0
}

func ExampleNewThrottler() {
	th, err := overload.NewThrottler(overload.ThrottlerConfig{
		FailureRateThreshold: 0.1, // start refusing above 10 % failures
		MinCalls:             10,
		Period:               time.Minute,
		MaxRejectionRate:     0.5, // always let half of the calls probe the callee
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	fmt.Println("rejecting before failures:", th.RejectionRate() > 0)
	// The callee is overloaded: every call fails (a 503, RESOURCE_EXHAUSTED).
	for range 20 {
		release, err := th.Acquire(ctx)
		if err != nil {
			continue // refused locally: the callee never saw it
		}
		release(overload.Failure)
	}
	r := th.RejectionRate()
	fmt.Println("rejecting after failures:", r > 0, "at most half:", r <= 0.5)
	// Output:
	// rejecting before failures: false
	// rejecting after failures: true at most half: true
}
