package overload

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivethrottler"

	"github.com/proxyless/proxyless/ratelimit"
)

// ThrottlerConfig configures a [Throttler]. The zero value of each field
// means its default.
type ThrottlerConfig struct {
	// FailureRateThreshold is the failure rate, in [0, 1), above which
	// calls start being refused. Default 0.1.
	FailureRateThreshold float64 `json:"failureRateThreshold,omitempty" yaml:"failureRateThreshold,omitempty"`
	// MinCalls is how many calls the Period must hold before any is
	// refused. Default 10.
	MinCalls int `json:"minCalls,omitempty" yaml:"minCalls,omitempty"`
	// Period is the window over which outcomes count; at least 20 ms.
	// Default 1 minute.
	Period time.Duration `json:"period,omitempty" yaml:"period,omitempty"`
	// MaxRejectionRate caps the share of calls refused, in (0, 1], so that
	// some calls always probe the callee. Default 0.9.
	MaxRejectionRate float64 `json:"maxRejectionRate,omitempty" yaml:"maxRejectionRate,omitempty"`
}

// Throttler is client-side adaptive throttling (Google SRE book, "Handling
// Overload"): as the callee's failure rate passes the threshold, calls are
// refused locally with rising probability, so that a struggling callee sees
// less load instead of more retries.
//
// Create it with [NewThrottler]; the zero value is not usable. It is safe
// for concurrent use and needs no cleanup.
type Throttler struct {
	th adaptivethrottler.AdaptiveThrottler[any] // immutable
}

// NewThrottler validates cfg and returns a throttler. Errors name the field.
func NewThrottler(cfg ThrottlerConfig) (*Throttler, error) {
	thr := cfg.FailureRateThreshold
	switch {
	case math.IsNaN(thr) || thr < 0 || thr >= 1:
		return nil, fmt.Errorf("overload: FailureRateThreshold %v is outside [0, 1)", thr)
	case thr == 0:
		thr = 0.1
	}
	minCalls := cfg.MinCalls
	switch {
	case minCalls < 0:
		return nil, fmt.Errorf("overload: MinCalls %d is negative", minCalls)
	case minCalls == 0:
		minCalls = 10
	}
	period := cfg.Period
	switch {
	case period < 0 || (period > 0 && period < 20*time.Millisecond):
		return nil, fmt.Errorf("overload: Period %v is below 20ms", period)
	case period == 0:
		period = time.Minute
	}
	maxRej := cfg.MaxRejectionRate
	switch {
	case math.IsNaN(maxRej) || maxRej < 0 || maxRej > 1:
		return nil, fmt.Errorf("overload: MaxRejectionRate %v is outside (0, 1]", maxRej)
	case maxRej == 0:
		maxRej = 0.9
	}
	// Everything the builder asserts has been checked above: it cannot panic.
	th := adaptivethrottler.NewBuilder[any]().
		WithFailureRateThreshold(thr, uint(minCalls), period).
		WithMaxRejectionRate(maxRej).
		Build()
	return &Throttler{th: th}, nil
}

// Acquire implements [Limiter]. Success and Failure count towards the
// failure rate; Dropped does not count.
func (t *Throttler) Acquire(ctx context.Context) (func(Outcome), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !t.th.TryAcquirePermit() {
		return nil, ratelimit.ErrLimited
	}
	return once(func(o Outcome) {
		switch o {
		case Success:
			t.th.RecordSuccess()
		case Failure:
			t.th.RecordFailure()
		}
	}), nil
}

// RejectionRate returns the share of calls currently refused, in [0, 1].
func (t *Throttler) RejectionRate() float64 { return t.th.RejectionRate() }
