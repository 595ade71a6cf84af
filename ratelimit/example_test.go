package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/proxyless/proxyless/ratelimit"
)

func ExampleNewLocal() {
	lim, err := ratelimit.NewLocal(10, 2) // 10 per second, 2 at once
	if err != nil {
		panic(err)
	}
	for i := range 3 {
		fmt.Println(i, lim.Allow())
	}
	// Output:
	// 0 true
	// 1 true
	// 2 false
}

func ExampleLocal_Wait() {
	lim, _ := ratelimit.NewLocal(1, 1) // one per second
	lim.Allow()

	// The next token is a second away: a 100 ms budget is refused at once.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := lim.Wait(ctx)
	var le *ratelimit.LimitedError
	fmt.Println(errors.Is(err, ratelimit.ErrLimited), errors.As(err, &le) && le.RetryAfter > 900*time.Millisecond)
	// Output: true true
}

func ExampleNewKeyed() {
	// A tier table: one customer bought 1,000/s, one is blocked, the rest get 10/s.
	lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{
		Default: ratelimit.Quota{Rate: 10, Burst: 10},
		Overrides: map[string]ratelimit.Quota{
			"key-gold":    {Rate: 1000, Burst: 1000},
			"key-revoked": {},
		},
		MaxKeys: 100_000,
	})
	if err != nil {
		panic(err)
	}
	now := time.Now()
	for _, key := range []string{"key-gold", "key-free", "key-revoked"} {
		admitted := 0
		for range 2000 {
			if lim.AllowAt(key, now) {
				admitted++
			}
		}
		fmt.Printf("%s: %d of 2000 at once\n", key, admitted)
	}
	d := lim.TakeAt("key-free", now, 1)
	fmt.Printf("refused: RateLimit-Limit %d, RateLimit-Remaining %d, Retry-After %v\n", d.Limit, d.Remaining, d.RetryAfter)
	// Output:
	// key-gold: 1000 of 2000 at once
	// key-free: 10 of 2000 at once
	// key-revoked: 0 of 2000 at once
	// refused: RateLimit-Limit 10, RateLimit-Remaining 0, Retry-After 100ms
}
