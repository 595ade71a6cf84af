package ratelimit

import (
	"fmt"
	"time"

	"github.com/proxyless/proxyless/ratelimit/internal/quota"
)

// Quota is a rate and a burst for one key or one class of keys.
type Quota struct {
	// Rate is the sustained number of events per second. math.Inf(1) admits
	// everything. 0 with Burst 0 admits nothing (a block list entry).
	Rate float64 `json:"rate,omitempty" yaml:"rate,omitempty"`
	// Burst is how many events may happen at once. 0 means one second's
	// worth of Rate, rounded up, at least 1 (when Rate > 0).
	Burst int `json:"burst,omitempty" yaml:"burst,omitempty"`
}

type quotaKind = quota.Kind

const (
	quotaFinite    = quota.Finite
	quotaUnlimited = quota.Unlimited
	quotaDenyAll   = quota.DenyAll
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

// compile validates q; errors name its fields after field (see quota.Compile).
func (q Quota) compile(field string) (gcra, error) {
	g, err := quota.Compile(q.Rate, q.Burst, field)
	if err != nil {
		return gcra{}, fmt.Errorf("ratelimit: %w", err)
	}
	return gcra{kind: g.Kind, burst: g.Burst, interval: g.Interval, tau: g.Tau, rate: g.Rate}, nil
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
