package engine

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Policy is what one call runs under: the client's settings, or a route's overrides merged
// into them. It is immutable once a call uses it.
type Policy struct {
	Retry          Retry
	Hedge          Hedge
	Timeout        time.Duration // the whole call, backoff included; 0: none
	AttemptTimeout time.Duration // each attempt; 0: none
	// AttemptTimeoutSendOnly makes AttemptTimeout bound Sender.Send only (for HTTP: until the
	// response headers arrive), not what the caller does with the result afterwards (read a
	// streamed body): the attempt's context then has no deadline of its own, and a timer
	// cancels it unless Send has returned. Without it the attempt's context has the deadline
	// for as long as it lives (gRPC, whose unary Send is the whole call).
	AttemptTimeoutSendOnly bool
	// Cancellable gives every attempt a context of its own, which Result.Release cancels, even
	// without a timeout or hedging: for an adapter that cuts a result short after Run (an
	// idle timeout on a response body).
	Cancellable bool
}

// Retry says how failed attempts are sent again. Its values are already validated and
// defaulted by the adapter's configuration.
type Retry struct {
	Disable       bool
	MaxRetries    int
	BackoffBase   time.Duration
	BackoffMax    time.Duration
	MaxRetryAfter time.Duration // a longer Retry-After or pushback ends the call
}

// Hedge says when further attempts start while earlier ones are unanswered.
type Hedge struct {
	Enabled   bool
	Delay     time.Duration // the fixed delay, and the least one with a quantile
	Quantile  float64       // (0,1): follow the destination's latency at this quantile
	MaxHedges int
}

// Budget limits retries and hedges to a share of requests plus a floor per second, so that an
// outage cannot multiply the load. Each call deposits a share of a token; each retry or hedge
// takes one; when the deposits run dry, the floor's token bucket decides.
//
// A deposit is one atomic increment on one of several cache lines. Withdrawals credit the
// deposits made since the last one, capped, under a mutex; the floor (x/time/rate) is asked
// only for retries the deposits cannot pay for.
type Budget struct {
	shards [budgetShards]budgetShard

	depositMilli int64 // immutable: ratio × 1000
	capMilli     int64 // immutable

	mu       sync.Mutex    // serialises withdrawals
	credited int64         // deposits already credited; guarded by mu
	balance  int64         // milli-tokens; guarded by mu
	floor    *rate.Limiter // nil when there is no floor
}

const (
	budgetShards        = 8
	budgetMilliPerRetry = 1000
	budgetCapRequests   = 1000 // the budget saves up for at most this many calls' worth
)

type budgetShard struct {
	n atomic.Int64
	_ [56]byte
}

// NewBudget returns a budget in which each call pays for ratio of a retry (at most 1; 0 or
// less: none) and minPerSecond retries are allowed whatever the ratio (0 or less: none).
func NewBudget(ratio, minPerSecond float64) *Budget {
	b := &Budget{depositMilli: int64(max(min(ratio, 1), 0) * budgetMilliPerRetry)}
	b.capMilli = max(b.depositMilli*budgetCapRequests, budgetMilliPerRetry)
	if minPerSecond > 0 {
		b.floor = rate.NewLimiter(rate.Limit(minPerSecond), max(1, int(minPerSecond)))
	}
	return b
}

// Deposit records one call.
func (b *Budget) Deposit() { b.shards[rand.Uint32()&(budgetShards-1)].n.Add(1) }

// Calls returns how many deposits were made. Successive calls never go down.
func (b *Budget) Calls() (n int64) {
	for i := range b.shards {
		n += b.shards[i].n.Load()
	}
	return n
}

// Withdraw asks for one retry or hedge and reports whether the budget allows it.
func (b *Budget) Withdraw(now time.Time) bool {
	b.mu.Lock()
	if n := b.Calls(); n != b.credited {
		if b.depositMilli > 0 && b.balance < b.capMilli {
			b.balance += min(n-b.credited, (b.capMilli-b.balance)/b.depositMilli) * b.depositMilli
		}
		b.credited = n
	}
	ok := b.balance >= budgetMilliPerRetry
	if ok {
		b.balance -= budgetMilliPerRetry
	}
	b.mu.Unlock()
	return ok || (b.floor != nil && b.floor.AllowN(now, 1))
}

// Stats counts what a client's calls did. Its zero value is ready; it is safe for concurrent
// use.
type Stats struct {
	Attempts, Retries, Hedges, HedgeWins, BudgetRefusals, BreakerRefusals atomic.Int64 // calls are Budget.Calls
}
