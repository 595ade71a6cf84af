package redis_test

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/redis"
)

func ExampleNew() {
	// Each instance of a service makes its own client and limiter on the shared Redis. Here
	// nothing listens at the address: Redis is down, and the limiter decides locally.
	client := goredis.NewClient(&goredis.Options{
		Addr:                  "127.0.0.1:1",
		ContextTimeoutEnabled: true, // required: Config.Timeout bounds each call through it
	})
	defer client.Close()
	lim, err := redis.New(client, redis.Config{
		Default: ratelimit.Quota{Rate: 1, Burst: 4}, // for all instances together
		// Two instances: while Redis is down, each admits half of each quota on its own.
		FallbackShare: 0.5,
	})
	if err != nil {
		panic(err)
	}
	for range 3 {
		d, err := lim.Take(context.Background(), "client-a")
		fmt.Printf("allowed %t, degraded %t, limit %d, err %v\n", d.Allowed, d.Degraded, d.Limit, err)
	}
	// Output:
	// allowed true, degraded true, limit 2, err <nil>
	// allowed true, degraded true, limit 2, err <nil>
	// allowed false, degraded true, limit 2, err <nil>
}
