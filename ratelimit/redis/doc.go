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
// # Redis Cluster and Sentinel
//
// [New] takes go-redis's universal client, so one configuration serves a single node, a
// Redis Cluster or a Sentinel group: goredis.NewUniversalClient with Addrs alone (one node),
// with several Addrs (a cluster), or with MasterName and the Sentinels' Addrs. Each key's
// state is one Redis key, so it always lives in one hash slot and the script never crosses
// slots.
//
// When the master holding a key fails, calls for it fail or time out and the local fallback
// decides; after the failover (Redis's own, about cluster-node-timeout or
// down-after-milliseconds plus an election) the next probe, at most ProbeInterval later,
// hands the key back to Redis. A cluster client is asked to reload its slot map on every
// failed call, so it finds the promoted replica without waiting for a redirect. The budget of
// a failover: while Redis is away each instance admits its FallbackShare of each quota (set
// it to 1/N for N instances and the total stays at the rate); at the hand-back the new master
// may hold a state older than the last decisions (replication is asynchronous) and admit up
// to one more burst per instance. Measured on loopback with three instances, 100/s and a
// burst of 10, a killed master cost at most 5 % over the rate across 14 s, on a Redis Cluster
// and on a Sentinel group alike (TestGlobalLimitRedisClusterFailover,
// TestGlobalLimitSentinelFailover).
//
// A live slot migration (redis-cli --cluster reshard) costs nothing: go-redis follows the
// ASK and MOVED redirects, and no decision falls back (TestGlobalLimitRedisClusterMigration).
//
// The limiter keeps one "Redis is down" state: while any call fails, requests for every key
// are decided locally until a probe succeeds, so with a cluster a single failed shard also
// moves the other shards' keys to the fallback for up to ProbeInterval at a time.
//
// It is a package of its own so that programs using package ratelimit alone do not build the
// Redis client (github.com/redis/go-redis/v9).
package redis
