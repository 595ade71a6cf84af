package balancer

import (
	"math"
	"sync/atomic"
	"unsafe"
)

// startPending marks an endpoint whose slow start begins at the first pick that considers it.
const startPending = -1

// endpointState is the mutable state of one endpoint, kept by address across updates. All
// fields are atomics, read and written without locks; the outlier fields marked "guarded by
// Balancer.mu" are only written under it.
//
// The fields a pick reads (in-flight count, EWMA cost and stamp, Retry-After and ejection
// deadlines, slow start, health) come first and fill the first 64-byte cache line; the
// counters that only Done, the outlier detector and the health checker touch fill the second.
// The struct fits the allocator's 128-byte size class, whose objects are aligned to cache
// lines, so two endpoints never share one. The address is not kept here: it is the Addr of
// the endpoint at the same index of a snapshot.
type endpointState struct {
	inflight     atomic.Int64
	cost         atomic.Uint64 // peak EWMA of latency in ns, float64 bits; 0 until the first sample
	stamp        atomic.Int64  // unix ns of the last EWMA update
	backoffUntil atomic.Int64  // unix ns; picks avoid the endpoint while now < backoffUntil
	ejectedUntil atomic.Int64  // unix ns; the endpoint is ejected while now < ejectedUntil. Guarded by Balancer.mu.
	slowStart    atomic.Int64  // unix ns when the ramp started; 0 none, startPending not yet started
	b            *Balancer     // immutable
	unhealthy    atomic.Bool   // set by active health checks

	_ [64 - 7*8 - 4]byte // atomic.Bool is 4 bytes

	// Second cache line.
	requests      atomic.Uint64
	failures      atomic.Uint64
	consecGateway atomic.Int64
	consecFailure atomic.Int64
	timesEjected  atomic.Int64 // ejection multiplier. Guarded by Balancer.mu.
	hcPass        atomic.Int64 // passed checks in a row while unhealthy; health checker only
	hcFail        atomic.Int64 // failed checks in a row while healthy; health checker only
	mark          uint64       // the last Update that took this state into its snapshot. Guarded by Balancer.mu.
}

// The layout above, checked at compile time: the second cache line starts at byte 64 and the
// struct fits in 128 bytes.
var (
	_ [unsafe.Offsetof(endpointState{}.requests) - 64]byte
	_ [64 - unsafe.Offsetof(endpointState{}.requests)]byte
	_ [128 - unsafe.Sizeof(endpointState{})]byte
)

// ejected reports whether the endpoint is out of rotation at now.
func (e *endpointState) ejected(now int64) bool { return now < e.ejectedUntil.Load() }

// healthyAt reports whether the endpoint counts as healthy: not ejected and passing active
// health checks.
func (e *endpointState) healthyAt(now int64) bool { return !e.unhealthy.Load() && !e.ejected(now) }

// slowStartFactor returns the endpoint's share of its weight in (0,1] at now; 1 when it is
// not ramping up. The first call for a pending endpoint starts its ramp at now.
func (e *endpointState) slowStartFactor(now int64, window int64, floor float64) float64 {
	start := e.slowStart.Load()
	if start == 0 {
		return 1
	}
	if start == startPending {
		if e.slowStart.CompareAndSwap(startPending, now) {
			start = now
		} else {
			start = e.slowStart.Load()
			if start == 0 {
				return 1
			}
		}
	}
	age := now - start
	if age >= window {
		e.slowStart.CompareAndSwap(start, 0)
		return 1
	}
	if age <= 0 {
		return floor
	}
	return max(floor, float64(age)/float64(window))
}

// penalty is the load of an endpoint with requests in flight and no latency sample yet, as
// Finagle's: high enough that it gets one request at a time until it answers.
const penalty = float64(math.MaxInt64 >> 16)

// rawLoad returns the peak-EWMA load at now as a fraction tau·num/den: the cost times
// in-flight + 1, over the decay denominator (tau+dt)/tau, written so that no division is
// needed; tau is the same for every endpoint, so comparisons of num/den leave it out. The
// decay factor is the cheap tau/(tau+dt), close to exp(-dt/tau) for dt well below tau (the
// exact exponential is used when samples are recorded). An endpoint without a sample has
// load 0 when idle (which pickP2C replaces with the typical load: see typicalLoad), and
// Finagle's penalty while requests are in flight, so that it gets one request at a time
// until it answers.
func (e *endpointState) rawLoad(now int64, tau float64) (num, den float64) {
	inflight := float64(e.inflight.Load())
	cost := math.Float64frombits(e.cost.Load())
	den = tau
	if cost == 0 {
		if inflight > 0 {
			return penalty + inflight, den
		}
		return 0, den
	}
	if dt := now - e.stamp.Load(); dt > 0 {
		den += float64(dt)
	}
	return cost * (inflight + 1), den
}

// observe feeds one latency sample (ns) into the peak EWMA at now. A sample above the
// current cost replaces it (the peak); a lower one is averaged in with weight 1-exp(-dt/tau).
// A failure's sample never lowers the cost, so failing fast does not attract traffic.
func (e *endpointState) observe(now int64, rtt float64, tau float64, failed bool) {
	if rtt < 0 {
		rtt = 0
	}
	// Load and Store rather than read-modify-write: two samples racing may lose one, which an
	// average shrugs off, and the hot path saves two locked instructions.
	dt := float64(now - e.stamp.Load())
	e.stamp.Store(now)
	cost := math.Float64frombits(e.cost.Load())
	next := cost
	switch {
	case rtt > cost || cost == 0:
		next = rtt
	case failed:
	case dt > 0:
		w := math.Exp(-dt / tau)
		next = cost*w + rtt*(1-w)
	}
	if next == 0 {
		next = 1 // 1 ns: "has a sample", distinct from "no sample yet"
	}
	e.cost.Store(math.Float64bits(next))
}
