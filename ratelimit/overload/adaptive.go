package overload

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"

	"github.com/proxyless/proxyless/ratelimit"
)

// AdaptiveConfig configures an [Adaptive] limiter. The zero value of each
// field means its default.
type AdaptiveConfig struct {
	// MinLimit is the lowest concurrency limit. Default 1.
	MinLimit int `json:"minLimit,omitempty" yaml:"minLimit,omitempty"`
	// MaxLimit is the highest concurrency limit. Default 200.
	MaxLimit int `json:"maxLimit,omitempty" yaml:"maxLimit,omitempty"`
	// InitialLimit is the limit before any latency is known. Default 20,
	// or MinLimit/MaxLimit if 20 lies outside them.
	InitialLimit int `json:"initialLimit,omitempty" yaml:"initialLimit,omitempty"`
	// MaxLimitFactor caps the limit at this multiple of the calls in
	// flight, so that it cannot drift far above real use. Default 5.
	MaxLimitFactor float64 `json:"maxLimitFactor,omitempty" yaml:"maxLimitFactor,omitempty"`
	// MaxWait is how long a call over the limit waits for a slot. Default 0:
	// refused at once.
	MaxWait time.Duration `json:"maxWait,omitempty" yaml:"maxWait,omitempty"`
}

// Adaptive limits concurrency to what the callee sustains: the limit rises
// while latency stays at its baseline and falls when latency grows
// (failsafe-go adaptivelimiter).
//
// Create it with [NewAdaptive]; the zero value is not usable. It is safe for
// concurrent use and needs no cleanup.
type Adaptive struct {
	lim     adaptivelimiter.AdaptiveLimiter[any] // immutable
	maxWait time.Duration                        // immutable
}

// NewAdaptive validates cfg and returns a limiter. Errors name the field.
func NewAdaptive(cfg AdaptiveConfig) (*Adaptive, error) {
	minL, maxL := cfg.MinLimit, cfg.MaxLimit
	if minL < 0 {
		return nil, fmt.Errorf("overload: MinLimit %d is negative", minL)
	}
	if maxL < 0 {
		return nil, fmt.Errorf("overload: MaxLimit %d is negative", maxL)
	}
	if minL == 0 {
		minL = 1
	}
	if maxL == 0 {
		maxL = max(200, minL)
	}
	if minL > maxL {
		return nil, fmt.Errorf("overload: MinLimit %d is above MaxLimit %d", minL, maxL)
	}
	initial := cfg.InitialLimit
	switch {
	case initial < 0:
		return nil, fmt.Errorf("overload: InitialLimit %d is negative", initial)
	case initial == 0:
		initial = min(max(20, minL), maxL)
	case initial < minL || initial > maxL:
		return nil, fmt.Errorf("overload: InitialLimit %d is outside [MinLimit %d, MaxLimit %d]", initial, minL, maxL)
	}
	factor := cfg.MaxLimitFactor
	switch {
	case math.IsNaN(factor) || (factor != 0 && factor < 1):
		return nil, fmt.Errorf("overload: MaxLimitFactor %v is below 1", factor)
	case factor == 0:
		factor = 5
	}
	if cfg.MaxWait < 0 {
		return nil, fmt.Errorf("overload: MaxWait %v is negative", cfg.MaxWait)
	}
	// Everything the builder asserts has been checked above: it cannot panic.
	lim := adaptivelimiter.NewBuilder[any]().
		WithLimits(uint(minL), uint(maxL), uint(initial)).
		WithMaxLimitFactor(factor).
		Build()
	return &Adaptive{lim: lim, maxWait: cfg.MaxWait}, nil
}

// Acquire implements [Limiter]. Success and Failure record the call's
// latency; Dropped releases the slot without recording.
func (a *Adaptive) Acquire(ctx context.Context) (func(Outcome), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var permit adaptivelimiter.Permit
	if a.maxWait == 0 {
		p, ok := a.lim.TryAcquirePermit()
		if !ok {
			return nil, ratelimit.ErrLimited
		}
		permit = p
	} else {
		p, err := a.lim.AcquirePermitWithMaxWait(ctx, a.maxWait)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			if errors.Is(err, adaptivelimiter.ErrExceeded) {
				return nil, ratelimit.ErrLimited
			}
			return nil, fmt.Errorf("overload: %w", err)
		}
		permit = p
	}
	return once(func(o Outcome) {
		if o == Dropped {
			permit.Drop()
		} else {
			permit.Record()
		}
	}), nil
}

// Limit returns the current concurrency limit.
func (a *Adaptive) Limit() int { return a.lim.Limit() }

// Inflight returns the number of calls admitted and not yet released.
func (a *Adaptive) Inflight() int { return a.lim.Inflight() }
