package middleware

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// RetryPolicy says which failed attempts are tried again, how soon, and how many retries the
// transport may add to the load. It is a plain struct that loads from YAML or JSON; the zero
// value of each field means the default in its comment.
type RetryPolicy struct {
	// Disable turns retries off. Default false.
	Disable bool `json:"disable,omitempty" yaml:"disable,omitempty"`
	// MaxRetries is how many times one request may be retried. Default 2.
	MaxRetries int `json:"maxRetries,omitempty" yaml:"maxRetries,omitempty"`
	// RetryNonIdempotent also retries methods that are not idempotent (POST, PATCH). Default
	// false: only GET, HEAD, OPTIONS, TRACE, PUT and DELETE, or requests that carry an
	// Idempotency-Key header, are retried.
	RetryNonIdempotent bool `json:"retryNonIdempotent,omitempty" yaml:"retryNonIdempotent,omitempty"`
	// Statuses are the response codes that are retried. Default 502, 503, 504.
	Statuses []int `json:"statuses,omitempty" yaml:"statuses,omitempty"`
	// BackoffBase and BackoffMax bound the exponential backoff with full jitter between
	// attempts. Defaults 25 ms and 250 ms.
	BackoffBase time.Duration `json:"backoffBase,omitempty" yaml:"backoffBase,omitempty"`
	BackoffMax  time.Duration `json:"backoffMax,omitempty" yaml:"backoffMax,omitempty"`
	// MaxRetryAfter caps the wait a Retry-After header may ask for; an answer asking more is
	// returned to the caller rather than retried. Default 2 s.
	MaxRetryAfter time.Duration `json:"maxRetryAfter,omitempty" yaml:"maxRetryAfter,omitempty"`
	// BudgetRatio is the share of requests that retries (and hedges) may add, at most 1.
	// Default 0.2; a negative value gives retries no share, leaving only MinRetriesPerSecond.
	BudgetRatio float64 `json:"budgetRatio,omitempty" yaml:"budgetRatio,omitempty"`
	// MinRetriesPerSecond is allowed whatever the ratio, so that a quiet client can still
	// retry. Default 10; negative means none.
	MinRetriesPerSecond float64 `json:"minRetriesPerSecond,omitempty" yaml:"minRetriesPerSecond,omitempty"`
}

const (
	defaultMaxRetries     = 2
	defaultBackoffBase    = 25 * time.Millisecond
	defaultBackoffMax     = 250 * time.Millisecond
	defaultMaxRetryAfter  = 2 * time.Second
	defaultBudgetRatio    = 0.2
	defaultMinRetriesPerS = 10
	budgetCapRequests     = 1000 // the budget saves up for at most this many requests' worth
	defaultMaxBufferBody  = 64 << 10
	maxDrainBody          = 256 << 10
	idempotencyKeyHeader  = "Idempotency-Key"
	retryAfterHeader      = "Retry-After"
	budgetMilliPerRetry   = 1000
)

func (p *RetryPolicy) normalize() error {
	switch {
	case p.MaxRetries < 0:
		return fmt.Errorf("middleware: RetryPolicy.MaxRetries must not be negative, got %d", p.MaxRetries)
	case p.BackoffBase < 0:
		return fmt.Errorf("middleware: RetryPolicy.BackoffBase must not be negative, got %v", p.BackoffBase)
	case p.BackoffMax < 0:
		return fmt.Errorf("middleware: RetryPolicy.BackoffMax must not be negative, got %v", p.BackoffMax)
	case p.MaxRetryAfter < 0:
		return fmt.Errorf("middleware: RetryPolicy.MaxRetryAfter must not be negative, got %v", p.MaxRetryAfter)
	case p.BudgetRatio > 1 || math.IsNaN(p.BudgetRatio):
		return fmt.Errorf("middleware: RetryPolicy.BudgetRatio must be at most 1, got %v", p.BudgetRatio)
	case math.IsNaN(p.MinRetriesPerSecond) || math.IsInf(p.MinRetriesPerSecond, 0):
		return fmt.Errorf("middleware: RetryPolicy.MinRetriesPerSecond must be finite, got %v", p.MinRetriesPerSecond)
	}
	for _, s := range p.Statuses {
		if s < 100 || s > 599 {
			return fmt.Errorf("middleware: RetryPolicy.Statuses: %d is not an HTTP status", s)
		}
	}
	if p.MaxRetries == 0 {
		p.MaxRetries = defaultMaxRetries
	}
	if len(p.Statuses) == 0 {
		p.Statuses = []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
	}
	if p.BackoffBase == 0 {
		p.BackoffBase = defaultBackoffBase
	}
	if p.BackoffMax == 0 {
		p.BackoffMax = max(defaultBackoffMax, p.BackoffBase)
	}
	if p.BackoffMax < p.BackoffBase {
		return fmt.Errorf("middleware: RetryPolicy.BackoffMax (%v) must not be below BackoffBase (%v)", p.BackoffMax, p.BackoffBase)
	}
	if p.MaxRetryAfter == 0 {
		p.MaxRetryAfter = defaultMaxRetryAfter
	}
	if p.BudgetRatio == 0 {
		p.BudgetRatio = defaultBudgetRatio
	}
	if p.MinRetriesPerSecond == 0 {
		p.MinRetriesPerSecond = defaultMinRetriesPerS
	}
	return nil
}

func (p *RetryPolicy) retryableStatus(code int) bool { return slices.Contains(p.Statuses, code) }

// idempotent reports whether req may be sent more than once under p.
func (p *RetryPolicy) idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	if p.RetryNonIdempotent {
		return true
	}
	// req.Header.Get without canonicalising a key that is canonical already.
	v := req.Header[idempotencyKeyHeader]
	return len(v) > 0 && v[0] != ""
}

// budget limits retries and hedges to a share of requests plus a floor per second, so that an
// outage cannot multiply the load. Each request deposits ratio of a token, each retry takes one;
// when the deposits run dry, the floor's token bucket decides.
//
// A deposit is one atomic increment of a request count (also the transport's Stats.Requests),
// the only write on the request path, on one of several cache lines so that goroutines on
// different Ps seldom share one. Withdrawals, which only retries and hedges make, credit the
// deposits made since the last one to the balance, capped as if each deposit had been checked
// against the cap when it was made, under a mutex; the floor (a mutex inside x/time/rate) is
// touched only on retries that the deposits cannot pay for.
type budget struct {
	shards [budgetShards]budgetShard // deposits

	depositMilli int64 // immutable: ratio × 1000
	capMilli     int64 // immutable

	mu       sync.Mutex    // serialises withdrawals
	credited int64         // deposits already credited to balance; guarded by mu
	balance  atomic.Int64  // milli-tokens as of the last withdrawal; written under mu
	floor    *rate.Limiter // nil when there is no floor
}

// budgetShards is how many counters deposits are spread over: a power of two.
const budgetShards = 8

// budgetShard is one deposit counter, alone on its cache line.
type budgetShard struct {
	n atomic.Int64
	_ [56]byte
}

func newBudget(p RetryPolicy) *budget {
	b := &budget{depositMilli: int64(max(p.BudgetRatio, 0) * budgetMilliPerRetry)}
	b.capMilli = max(b.depositMilli*budgetCapRequests, budgetMilliPerRetry)
	if p.MinRetriesPerSecond > 0 {
		b.floor = rate.NewLimiter(rate.Limit(p.MinRetriesPerSecond), max(1, int(p.MinRetriesPerSecond)))
	}
	return b
}

// deposit records one request, on a shard chosen at random (a few nanoseconds, from the
// runtime's per-thread generator).
func (b *budget) deposit() { b.shards[rand.Uint32()&(budgetShards-1)].n.Add(1) }

// requests returns how many deposits were made. Successive calls never go down.
func (b *budget) requests() (n int64) {
	for i := range b.shards {
		n += b.shards[i].n.Load()
	}
	return n
}

// withdraw asks for one retry and reports whether the budget allows it. now is used only
// when the floor decides; the zero time means time.Now(), read only then.
func (b *budget) withdraw(now time.Time) bool {
	b.mu.Lock()
	bal := b.balance.Load()
	if n := b.requests(); n != b.credited {
		// Each deposit since the last withdrawal is kept while it fits under the cap.
		if b.depositMilli > 0 && bal < b.capMilli {
			bal += min(n-b.credited, (b.capMilli-bal)/b.depositMilli) * b.depositMilli
		}
		b.credited = n
	}
	ok := bal >= budgetMilliPerRetry
	if ok {
		bal -= budgetMilliPerRetry
	}
	b.balance.Store(bal)
	b.mu.Unlock()
	if ok {
		return true
	}
	if b.floor != nil {
		if now.IsZero() {
			now = time.Now()
		}
		if b.floor.AllowN(now, 1) {
			return true
		}
	}
	return false
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date. It reports false
// for anything else, and clamps a date in the past to 0.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

// HedgePolicy sends a second attempt to another endpoint when the first has not answered
// within a delay; the first good answer wins and the losers are cancelled. Hedges draw on the
// retry budget. Only requests that may be retried are hedged.
type HedgePolicy struct {
	// Delay before each further attempt is sent; with Quantile set, the least delay and the
	// one used until the destination has enough history. Required.
	Delay time.Duration `json:"delay,omitempty" yaml:"delay,omitempty"`
	// Quantile, in (0,1), makes the delay follow the destination: the latency of its
	// attempts at this quantile over the last 10 to 20 seconds (for example 0.95 hedges the
	// slowest 5 %), never below Delay. HTTP only: gRPC calls (NewGRPCClient, which refuses it) keep no latency
	// history and hedge after the fixed Delay. Default 0: the fixed Delay.
	Quantile float64 `json:"quantile,omitempty" yaml:"quantile,omitempty"`
	// MaxHedges is how many extra attempts one request may send. Default 1.
	MaxHedges int `json:"maxHedges,omitempty" yaml:"maxHedges,omitempty"`

	enabled bool
}

func (p *HedgePolicy) normalize() error {
	if !p.enabled {
		return nil
	}
	if p.Delay <= 0 {
		return fmt.Errorf("middleware: HedgePolicy.Delay must be positive, got %v", p.Delay)
	}
	if p.Quantile < 0 || p.Quantile >= 1 || math.IsNaN(p.Quantile) {
		return fmt.Errorf("middleware: HedgePolicy.Quantile must be in [0,1), got %v", p.Quantile)
	}
	if p.MaxHedges < 0 {
		return fmt.Errorf("middleware: HedgePolicy.MaxHedges must not be negative, got %d", p.MaxHedges)
	}
	if p.MaxHedges == 0 {
		p.MaxHedges = 1
	}
	return nil
}

// hedgeMinSamples is how many recent attempts a destination needs before its latency
// quantile replaces the fixed hedge delay.
const hedgeMinSamples = 50

// delay returns the wait before the next hedge to d. It reads the clock only for a quantile.
func (p *HedgePolicy) delay(d *destination) time.Duration {
	if p.Quantile == 0 {
		return p.Delay
	}
	if q, ok := d.latency.Quantile(time.Now(), p.Quantile, hedgeMinSamples); ok && q > p.Delay {
		return q
	}
	return p.Delay
}
