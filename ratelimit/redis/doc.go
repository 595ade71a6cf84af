// Package redis is a per-key rate limiter whose buckets live in Redis, so that every instance
// of a service sharing the Redis shares each key's quota: a global limit.
//
// Each check is one atomic Lua script (GCRA, the bucket as a single timestamp under a key that
// expires once the bucket is full again); the clock is Redis's own, so instance clocks need not
// agree. When Redis is slow or down, requests are decided by a local ratelimit.Keyed holding a
// share of each quota, and Redis is probed again now and then: no request waits on Redis
// longer than [Config.Timeout].
//
// A [Limiter] implements ratelimit.Limiter, so the middleware package's server rate limits
// take it as they take a ratelimit.Keyed:
//
//	lim, err := redis.New(client, redis.Config{Default: ratelimit.Quota{Rate: 100, Burst: 10}})
//	h, err := middleware.NewHandler(app, middleware.WithServerRateLimit(lim, keyFunc))
//
// It is a package of its own so that programs using package ratelimit alone do not build the
// Redis client (github.com/redis/go-redis/v9).
package redis
