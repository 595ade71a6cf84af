package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig configures a [Redis] limiter. The zero value of each field
// means its default; Default must be set.
type RedisConfig struct {
	// Default is the global quota of every key without an override: the
	// rate all instances together admit. Required. Redis keeps time in
	// microseconds, so a finite Rate is capped at 1,000,000/s.
	Default Quota `json:"default" yaml:"default"`
	// Overrides gives chosen keys their own global quota. Copied by NewRedis.
	Overrides map[string]Quota `json:"overrides" yaml:"overrides"`
	// Prefix starts every Redis key. Default "proxyless:ratelimit:".
	Prefix string `json:"prefix" yaml:"prefix"`
	// Timeout bounds each Redis call; past it the request is decided
	// locally. Default 50 ms.
	Timeout time.Duration `json:"timeout" yaml:"timeout"`
	// ProbeInterval is how often, at most, one request tries Redis again
	// while it is considered down. Default 1 s.
	ProbeInterval time.Duration `json:"probe_interval" yaml:"probe_interval"`
	// FallbackShare is the part of each quota (rate and burst) this instance
	// admits on its own while Redis is down, in (0, 1]: 1/N for N instances
	// keeps the total at the global rate. Default 1.
	FallbackShare float64 `json:"fallback_share" yaml:"fallback_share"`
	// FallbackMaxKeys bounds the keys of the local fallback. Default
	// DefaultMaxKeys.
	FallbackMaxKeys int `json:"fallback_max_keys" yaml:"fallback_max_keys"`
}

// redisQuota is a quota with its script arguments formatted once.
type redisQuota struct {
	gcra
	interval, tau string // µs
}

func newRedisQuota(g gcra) redisQuota {
	iv := max(1, (g.interval+500)/1000)
	return redisQuota{gcra: g, interval: strconv.FormatInt(iv, 10), tau: strconv.FormatInt(iv*int64(g.burst), 10)}
}

// Defaults of RedisConfig.
const (
	DefaultRedisPrefix        = "proxyless:ratelimit:"
	DefaultRedisTimeout       = 50 * time.Millisecond
	DefaultRedisProbeInterval = time.Second
)

// Redis is a per-key limiter whose buckets live in Redis, so that every
// instance sharing the Redis shares the quota. Each check is one atomic Lua
// script (GCRA, the bucket as a single timestamp under a key that expires
// once the bucket is full again); the clock is Redis's own, so instance
// clocks need not agree.
//
// When a call fails or outlasts RedisConfig.Timeout the request is decided
// by a local [Keyed] limiter holding FallbackShare of each quota, and Redis
// is left alone except for one probe per ProbeInterval until it answers
// again. No request waits on Redis longer than Timeout.
//
// Create it with [NewRedis]; the zero value is not usable. It is safe for
// concurrent use. It starts no goroutines and needs no cleanup; closing the
// Redis client stays the caller's job.
type Redis struct {
	client    redis.UniversalClient  // immutable
	script    *redis.Script          // immutable
	prefix    string                 // immutable
	def       redisQuota             // immutable
	overrides map[string]*redisQuota // immutable
	timeout   time.Duration          // immutable
	probe     time.Duration          // immutable
	fallback  *Keyed                 // immutable pointer
	base      time.Time              // immutable; origin of downUntil

	// downUntil is 0 while Redis answers; otherwise the time (ns since base)
	// before which requests skip Redis and decide locally.
	downUntil atomic.Int64
}

var _ Limiter = (*Redis)(nil)

// gcraScript is GCRA on one key, in microseconds of Redis's clock.
// KEYS[1]: bucket key. ARGV: interval (µs per event), tau (interval ×
// burst, µs), cost (events). Returns {allowed, remaining, retry µs, reset
// µs, now µs}. Numbers passed to redis.call are formatted with %d: Lua's
// default %.14g would round a microsecond timestamp.
const gcraScript = `
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local nexttat = tat + interval * cost
local allowat = nexttat - tau
if allowat > now then
  return {0, math.floor((now + tau - tat) / interval), allowat - now, tat - now, now}
end
redis.call('SET', KEYS[1], string.format('%d', nexttat), 'PX', string.format('%d', math.ceil((nexttat - now) / 1000)))
return {1, math.floor((now + tau - nexttat) / interval), 0, nexttat - now, now}
`

// NewRedis validates cfg and returns a limiter on client. It does not
// contact Redis. The client must bound calls by their context
// (Options.ContextTimeoutEnabled); for *redis.Client, *redis.ClusterClient
// and *redis.Ring this is checked.
func NewRedis(client redis.UniversalClient, cfg RedisConfig) (*Redis, error) {
	if client == nil {
		return nil, errors.New("ratelimit: redis client is nil")
	}
	ctxTimeouts := true
	switch c := client.(type) {
	case *redis.Client:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	}
	if !ctxTimeouts {
		return nil, errors.New("ratelimit: redis client Options.ContextTimeoutEnabled is false; RedisConfig.Timeout could not bound a call to a hung Redis")
	}
	def, err := cfg.Default.compile("Default")
	if err != nil {
		return nil, err
	}
	if def.kind == quotaDenyAll && len(cfg.Overrides) == 0 && cfg.Default == (Quota{}) {
		return nil, errors.New("ratelimit: Default quota is required (Rate 0 and Burst 0 would deny every key)")
	}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("ratelimit: Timeout %v is negative", cfg.Timeout)
	case cfg.ProbeInterval < 0:
		return nil, fmt.Errorf("ratelimit: ProbeInterval %v is negative", cfg.ProbeInterval)
	case math.IsNaN(cfg.FallbackShare) || cfg.FallbackShare < 0 || cfg.FallbackShare > 1:
		return nil, fmt.Errorf("ratelimit: FallbackShare %v is outside (0, 1]", cfg.FallbackShare)
	}
	r := &Redis{
		client:    client,
		script:    redis.NewScript(gcraScript),
		prefix:    orDefault(cfg.Prefix, DefaultRedisPrefix),
		def:       newRedisQuota(def),
		overrides: make(map[string]*redisQuota, len(cfg.Overrides)),
		timeout:   orDefault(cfg.Timeout, DefaultRedisTimeout),
		probe:     orDefault(cfg.ProbeInterval, DefaultRedisProbeInterval),
		base:      time.Now(),
	}
	share := orDefault(cfg.FallbackShare, 1)
	fb := KeyedConfig{
		Default:   scaleQuota(cfg.Default, share),
		Overrides: make(map[string]Quota, len(cfg.Overrides)),
		MaxKeys:   cfg.FallbackMaxKeys,
	}
	for key, q := range cfg.Overrides {
		g, err := q.compile(fmt.Sprintf("Overrides[%q]", key))
		if err != nil {
			return nil, err
		}
		rq := newRedisQuota(g)
		r.overrides[key] = &rq
		fb.Overrides[key] = scaleQuota(q, share)
	}
	if fb.MaxKeys < 0 {
		return nil, fmt.Errorf("ratelimit: FallbackMaxKeys %d is negative", fb.MaxKeys)
	}
	if r.fallback, err = NewKeyed(fb); err != nil {
		return nil, fmt.Errorf("ratelimit: fallback: %w", err)
	}
	return r, nil
}

// orDefault returns v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// scaleQuota is q with rate and burst multiplied by share; a finite burst
// stays at least 1.
func scaleQuota(q Quota, share float64) Quota {
	if q.Rate == 0 || math.IsInf(q.Rate, 1) || share == 1 {
		return q
	}
	burst := q.Burst
	if burst == 0 {
		burst = int(math.Min(math.Ceil(q.Rate), math.MaxInt32))
	}
	return Quota{Rate: q.Rate * share, Burst: max(1, int(math.Floor(float64(burst)*share+1e-9)))}
}

// Allow reports whether one event for key may happen now.
func (r *Redis) Allow(ctx context.Context, key string) bool {
	d, err := r.Take(ctx, key)
	return err == nil && d.Allowed
}

// Take admits or refuses one event for key and reports the key's quota
// state. Redis failures never surface: the local fallback decides and
// Decision.Degraded is set. The only error is ctx.Err() when the caller's
// context ends first; a done context takes nothing.
func (r *Redis) Take(ctx context.Context, key string) (Decision, error) {
	d, _, err := r.take(ctx, key, 1)
	return d, err
}

// TakeN is [Redis.Take] for n events at once.
func (r *Redis) TakeN(ctx context.Context, key string, n int) (Decision, error) {
	if n < 0 {
		return Decision{}, fmt.Errorf("ratelimit: TakeN n %d is negative", n)
	}
	d, _, err := r.take(ctx, key, n)
	return d, err
}

// take also returns Redis's clock (µs) for tests; 0 when Redis did not decide.
func (r *Redis) take(ctx context.Context, key string, n int) (Decision, int64, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, 0, err
	}
	q := &r.def
	if len(r.overrides) != 0 {
		if o, ok := r.overrides[key]; ok {
			q = o
		}
	}
	if q.kind != quotaFinite {
		return q.take(nil, 0, n), 0, nil
	}
	if n > q.burst {
		return Decision{Limit: q.burst}, 0, nil // never admitted; Redis need not know
	}
	now := int64(time.Since(r.base))
	if !r.tryRedis(now) {
		return r.degraded(key, n), 0, nil
	}

	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	res, err := r.script.Run(cctx, r.client, []string{r.prefix + key}, q.interval, q.tau, n).Int64Slice()
	cancel()
	if err == nil && len(res) != 5 {
		err = fmt.Errorf("ratelimit: redis script returned %d values, want 5", len(res))
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return Decision{}, 0, cerr // the caller gave up; not Redis's fault
		}
		r.downUntil.Store(int64(time.Since(r.base) + r.probe))
		return r.degraded(key, n), 0, nil
	}
	if r.downUntil.Load() != 0 {
		r.downUntil.Store(0)
	}
	return Decision{
		Allowed:    res[0] == 1,
		Limit:      q.burst,
		Remaining:  int(res[1]),
		RetryAfter: time.Duration(res[2]) * time.Microsecond,
		Reset:      time.Duration(res[3]) * time.Microsecond,
	}, res[4], nil
}

// tryRedis reports whether this request should ask Redis: always while it
// is up; while it is down, only the one request that claims the next probe.
func (r *Redis) tryRedis(now int64) bool {
	until := r.downUntil.Load()
	if until == 0 {
		return true
	}
	if now < until {
		return false
	}
	return r.downUntil.CompareAndSwap(until, now+int64(r.probe))
}

func (r *Redis) degraded(key string, n int) Decision {
	d := r.fallback.take(key, int64(time.Since(r.fallback.base)), n)
	d.Degraded = true
	return d
}

// Limiter is a per-key limiter, local or distributed. [Keyed] and [Redis]
// implement it.
type Limiter interface {
	// Take admits or refuses one event for key. It returns ctx.Err() if ctx
	// is done before a decision, and then takes nothing.
	Take(ctx context.Context, key string) (Decision, error)
}

var _ Limiter = (*Keyed)(nil)
