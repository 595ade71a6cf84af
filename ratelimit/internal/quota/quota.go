// Package quota validates a rate and a burst and turns them into the parameters of GCRA, so
// that package ratelimit's limiters and ratelimit/redis read a ratelimit.Quota alike.
package quota

import (
	"fmt"
	"math"
	"time"
)

// Kind says how a quota admits events.
type Kind uint8

const (
	// Finite admits Burst events at once and one per Interval after.
	Finite Kind = iota
	// Unlimited admits every event.
	Unlimited
	// DenyAll admits no event.
	DenyAll
)

// GCRA is a validated quota in the form GCRA needs: each event moves the key's theoretical
// arrival time (TAT) forward by Interval; an event is admitted while TAT stays within Tau of
// now.
type GCRA struct {
	Kind     Kind
	Burst    int
	Interval int64 // ns per event
	Tau      int64 // Interval * Burst, ns
	Rate     float64
}

// MaxTau keeps TAT arithmetic far from int64 overflow (about 73 years).
const MaxTau = int64(1) << 61

// Compile validates a quota of rate events per second and burst events at once. A burst of 0
// means one second's worth of rate, rounded up. Errors name the bad value after field
// ("Default" gives "Default.Rate"; "" gives "rate") and carry no package prefix: the caller
// adds its own.
func Compile(rate float64, burst int, field string) (GCRA, error) {
	rateName, burstName := field+".Rate", field+".Burst"
	if field == "" {
		rateName, burstName = "rate", "burst"
	}
	switch {
	case math.IsNaN(rate):
		return GCRA{}, fmt.Errorf("%s is NaN", rateName)
	case rate < 0:
		return GCRA{}, fmt.Errorf("%s %v is negative", rateName, rate)
	case burst < 0:
		return GCRA{}, fmt.Errorf("%s %d is negative", burstName, burst)
	case math.IsInf(rate, 1):
		return GCRA{Kind: Unlimited, Burst: burst, Rate: rate}, nil
	case rate == 0 && burst == 0:
		return GCRA{Kind: DenyAll}, nil
	case rate == 0:
		return GCRA{}, fmt.Errorf("%s must be 0 when %s is 0 (a key's burst would come back whenever it is evicted)", burstName, rateName)
	}
	if burst == 0 {
		burst = int(math.Min(math.Ceil(rate), math.MaxInt32))
	}
	interval := float64(time.Second) / rate
	if interval < 1 {
		// Faster than one event per nanosecond: no clock can tell.
		return GCRA{Kind: Unlimited, Burst: burst, Rate: rate}, nil
	}
	if interval*float64(burst) >= float64(MaxTau) {
		return GCRA{}, fmt.Errorf("%s %v is too small for %s %d", rateName, rate, burstName, burst)
	}
	iv := int64(math.Round(interval))
	return GCRA{Kind: Finite, Burst: burst, Interval: iv, Tau: iv * int64(burst), Rate: rate}, nil
}
