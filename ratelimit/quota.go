package ratelimit

import (
	"fmt"
	"math"
	"time"
)

// Quota is a rate and a burst for one key or one class of keys.
type Quota struct {
	// Rate is the sustained number of events per second. math.Inf(1) admits
	// everything. 0 with Burst 0 admits nothing (a block list entry).
	Rate float64 `json:"rate" yaml:"rate"`
	// Burst is how many events may happen at once. 0 means one second's
	// worth of Rate, rounded up, at least 1 (when Rate > 0).
	Burst int `json:"burst" yaml:"burst"`
}

type quotaKind uint8

const (
	quotaFinite quotaKind = iota
	quotaUnlimited
	quotaDenyAll
)

// gcra holds a validated quota in the form GCRA needs: each event moves the
// key's theoretical arrival time (TAT) forward by interval; an event is
// admitted while TAT stays within tau of now.
type gcra struct {
	kind     quotaKind
	burst    int
	interval int64 // ns per event
	tau      int64 // interval * burst, ns
	rate     float64
}

// maxTau keeps TAT arithmetic far from int64 overflow (about 73 years).
const maxTau = int64(1) << 61

func (q Quota) compile(field string) (gcra, error) {
	rateName, burstName := field+".Rate", field+".Burst"
	if field == "" {
		rateName, burstName = "rate", "burst"
	}
	switch {
	case math.IsNaN(q.Rate):
		return gcra{}, fmt.Errorf("ratelimit: %s is NaN", rateName)
	case q.Rate < 0:
		return gcra{}, fmt.Errorf("ratelimit: %s %v is negative", rateName, q.Rate)
	case q.Burst < 0:
		return gcra{}, fmt.Errorf("ratelimit: %s %d is negative", burstName, q.Burst)
	case math.IsInf(q.Rate, 1):
		return gcra{kind: quotaUnlimited, burst: q.Burst, rate: q.Rate}, nil
	case q.Rate == 0 && q.Burst == 0:
		return gcra{kind: quotaDenyAll}, nil
	case q.Rate == 0:
		return gcra{}, fmt.Errorf("ratelimit: %s must be 0 when %s is 0 (a key's burst would come back whenever it is evicted)", burstName, rateName)
	}
	burst := q.Burst
	if burst == 0 {
		burst = int(math.Min(math.Ceil(q.Rate), math.MaxInt32))
	}
	interval := float64(time.Second) / q.Rate
	if interval < 1 {
		// Faster than one event per nanosecond: no clock can tell.
		return gcra{kind: quotaUnlimited, burst: burst, rate: q.Rate}, nil
	}
	if interval*float64(burst) >= float64(maxTau) {
		return gcra{}, fmt.Errorf("ratelimit: %s %v is too small for %s %d", rateName, q.Rate, burstName, burst)
	}
	iv := int64(math.Round(interval))
	return gcra{kind: quotaFinite, burst: burst, interval: iv, tau: iv * int64(burst), rate: q.Rate}, nil
}

// take applies one GCRA step for n events at now (ns) to *tat.
func (g *gcra) take(tat *int64, now int64, n int) Decision {
	switch g.kind {
	case quotaUnlimited:
		return Decision{Allowed: true, Limit: g.burst, Remaining: g.burst}
	case quotaDenyAll:
		return Decision{}
	}
	t := max(*tat, now)
	if n > g.burst {
		return Decision{Limit: g.burst, Remaining: g.remaining(t, now), Reset: time.Duration(t - now)}
	}
	next := t + g.interval*int64(n)
	if allowAt := next - g.tau; allowAt > now {
		return Decision{
			Limit:      g.burst,
			Remaining:  g.remaining(t, now),
			RetryAfter: time.Duration(allowAt - now),
			Reset:      time.Duration(t - now),
		}
	}
	*tat = next
	return Decision{Allowed: true, Limit: g.burst, Remaining: g.remaining(next, now), Reset: time.Duration(next - now)}
}

func (g *gcra) remaining(tat, now int64) int {
	return int((now + g.tau - tat) / g.interval)
}
