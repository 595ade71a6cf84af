package balancer

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// This file holds the interval-based outlier detection (success rate and failure percentage,
// as in Envoy and gRPC's A50) and the ejection decision the consecutive-failure checks share.

// normalizeOutlierSweep validates and defaults the interval-based checks of o in place, on
// copies of its SuccessRate and FailurePercentage, which it replaces.
func normalizeOutlierSweep(o *OutlierConfig) error {
	if o.Interval < 0 {
		return fieldErr("Outlier.Interval", "must not be negative, got %v", o.Interval)
	}
	if o.Interval == 0 {
		o.Interval = DefaultOutlierInterval
	}
	if o.SuccessRate != nil {
		sr := *o.SuccessRate
		o.SuccessRate = &sr
		if err := normalizeSweepCommon("Outlier.SuccessRate", &sr.EnforcementPercentage, &sr.MinimumHosts, &sr.RequestVolume, DefaultSuccessRateRequestVolume); err != nil {
			return err
		}
		if sr.StdevFactor < 0 {
			return fieldErr("Outlier.SuccessRate.StdevFactor", "must not be negative, got %d", sr.StdevFactor)
		}
		if sr.StdevFactor == 0 {
			sr.StdevFactor = DefaultStdevFactor
		}
	}
	if o.FailurePercentage != nil {
		fp := *o.FailurePercentage
		o.FailurePercentage = &fp
		if err := normalizeSweepCommon("Outlier.FailurePercentage", &fp.EnforcementPercentage, &fp.MinimumHosts, &fp.RequestVolume, DefaultFailurePercentVolume); err != nil {
			return err
		}
		if fp.Threshold < 0 || fp.Threshold > 100 {
			return fieldErr("Outlier.FailurePercentage.Threshold", "must be in [0,100], got %d", fp.Threshold)
		}
		if fp.Threshold == 0 {
			fp.Threshold = DefaultFailurePercentThreshold
		}
	}
	return nil
}

// normalizeSweepCommon validates and defaults the fields both interval-based checks have.
func normalizeSweepCommon(section string, enforce, hosts, volume *int, defVolume int) error {
	if *enforce < 0 || *enforce > 100 {
		return fieldErr(section+".EnforcementPercentage", "must be in [0,100], got %d", *enforce)
	}
	if *enforce == 0 {
		*enforce = DefaultEnforcementPercentage
	}
	if *hosts < 0 {
		return fieldErr(section+".MinimumHosts", "must not be negative, got %d", *hosts)
	}
	if *hosts == 0 {
		*hosts = DefaultOutlierMinimumHosts
	}
	if *volume < 0 {
		return fieldErr(section+".RequestVolume", "must not be negative, got %d", *volume)
	}
	if *volume == 0 {
		*volume = defVolume
	}
	return nil
}

// sweeps reports whether o asks for the interval-based checks.
func (o *OutlierConfig) sweeps() bool {
	return !o.Disabled && (o.SuccessRate != nil || o.FailurePercentage != nil)
}

// counts is an endpoint's cumulative request and failure counts at a sweep.
type counts struct{ requests, failures uint64 }

// sweeper runs the interval-based outlier checks every Outlier.Interval until closed.
type sweeper struct {
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newSweeper(b *Balancer) *sweeper {
	ctx, cancel := context.WithCancel(context.Background())
	sw := &sweeper{cancel: cancel}
	sw.wg.Add(1)
	go func() {
		defer sw.wg.Done()
		t := time.NewTicker(b.cfg.Outlier.Interval)
		defer t.Stop()
		last := map[*endpointState]counts{}
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				last = b.sweep(now.UnixNano(), last)
			}
		}
	}()
	return sw
}

func (sw *sweeper) close() {
	sw.closeOnce.Do(func() {
		sw.cancel()
		sw.wg.Wait()
	})
}

// sweep runs one round of the interval-based checks at now, over the requests each endpoint
// ended since last (its counts at the previous round; an endpoint absent from it has been in
// the set for less than an interval, all its requests being new), and returns the counts to
// compare with next time.
func (b *Balancer) sweep(now int64, last map[*endpointState]counts) map[*endpointState]counts {
	s := b.snap.Load()
	next := make(map[*endpointState]counts, len(s.states))
	delta := make([]counts, len(s.states))
	for i, e := range s.states {
		// Failures first: Done counts a request before its failure, so that the failures
		// read are never more than the requests read after them.
		c := counts{failures: e.failures.Load()}
		c.requests = e.requests.Load()
		next[e] = c
		p := last[e]
		delta[i] = counts{requests: c.requests - p.requests, failures: c.failures - p.failures}
	}
	o := &b.cfg.Outlier
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.snap.Load() != s {
		return next // an Update came in between: the next round judges the new set
	}
	if sr := o.SuccessRate; sr != nil {
		for _, i := range successRateOutliers(delta, sr) {
			if rand.IntN(100) < sr.EnforcementPercentage {
				b.ejectLocked(s, s.states[i], now)
			}
		}
	}
	if fp := o.FailurePercentage; fp != nil {
		for _, i := range failurePercentageOutliers(delta, fp) {
			if rand.IntN(100) < fp.EnforcementPercentage {
				b.ejectLocked(s, s.states[i], now)
			}
		}
	}
	return next
}

// successRateOutliers returns the indexes in delta of the endpoints the success-rate check
// finds: see SuccessRateEjection.
func successRateOutliers(delta []counts, sr *SuccessRateEjection) []int {
	var idx []int
	var rates []float64
	for i, c := range delta {
		if c.requests > 0 && c.requests >= uint64(sr.RequestVolume) {
			idx = append(idx, i)
			rates = append(rates, 1-float64(c.failures)/float64(c.requests))
		}
	}
	if len(idx) == 0 || len(idx) < sr.MinimumHosts {
		return nil
	}
	mean := 0.0
	for _, r := range rates {
		mean += r
	}
	mean /= float64(len(rates))
	variance := 0.0
	for _, r := range rates {
		variance += (r - mean) * (r - mean)
	}
	stdev := math.Sqrt(variance / float64(len(rates)))
	factor := float64(sr.StdevFactor) / 1000
	var out []int
	for k, r := range rates {
		// The spread is floored at the sampling error of this endpoint's rate: endpoints that
		// fail alike differ only by the noise of counting, which a spread computed from a few
		// near-equal rates would call an outlier.
		noise := math.Sqrt(mean * (1 - mean) / float64(delta[idx[k]].requests))
		if r < mean-max(stdev, noise)*factor {
			out = append(out, idx[k])
		}
	}
	return out
}

// failurePercentageOutliers returns the indexes in delta of the endpoints the
// failure-percentage check finds: see FailurePercentageEjection.
func failurePercentageOutliers(delta []counts, fp *FailurePercentageEjection) []int {
	var idx []int
	for i, c := range delta {
		if c.requests > 0 && c.requests >= uint64(fp.RequestVolume) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 || len(idx) < fp.MinimumHosts {
		return nil
	}
	var out []int
	for _, i := range idx {
		c := delta[i]
		if 100*float64(c.failures)/float64(c.requests) > float64(fp.Threshold) {
			out = append(out, i)
		}
	}
	return out
}

// ejectLocked ejects e, a member of s (the current snapshot), at now unless it is ejected
// already or ejecting it would exceed Outlier.MaxEjectionPercent: Envoy's ejectHost. The
// ejection lasts BaseEjectionTime × times ejected, capped at MaxEjectionTime. Called under
// b.mu; it reports whether e was ejected.
func (b *Balancer) ejectLocked(s *snapshot, e *endpointState, now int64) bool {
	if e.ejected(now) {
		return false
	}
	ejected := 0
	for _, x := range s.states {
		if x.ejected(now) {
			ejected++
		}
	}
	pct := 100 * float64(ejected+1) / float64(len(s.states))
	if pct > b.cfg.Outlier.MaxEjectionPercent && !(b.cfg.Outlier.AlwaysEjectOne && ejected == 0) {
		return false
	}
	times := e.timesEjected.Load()
	if last := e.ejectedUntil.Load(); times > 0 && last > 0 {
		// The multiplier drops by one for each base ejection time spent in rotation.
		times = max(0, times-(now-last)/b.ejectBase)
	}
	times = min(times+1, b.maxTimes)
	until := now + min(b.ejectBase*times, b.ejectMax)
	e.timesEjected.Store(times)
	e.ejectedUntil.Store(until)
	if b.ssWindow > 0 {
		e.slowStart.Store(until)
	}
	b.ejections.Add(1)
	b.gen.Add(1)
	return true
}
