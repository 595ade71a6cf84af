package route

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// EventKind says what an analysis [Event] did to the canary weight.
type EventKind int

const (
	// EventStep raised the canary weight after a healthy interval.
	EventStep EventKind = iota + 1
	// EventPromote raised the canary weight to its maximum; analysis stops.
	EventPromote
	// EventRollback set the canary weight to 0 because the canary was worse than stable;
	// analysis stops until the route's canary config changes.
	EventRollback
)

func (k EventKind) String() string {
	switch k {
	case EventStep:
		return "step"
	case EventPromote:
		return "promote"
	case EventRollback:
		return "rollback"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// AnalysisState is where an [Analyzer] is in its life.
type AnalysisState int

const (
	// AnalysisRunning steps the weight up while the canary stays healthy.
	AnalysisRunning AnalysisState = iota
	// AnalysisPromoted reached the maximum weight.
	AnalysisPromoted
	// AnalysisRolledBack set the weight to 0.
	AnalysisRolledBack
)

func (s AnalysisState) String() string {
	switch s {
	case AnalysisRunning:
		return "running"
	case AnalysisPromoted:
		return "promoted"
	case AnalysisRolledBack:
		return "rolled back"
	}
	return fmt.Sprintf("AnalysisState(%d)", int(s))
}

// Event reports one change the analysis made to a canary's weight.
type Event struct {
	Route    string    // the route's name
	Kind     EventKind // step, promote or rollback
	From, To float64   // canary weight before and after, in percent
	Time     time.Time // when the analysis decided
	Reason   string    // why, for a rollback
	Canary   WindowStats
	Stable   WindowStats
}

// WindowStats summarises one side over the interval that was judged.
type WindowStats struct {
	Requests  int64
	Failures  int64
	ErrorRate float64       // percent
	P99       time.Duration // upper bound of the p99 latency bucket; 0 without requests
}

// Analyzer runs automated canary analysis for one route: it collects outcomes from both
// sides per interval and, at the end of each interval with enough canary requests, compares
// the canary's error rate and p99 latency with the stable side's. A healthy canary's weight
// steps up by Analysis.Step, to Analysis.MaxWeight (promotion); an unhealthy one is rolled back
// to 0 at once (also mid-interval, as soon as MinRequests canary requests show too many
// errors). A canary at weight 0 that has not been rolled back is stepped up after one interval
// without judgement, since it has no traffic to judge.
//
// State advances lazily as outcomes arrive ([Analyzer.Observe]) or when [Analyzer.Evaluate]
// is called; there is no goroutine and nothing to close. Analyzers live in a compiled
// [Table]; a [Router] reload keeps a route's analyzer while its canary config is unchanged.
// Methods are safe for concurrent use; the weight read on the request path is an atomic.
type Analyzer struct {
	route   string      // immutable
	cfg     Analysis    // immutable, defaults filled
	onEvent func(Event) // immutable
	bp      atomic.Uint32

	mu    sync.Mutex
	state AnalysisState // guarded by mu
	start time.Time     // guarded by mu; start of the current interval, zero before the first outcome
	sides [2]window     // guarded by mu; 0 stable, 1 canary
}

func newAnalyzer(route string, cfg Analysis, weight float64, onEvent func(Event)) *Analyzer {
	a := &Analyzer{route: route, cfg: cfg, onEvent: onEvent}
	a.bp.Store(basisPoints(weight))
	return a
}

// Weight returns the canary weight in percent.
func (a *Analyzer) Weight() float64 { return float64(a.bp.Load()) / 100 }

// State returns where the analysis is.
func (a *Analyzer) State() AnalysisState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// Observe records one request's outcome on the canary (canary true) or stable side at now,
// and judges the interval if it is over. Events are delivered after the lock is released.
func (a *Analyzer) Observe(canary bool, o Outcome, now time.Time) {
	a.mu.Lock()
	if a.state != AnalysisRunning {
		a.mu.Unlock()
		return
	}
	if a.start.IsZero() {
		a.start = now
	}
	side := 0
	if canary {
		side = 1
	}
	a.sides[side].add(o)
	ev, ok := a.evaluateLocked(now)
	a.mu.Unlock()
	if ok && a.onEvent != nil {
		a.onEvent(ev)
	}
}

// Evaluate judges the current interval at now if it is over, as Observe does, and returns the
// event it produced, if any (which is also delivered to the callback).
func (a *Analyzer) Evaluate(now time.Time) (Event, bool) {
	a.mu.Lock()
	if a.start.IsZero() && a.state == AnalysisRunning {
		a.start = now
	}
	ev, ok := a.evaluateLocked(now)
	a.mu.Unlock()
	if ok && a.onEvent != nil {
		a.onEvent(ev)
	}
	return ev, ok
}

func (a *Analyzer) evaluateLocked(now time.Time) (Event, bool) {
	if a.state != AnalysisRunning {
		return Event{}, false
	}
	st, cn := &a.sides[0], &a.sides[1]
	min := int64(a.cfg.MinRequests)
	cur := a.bp.Load()
	ev := Event{Route: a.route, From: float64(cur) / 100, Time: now, Stable: st.stats(), Canary: cn.stats()}
	// Too many canary errors end the canary at once, mid-interval.
	if cn.n >= min {
		if reason, bad := a.errorsBad(ev); bad {
			return a.rollbackLocked(ev, reason, now), true
		}
	}
	if now.Sub(a.start) < a.cfg.Interval.Std() {
		return Event{}, false
	}
	if cur > 0 {
		if cn.n < min {
			return Event{}, false // not enough canary traffic yet: extend the interval
		}
		if st.n > 0 {
			bound := time.Duration(float64(ev.Stable.P99)*a.cfg.MaxLatencyRatio) + a.cfg.LatencySlack.Std()
			if ev.Canary.P99 > bound {
				return a.rollbackLocked(ev, fmt.Sprintf("canary p99 latency %v is above %v (stable p99 %v × %v + %v)",
					ev.Canary.P99, bound, ev.Stable.P99, a.cfg.MaxLatencyRatio, a.cfg.LatencySlack), now), true
			}
		}
	}
	next := min32(cur+basisPoints(a.cfg.Step), basisPoints(a.cfg.MaxWeight))
	a.bp.Store(next)
	ev.To = float64(next) / 100
	ev.Kind = EventStep
	if next >= basisPoints(a.cfg.MaxWeight) {
		ev.Kind = EventPromote
		a.state = AnalysisPromoted
	}
	a.resetLocked(now)
	return ev, true
}

func (a *Analyzer) errorsBad(ev Event) (string, bool) {
	if ev.Canary.ErrorRate > ev.Stable.ErrorRate+a.cfg.MaxErrorRateIncrease {
		return fmt.Sprintf("canary error rate %.2f%% is above stable %.2f%% + %.2f pp",
			ev.Canary.ErrorRate, ev.Stable.ErrorRate, a.cfg.MaxErrorRateIncrease), true
	}
	return "", false
}

func (a *Analyzer) rollbackLocked(ev Event, reason string, now time.Time) Event {
	a.bp.Store(0)
	a.state = AnalysisRolledBack
	ev.Kind, ev.To, ev.Reason = EventRollback, 0, reason
	a.resetLocked(now)
	return ev
}

func (a *Analyzer) resetLocked(now time.Time) {
	a.start = now
	a.sides = [2]window{}
}

func min32(a, b uint32) uint32 {
	if a < b {
		return a
	}
	return b
}

// Latency histogram: bucket i holds latencies up to bucketBound(i), growing by 20 % from
// 50µs; the last bucket takes everything above (about 100 s).
const nBuckets = 80

var bucketBounds = func() (b [nBuckets]time.Duration) {
	v := float64(50 * time.Microsecond)
	for i := range b {
		b[i] = time.Duration(v)
		v *= 1.2
	}
	b[nBuckets-1] = math.MaxInt64
	return b
}()

type window struct {
	n, failed int64
	hist      [nBuckets]uint32
}

func (w *window) add(o Outcome) {
	w.n++
	if o.Failed {
		w.failed++
	}
	lo, hi := 0, nBuckets-1
	for lo < hi {
		mid := (lo + hi) / 2
		if o.Latency <= bucketBounds[mid] {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	w.hist[lo]++
}

func (w *window) stats() WindowStats {
	s := WindowStats{Requests: w.n, Failures: w.failed}
	if w.n == 0 {
		return s
	}
	s.ErrorRate = 100 * float64(w.failed) / float64(w.n)
	need := int64(math.Ceil(0.99 * float64(w.n)))
	var cum int64
	for i, c := range w.hist {
		cum += int64(c)
		if cum >= need {
			s.P99 = bucketBounds[i]
			break
		}
	}
	return s
}
