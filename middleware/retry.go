package middleware

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"
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
	defaultMaxBufferBody  = 64 << 10
	maxDrainBody          = 256 << 10
	idempotencyKeyHeader  = "Idempotency-Key"
	retryAfterHeader      = "Retry-After"
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

// HedgePolicy sends a second attempt to another endpoint when the first has not answered
// within a delay; the first good answer wins and the losers are cancelled. Hedges draw on the
// retry budget. Only requests that may be retried are hedged.
type HedgePolicy struct {
	// Delay before each further attempt is sent; with Quantile set, the least delay and the
	// one used until the destination has enough history. Required.
	Delay time.Duration `json:"delay,omitempty" yaml:"delay,omitempty"`
	// Quantile, in (0,1), makes the delay follow the destination: the latency of its
	// attempts at this quantile over the last 10 to 20 seconds (for example 0.95 hedges the
	// slowest 5 %), never below Delay; for HTTP and gRPC unary calls alike (gRPC streams
	// are not hedged). Default 0: the fixed Delay.
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
