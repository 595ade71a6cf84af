package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/internal/quota"
)

// Config configures a [Limiter]. The zero value of each field means its default; Default must
// be set.
type Config struct {
	// Default is the global quota of every key without an override: the
	// rate all instances together admit. Required. Redis keeps time in
	// microseconds, so a finite Rate is capped at 1,000,000/s.
	Default ratelimit.Quota `json:"default,omitempty" yaml:"default,omitempty"`
	// Overrides gives chosen keys their own global quota. Copied by New.
	Overrides map[string]ratelimit.Quota `json:"overrides,omitempty" yaml:"overrides,omitempty"`
	// Prefix starts every Redis key. Default "proxyless:ratelimit:".
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	// Timeout bounds each Redis call; past it the request is decided
	// locally. Default 50 ms.
	Timeout time.Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// ProbeInterval is how often, at most, one request tries Redis again
	// while it is considered down. Default 1 s.
	ProbeInterval time.Duration `json:"probeInterval,omitempty" yaml:"probeInterval,omitempty"`
	// FallbackShare is the part of each quota (rate and burst) this instance
	// admits on its own while Redis is down, in (0, 1]: 1/N for N instances
	// keeps the total at the global rate. Default 1.
	FallbackShare float64 `json:"fallbackShare,omitempty" yaml:"fallbackShare,omitempty"`
	// FallbackMaxKeys bounds the keys of the local fallback. Default
	// ratelimit.DefaultMaxKeys.
	FallbackMaxKeys int `json:"fallbackMaxKeys,omitempty" yaml:"fallbackMaxKeys,omitempty"`
}

// Defaults of Config.
const (
	DefaultPrefix        = "proxyless:ratelimit:"
	DefaultTimeout       = 50 * time.Millisecond
	DefaultProbeInterval = time.Second
)

// limit is a quota with its script arguments formatted once.
type limit struct {
	quota.GCRA
	interval, tau string // µs
}

func newLimit(g quota.GCRA) limit {
	iv := max(1, (g.Interval+500)/1000)
	return limit{GCRA: g, interval: strconv.FormatInt(iv, 10), tau: strconv.FormatInt(iv*int64(g.Burst), 10)}
}

// Limiter is a per-key limiter whose buckets live in Redis, so that every
// instance sharing the Redis shares the quota. Each check is one atomic Lua
// script (GCRA, the bucket as a single timestamp under a key that expires
// once the bucket is full again); the clock is Redis's own, so instance
// clocks need not agree.
//
// When a call fails or outlasts Config.Timeout the request is decided by a
// local ratelimit.Keyed limiter holding FallbackShare of each quota, and
// Redis is left alone except for one probe per ProbeInterval until it
// answers again. No request waits on Redis longer than Timeout.
//
// Create it with [New]; the zero value is not usable. It is safe for
// concurrent use. It starts no goroutines and needs no cleanup; closing the
// Redis client stays the caller's job.
type Limiter struct {
	client    goredis.UniversalClient // immutable
	script    *goredis.Script         // immutable
	prefix    string                  // immutable
	def       limit                   // immutable
	overrides map[string]*limit       // immutable
	timeout   time.Duration           // immutable
	probe     time.Duration           // immutable
	fallback  *ratelimit.Keyed        // immutable pointer
	base      time.Time               // immutable; origin of downUntil

	// downUntil is 0 while Redis answers; otherwise the time (ns since base)
	// before which requests skip Redis and decide locally.
	downUntil atomic.Int64
}

var _ ratelimit.Limiter = (*Limiter)(nil)

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

// compile validates q; errors name its fields after field.
func compile(q ratelimit.Quota, field string) (quota.GCRA, error) {
	g, err := quota.Compile(q.Rate, q.Burst, field)
	if err != nil {
		return quota.GCRA{}, fmt.Errorf("redis: %w", err)
	}
	return g, nil
}

// New validates cfg and returns a limiter on client. It does not contact
// Redis. The client must bound calls by their context
// (Options.ContextTimeoutEnabled); for *Client, *ClusterClient and *Ring of
// go-redis this is checked.
func New(client goredis.UniversalClient, cfg Config) (*Limiter, error) {
	if client == nil {
		return nil, errors.New("redis: client is nil")
	}
	ctxTimeouts := true
	switch c := client.(type) {
	case *goredis.Client:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *goredis.ClusterClient:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *goredis.Ring:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	}
	if !ctxTimeouts {
		return nil, errors.New("redis: client Options.ContextTimeoutEnabled is false; Config.Timeout could not bound a call to a hung Redis")
	}
	def, err := compile(cfg.Default, "Default")
	if err != nil {
		return nil, err
	}
	if def.Kind == quota.DenyAll && len(cfg.Overrides) == 0 && cfg.Default == (ratelimit.Quota{}) {
		return nil, errors.New("redis: Default quota is required (Rate 0 and Burst 0 would deny every key)")
	}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("redis: Timeout %v is negative", cfg.Timeout)
	case cfg.ProbeInterval < 0:
		return nil, fmt.Errorf("redis: ProbeInterval %v is negative", cfg.ProbeInterval)
	case math.IsNaN(cfg.FallbackShare) || cfg.FallbackShare < 0 || cfg.FallbackShare > 1:
		return nil, fmt.Errorf("redis: FallbackShare %v is outside (0, 1]", cfg.FallbackShare)
	}
	l := &Limiter{
		client:    client,
		script:    goredis.NewScript(gcraScript),
		prefix:    cmp.Or(cfg.Prefix, DefaultPrefix),
		def:       newLimit(def),
		overrides: make(map[string]*limit, len(cfg.Overrides)),
		timeout:   cmp.Or(cfg.Timeout, DefaultTimeout),
		probe:     cmp.Or(cfg.ProbeInterval, DefaultProbeInterval),
		base:      time.Now(),
	}
	share := cmp.Or(cfg.FallbackShare, 1)
	fb := ratelimit.KeyedConfig{
		Default:   scaleQuota(cfg.Default, share),
		Overrides: make(map[string]ratelimit.Quota, len(cfg.Overrides)),
		MaxKeys:   cfg.FallbackMaxKeys,
	}
	for key, q := range cfg.Overrides {
		g, err := compile(q, fmt.Sprintf("Overrides[%q]", key))
		if err != nil {
			return nil, err
		}
		lim := newLimit(g)
		l.overrides[key] = &lim
		fb.Overrides[key] = scaleQuota(q, share)
	}
	if fb.MaxKeys < 0 {
		return nil, fmt.Errorf("redis: FallbackMaxKeys %d is negative", fb.MaxKeys)
	}
	if l.fallback, err = ratelimit.NewKeyed(fb); err != nil {
		return nil, fmt.Errorf("redis: fallback: %w", err)
	}
	return l, nil
}

// scaleQuota is q with rate and burst multiplied by share; a finite burst
// stays at least 1.
func scaleQuota(q ratelimit.Quota, share float64) ratelimit.Quota {
	if q.Rate == 0 || math.IsInf(q.Rate, 1) || share == 1 {
		return q
	}
	burst := q.Burst
	if burst == 0 {
		burst = int(math.Min(math.Ceil(q.Rate), math.MaxInt32))
	}
	return ratelimit.Quota{Rate: q.Rate * share, Burst: max(1, int(math.Floor(float64(burst)*share+1e-9)))}
}

// Allow reports whether one event for key may happen now.
func (l *Limiter) Allow(ctx context.Context, key string) bool {
	d, err := l.Take(ctx, key)
	return err == nil && d.Allowed
}

// Take admits or refuses one event for key and reports the key's quota
// state. Redis failures never surface: the local fallback decides and
// Decision.Degraded is set. The only error is ctx.Err() when the caller's
// context ends first; a done context takes nothing.
func (l *Limiter) Take(ctx context.Context, key string) (ratelimit.Decision, error) {
	d, _, err := l.take(ctx, key, 1)
	return d, err
}

// TakeN is [Limiter.Take] for n events at once.
func (l *Limiter) TakeN(ctx context.Context, key string, n int) (ratelimit.Decision, error) {
	if n < 0 {
		return ratelimit.Decision{}, fmt.Errorf("redis: TakeN n %d is negative", n)
	}
	d, _, err := l.take(ctx, key, n)
	return d, err
}

// take also returns Redis's clock (µs) for tests; 0 when Redis did not decide.
func (l *Limiter) take(ctx context.Context, key string, n int) (ratelimit.Decision, int64, error) {
	if err := ctx.Err(); err != nil {
		return ratelimit.Decision{}, 0, err
	}
	q := &l.def
	if len(l.overrides) != 0 {
		if o, ok := l.overrides[key]; ok {
			q = o
		}
	}
	switch q.Kind {
	case quota.Unlimited:
		return ratelimit.Decision{Allowed: true, Limit: q.Burst, Remaining: q.Burst}, 0, nil
	case quota.DenyAll:
		return ratelimit.Decision{}, 0, nil
	}
	if n > q.Burst {
		return ratelimit.Decision{Limit: q.Burst}, 0, nil // never admitted; Redis need not know
	}
	now := int64(time.Since(l.base))
	if !l.tryRedis(now) {
		return l.degraded(key, n), 0, nil
	}

	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	res, err := l.script.Run(cctx, l.client, []string{l.prefix + ratelimit.BoundKey(key)}, q.interval, q.tau, n).Int64Slice()
	cancel()
	if err == nil && len(res) != 5 {
		err = fmt.Errorf("redis: script returned %d values, want 5", len(res))
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return ratelimit.Decision{}, 0, cerr // the caller gave up; not Redis's fault
		}
		l.downUntil.Store(int64(time.Since(l.base) + l.probe))
		if cc, ok := l.client.(*goredis.ClusterClient); ok {
			// After a failover the client keeps sending the slot to the dead
			// master until it reloads the slot map; ask for that now, once
			// per failed call (at most one per ProbeInterval while down).
			cc.ReloadState(ctx)
		}
		return l.degraded(key, n), 0, nil
	}
	if l.downUntil.Load() != 0 {
		l.downUntil.Store(0)
	}
	return ratelimit.Decision{
		Allowed:    res[0] == 1,
		Limit:      q.Burst,
		Remaining:  int(res[1]),
		RetryAfter: time.Duration(res[2]) * time.Microsecond,
		Reset:      time.Duration(res[3]) * time.Microsecond,
	}, res[4], nil
}

// tryRedis reports whether this request should ask Redis: always while it
// is up; while it is down, only the one request that claims the next probe.
func (l *Limiter) tryRedis(now int64) bool {
	until := l.downUntil.Load()
	if until == 0 {
		return true
	}
	if now < until {
		return false
	}
	return l.downUntil.CompareAndSwap(until, now+int64(l.probe))
}

func (l *Limiter) degraded(key string, n int) ratelimit.Decision {
	d := l.fallback.TakeAt(key, time.Now(), n)
	d.Degraded = true
	return d
}
