package balancer

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyless/proxyless/discovery"
)

// Balancer picks endpoints of one destination service. Create it with [New], feed it endpoint
// sets with [Balancer.Update], and call [Balancer.Pick] per request attempt and
// [Pick.Done] when the attempt ends.
//
// Pick and Done allocate nothing and are lock-free, except that a Done that makes an endpoint
// reach its ejection threshold takes a short lock for the ejection decision; Update, Pick, Done
// and the introspection methods are safe for concurrent use. A Balancer with active health
// checks or interval-based outlier checks (success rate, failure percentage) runs goroutines
// until [Balancer.Close]; Close is idempotent and harmless without health checks, so always
// calling it is the simplest rule. The zero Balancer is not usable.
type Balancer struct {
	cfg       Config         // immutable, normalized
	tau       float64        // DecayTime in ns; immutable
	ssWindow  int64          // SlowStart.Window in ns; immutable
	ssFloor   float64        // SlowStart.MinWeightPercent/100; immutable
	overprov  float64        // 100/Zone.MinHealthyPercent; immutable
	ejectBase int64          // immutable
	ejectMax  int64          // immutable
	maxTimes  int64          // cap of the ejection multiplier; immutable
	policy    policyCode     // cfg.Policy as a small integer for the pick's switch; immutable
	draws     bool           // the policy draws random numbers (hashing ones only without a key); immutable
	hashing   bool           // the policy reads PickInfo.Key (Maglev, ring hash); immutable
	zoneRank  map[string]int // failover zone -> priority level; immutable

	snap atomic.Pointer[snapshot]
	// cur is the view picks use: the current snapshot's, or an older one's for a moment while
	// Update publishes. Picks load it rather than snap, one pointer hop closer to the endpoints.
	cur atomic.Pointer[view]
	// gen counts changes of ejection and health state; a view built at an older gen is stale.
	gen       atomic.Uint64
	ejections atomic.Uint64
	// typical is an average of the latencies of every endpoint's successful requests
	// (float64 bits, ns): the cost peak EWMA assumes for an idle endpoint not measured yet.
	typical atomic.Uint64

	mu     sync.Mutex // serializes Update and ejection decisions
	viewMu sync.Mutex // taken with TryLock by the pick that rebuilds a stale view

	hc  *healthChecker // nil without active health checks; immutable
	sw  *sweeper       // nil without interval-based outlier checks; immutable
	lim *Limiter       // nil without limits; immutable

	updates uint64 // count of snapshots built; guarded by mu

}

// policyCode numbers the policies for the pick's switch, which would otherwise compare
// strings.
type policyCode uint8

const (
	codePeakEWMA policyCode = iota
	codeLeastRequest
	codeRoundRobin
	codeWeightedRoundRobin
	codeRandom
	codeMaglev
	codeRingHash
)

func policyCodeOf(p Policy) policyCode {
	switch p {
	case PolicyLeastRequest:
		return codeLeastRequest
	case PolicyRoundRobin:
		return codeRoundRobin
	case PolicyWeightedRoundRobin:
		return codeWeightedRoundRobin
	case PolicyRandom:
		return codeRandom
	case PolicyMaglev:
		return codeMaglev
	case PolicyRingHash:
		return codeRingHash
	}
	return codePeakEWMA
}

// New returns a balancer configured by cfg, with an empty endpoint set. It validates cfg and
// returns an error naming the first bad field. When cfg.HealthCheck is set, New starts the
// health checker, which does not touch the network until endpoints arrive, and when
// cfg.Outlier asks for success-rate or failure-percentage checks, a goroutine that runs them
// every Outlier.Interval; call Close to stop them.
func New(cfg Config) (*Balancer, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	b := &Balancer{
		cfg:       c,
		tau:       float64(c.DecayTime),
		ssWindow:  int64(c.SlowStart.Window),
		ssFloor:   c.SlowStart.MinWeightPercent / 100,
		overprov:  100 / c.Zone.MinHealthyPercent,
		ejectBase: int64(c.Outlier.BaseEjectionTime),
		ejectMax:  int64(c.Outlier.MaxEjectionTime),
		policy:    policyCodeOf(c.Policy),
		draws:     c.Policy != PolicyRoundRobin && c.Policy != PolicyWeightedRoundRobin,
		hashing:   c.Policy.Hashing(),
		zoneRank:  failoverRank(c.Zone),
	}
	b.maxTimes = (b.ejectMax+b.ejectBase-1)/b.ejectBase + 1
	b.publish(b.newSnapshot(nil))
	if c.HealthCheck != nil {
		probe, err := proberOf(c.HealthCheck.Kind)(*c.HealthCheck)
		if err != nil {
			return nil, fieldErr("HealthCheck", "%v", err)
		}
		b.hc = newHealthChecker(b, *c.HealthCheck, probe)
	}
	b.lim, _ = NewLimiter(c.Limits) // validated by normalize
	if c.Outlier.sweeps() {
		b.sw = newSweeper(b)
	}
	return b, nil
}

// Config returns the balancer's configuration with every default filled in.
func (b *Balancer) Config() Config {
	c := b.cfg
	if c.HealthCheck != nil {
		hc := *c.HealthCheck
		hc.ExpectedStatuses = append([]StatusRange(nil), hc.ExpectedStatuses...)
		c.HealthCheck = &hc
	}
	c.Zone.Failover = append([]string(nil), c.Zone.Failover...)
	if sr := c.Outlier.SuccessRate; sr != nil {
		cp := *sr
		c.Outlier.SuccessRate = &cp
	}
	if fp := c.Outlier.FailurePercentage; fp != nil {
		cp := *fp
		c.Outlier.FailurePercentage = &cp
	}
	c.HashPolicy = slices.Clone(c.HashPolicy)
	return c
}

// Update replaces the endpoint set. The state of an endpoint (latency average, in-flight
// count, ejection, slow start, Retry-After) is kept when its Addr is in both sets; an endpoint
// that is new starts slow start when it is configured (except in the first non-empty set).
// Of several endpoints with the same Addr, the first wins. Update copies eps; the caller keeps
// ownership. Picks in progress finish on the old set.
func (b *Balancer) Update(eps []discovery.Endpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.publish(b.newSnapshot(eps))
	if b.hc != nil {
		b.hc.poke()
	}
}

// publish makes s the current snapshot, with a view of it. Called under b.mu (or from New).
func (b *Balancer) publish(s *snapshot) {
	b.snap.Store(s)
	b.cur.Store(b.buildView(s, 0))
}

// Pick chooses an endpoint for one request attempt according to the policy, zone priority,
// ejections, health and slow start, avoiding the endpoints in info.Tried and those steered
// away from by Retry-After when any other is available. It returns ErrNoEndpoints at once
// when the set is empty. When no endpoint is healthy, or fewer than Config.PanicThreshold
// percent, it picks among all of them. Pick is lock-free and allocates nothing. The caller
// must call Done on the result.
func (b *Balancer) Pick(info PickInfo) (Pick, error) {
	// Seed the random stream of the policies that draw (see random.go).
	var rng pickRand
	needRand := b.draws && (info.Key == 0 || !b.hashing)
	if needRand {
		rng.s = b.rand64()
	}
	v := b.cur.Load()
	if len(v.s.states) == 0 {
		return Pick{}, ErrNoEndpoints
	}
	if info.Now.IsZero() {
		info.Now = time.Now()
	}
	now := info.Now.UnixNano()
	if v.gen != b.gen.Load() || now >= v.validUntil {
		v = b.refresh(v, now)
	}
	var sl *slot
	if b.hashing {
		sl = b.pickHashed(v, &info, now, &rng)
	} else {
		lv := &v.levels[0]
		if len(v.levels) > 1 {
			if !needRand {
				rng.s = b.rand64()
			}
			lv = v.level(&rng)
		}
		switch b.policy {
		case codePeakEWMA:
			sl = b.pickP2C(v, lv, &info, now, true, &rng)
		case codeLeastRequest:
			sl = b.pickP2C(v, lv, &info, now, false, &rng)
		case codeRoundRobin:
			sl = b.pickRoundRobin(v, lv, &info, now)
		case codeWeightedRoundRobin:
			sl = b.pickWeighted(v, lv, &info, now)
		default:
			sl = b.pickRandom(v, lv, &info, now, &rng)
		}
	}
	e := sl.e
	e.inflight.Add(1)
	return Pick{Endpoint: &v.s.eps[sl.i], state: e, start: info.Now}, nil
}

// Close stops the active health checks and the interval-based outlier checks, if any, and
// waits for their goroutines. It is idempotent and always returns nil. Picks still work after
// Close.
func (b *Balancer) Close() error {
	if b.hc != nil {
		b.hc.close()
	}
	if b.sw != nil {
		b.sw.close()
	}
	return nil
}

// Limiter returns the limiter of the balancer's Config.Limits, shared by every caller of
// this method; nil (which limits nothing) when no limit is set.
func (b *Balancer) Limiter() *Limiter { return b.lim }

// Ejections returns how many ejections the outlier detector has made since New.
func (b *Balancer) Ejections() uint64 { return b.ejections.Load() }

// EndpointStats describes one endpoint, for status pages and tests.
type EndpointStats struct {
	Addr         string
	Zone         string
	Weight       uint32        // effective weight
	EWMA         time.Duration // peak EWMA of latency, as of its last sample; 0 before any
	InFlight     int64
	Requests     uint64    // requests reported through Done, except ignored ones
	Failures     uint64    // of which failures and gateway failures
	EjectedUntil time.Time // zero if never ejected; the endpoint is ejected while now is before it
	TimesEjected int       // current ejection multiplier
	BackoffUntil time.Time // zero if never steered away by Retry-After
	Healthy      bool      // passing active health checks (always true without them)
}

// Ejected reports whether the endpoint is ejected at now.
func (s EndpointStats) Ejected(now time.Time) bool { return now.Before(s.EjectedUntil) }

// Endpoints returns a copy of the current endpoints' states, in the order of the last
// Update. It takes no locks on the hot path but is O(n); call it off the request path.
func (b *Balancer) Endpoints() []EndpointStats {
	s := b.snap.Load()
	out := make([]EndpointStats, len(s.states))
	for i, e := range s.states {
		out[i] = EndpointStats{
			Addr:         s.eps[i].Addr,
			Zone:         s.eps[i].Zone,
			Weight:       s.weights[i],
			EWMA:         time.Duration(math.Float64frombits(e.cost.Load())),
			InFlight:     e.inflight.Load(),
			Requests:     e.requests.Load(),
			Failures:     e.failures.Load(),
			EjectedUntil: unixTime(e.ejectedUntil.Load()),
			TimesEjected: int(e.timesEjected.Load()),
			BackoffUntil: unixTime(e.backoffUntil.Load()),
			Healthy:      !e.unhealthy.Load(),
		}
	}
	return out
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// tryEject runs the ejection decision for e, whose consecutive-failure count just reached
// its threshold at now: Envoy's ejectHost.
func (b *Balancer) tryEject(e *endpointState, now int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e.consecGateway.Store(0)
	e.consecFailure.Store(0)
	if b.cfg.Outlier.Disabled || e.ejected(now) {
		return
	}
	s := b.snap.Load()
	for _, x := range s.states {
		if x == e {
			b.ejectLocked(s, e, now)
			return
		}
	}
}

// snapshot is an immutable endpoint set with its precomputed structure. Its views (which
// endpoints are available) are rebuilt as ejections and health change.
type snapshot struct {
	eps     []discovery.Endpoint
	states  []*endpointState
	weights []uint32  // effective weights
	all     []slot    // every endpoint, in order
	levels  [][]int32 // endpoint indexes per zone priority level; empty levels left out
	maglev  []int32   // Maglev lookup table, PolicyMaglev only
	ring    ring      // hash ring, PolicyRingHash only
}

// newSnapshot builds a snapshot of eps, keeping endpoint state by address. Called under b.mu
// (or from New). It is linear in len(eps): endpoints found at the same position as in the
// previous snapshot keep their state without a lookup, and a map of the previous states by
// address is built only when one is not.
func (b *Balancer) newSnapshot(eps []discovery.Endpoint) *snapshot {
	old := b.snap.Load()
	var oldEps []discovery.Endpoint
	var oldStates []*endpointState
	if old != nil {
		oldEps, oldStates = old.eps, old.states
	}
	b.updates++
	mark := b.updates
	rampNew := b.ssWindow > 0 && len(oldStates) > 0
	n := len(eps)
	s := &snapshot{
		eps:     make([]discovery.Endpoint, 0, n),
		states:  make([]*endpointState, 0, n),
		weights: make([]uint32, 0, n),
	}
	var prev map[string]*endpointState // by address; built at the first positional miss
	for k := range eps {
		ep := &eps[k]
		var e *endpointState
		if k < len(oldStates) && oldEps[k].Addr == ep.Addr {
			e = oldStates[k]
		} else {
			if prev == nil {
				prev = make(map[string]*endpointState, len(oldStates)+n-k)
				for i, x := range oldStates {
					prev[oldEps[i].Addr] = x
				}
			}
			if e = prev[ep.Addr]; e == nil {
				e = &endpointState{b: b}
				if rampNew {
					e.slowStart.Store(startPending)
				}
				prev[ep.Addr] = e
			}
		}
		if e.mark == mark {
			continue // a duplicate address: the first wins
		}
		e.mark = mark
		c := *ep
		c.Tags = slices.Clone(ep.Tags)
		if ep.Meta != nil {
			c.Meta = maps.Clone(ep.Meta)
		}
		s.eps = append(s.eps, c)
		s.states = append(s.states, e)
		s.weights = append(s.weights, ep.EffectiveWeight())
	}
	s.all = make([]slot, len(s.states))
	for i, e := range s.states {
		s.all[i] = slot{e: e, i: int32(i), w: s.weights[i]}
	}
	s.levels = zoneLevels(s.eps, b.cfg.Zone, b.zoneRank)
	if b.policy == codeMaglev && len(s.eps) > 0 {
		s.maglev = buildMaglev(s, b.cfg.MaglevTableSize)
	}
	if b.policy == codeRingHash && len(s.eps) > 0 {
		s.ring = buildRing(s, b.cfg.RingHash)
	}
	return s
}

// failoverRank maps each zone of z.Failover to its priority level, from 1.
func failoverRank(z ZoneConfig) map[string]int {
	rank := make(map[string]int, len(z.Failover))
	for i, zone := range z.Failover {
		rank[zone] = i + 1
	}
	return rank
}

// zoneLevels groups endpoint indexes into priority levels: the local zone, each failover
// zone in order, then the rest. All levels share one backing array.
// rank maps each failover zone to its level (1, 2, ...); see failoverRank.
func zoneLevels(eps []discovery.Endpoint, z ZoneConfig, rank map[string]int) [][]int32 {
	all := make([]int32, len(eps))
	if z.Local == "" {
		for i := range all {
			all[i] = int32(i)
		}
		return [][]int32{all}
	}
	rest := len(z.Failover) + 1
	rankOf := func(zone string) int {
		if zone == z.Local {
			return 0
		}
		if r, ok := rank[zone]; ok {
			return r
		}
		return rest
	}
	// Counting sort by rank, stable in endpoint order.
	ranks := make([]int32, len(eps))
	counts := make([]int, rest+2)
	for i := range eps {
		r := rankOf(eps[i].Zone)
		ranks[i] = int32(r)
		counts[r+1]++
	}
	for r := 1; r < len(counts); r++ {
		counts[r] += counts[r-1]
	}
	out := make([][]int32, 0, rest+1)
	for r := 0; r <= rest; r++ {
		if lo, hi := counts[r], counts[r+1]; hi > lo {
			out = append(out, all[lo:hi:hi])
		}
	}
	for i, r := range ranks {
		all[counts[r]] = int32(i)
		counts[r]++
	}
	return out
}

// view is the part of a snapshot that depends on ejection and health: which endpoints are
// available in each priority level, and each level's share of the traffic. It is rebuilt
// when the balancer's gen moves or an ejection ends.
type view struct {
	s          *snapshot
	gen        uint64
	validUntil int64 // unix ns when the next ejection ends
	panic      bool
	levels     []viewLevel
	cum        []uint64 // cumulative share of levels[i], scaled to 1<<32
}

// slot is an available endpoint of a view level with what a pick reads of it, so that a pick
// reaches the endpoint's state in one indirection.
type slot struct {
	e *endpointState
	i int32  // index in the snapshot
	w uint32 // effective weight
}

// strideSlot is the per-slot data of PolicyWeightedRoundRobin, fixed for a view.
type strideSlot struct {
	w     uint32 // weight in units of strideScale/maxWeight, at least 1
	phase uint32 // position in the level times strideScale/len(slots)
}

type viewLevel struct {
	slots     []slot // available endpoints
	stride    []strideSlot
	maxWeight uint32
	// next is the round-robin counter, which every pick of the round-robin policies writes:
	// it gets a cache line of its own, so that it does not slow down the reads of the fields
	// above on other cores.
	_    [64]byte
	next atomic.Uint64
	_    [56]byte
}

// level returns the level for this pick, drawn by the levels' shares. rng is seeded.
func (v *view) level(rng *pickRand) *viewLevel {
	if len(v.levels) == 1 {
		return &v.levels[0]
	}
	r := rng.next() >> 32
	for i := range v.cum {
		if r < v.cum[i] {
			return &v.levels[i]
		}
	}
	return &v.levels[len(v.levels)-1]
}

// refresh returns a view that is fresh at now, rebuilding the current one if it is stale.
// Only one goroutine rebuilds at a time; the others go on with the stale view v meanwhile.
func (b *Balancer) refresh(v *view, now int64) *view {
	if !b.viewMu.TryLock() {
		return v
	}
	defer b.viewMu.Unlock()
	for {
		cur := b.cur.Load()
		if cur.gen == b.gen.Load() && now < cur.validUntil {
			return cur
		}
		nv := b.buildView(cur.s, now)
		if b.cur.CompareAndSwap(cur, nv) {
			return nv
		}
		// Update published a new snapshot meanwhile: look at its view.
	}
}

// buildView computes which endpoints are available at now, the priority levels' shares
// (Envoy's priority load with overprovisioning, normalized when the total health is under
// 100 %) and whether the balancer is in panic mode.
func (b *Balancer) buildView(s *snapshot, now int64) *view {
	v := &view{s: s, gen: b.gen.Load(), validUntil: math.MaxInt64}
	n := len(s.states)
	// One pass over the states: health at now, and when the next ejection ends.
	healthy := 0
	ok := make([]bool, n)
	for i, e := range s.states {
		if u := e.ejectedUntil.Load(); u > now && u < v.validUntil {
			v.validUntil = u
		}
		if e.healthyAt(now) {
			ok[i] = true
			healthy++
		}
	}
	if n == 0 {
		v.levels = make([]viewLevel, 1)
		return v
	}
	if healthy == 0 || 100*float64(healthy)/float64(n) < b.cfg.PanicThreshold {
		v.panic = true
		v.levels = make([]viewLevel, 1)
		b.initLevel(&v.levels[0], s.all, false)
		return v
	}
	// All levels' slots share one backing array.
	slots := make([]slot, 0, n)
	// Levels without share stay in the view (after the others' cumulative share is full) so
	// that a pick avoiding every endpoint of the shared levels can still fall back to them.
	v.levels = make([]viewLevel, 0, len(s.levels))
	loads := make([]float64, 0, len(s.levels))
	remaining := 1.0
	for _, level := range s.levels {
		lo := len(slots)
		for _, i := range level {
			if ok[i] {
				slots = append(slots, slot{e: s.states[i], i: i, w: s.weights[i]})
			}
		}
		avail := len(slots) - lo
		if avail == 0 {
			continue
		}
		health := min(1, float64(avail)/float64(len(level))*b.overprov)
		load := min(remaining, health)
		remaining -= load
		v.levels = append(v.levels, viewLevel{})
		b.initLevel(&v.levels[len(v.levels)-1], slots[lo:len(slots):len(slots)], true)
		loads = append(loads, load)
	}
	total := 1 - remaining
	v.cum = make([]uint64, len(loads))
	acc, last := 0.0, 0
	for i, load := range loads {
		acc += load / total
		v.cum[i] = uint64(acc * (1 << 32))
		if load > 0 {
			last = i
		}
	}
	for i := last; i < len(v.cum); i++ {
		v.cum[i] = 1 << 32
	}
	return v
}

// initLevel fills l with slots and the policy's precomputed data. A level with a shared
// share starts its round-robin counter at a random position.
func (b *Balancer) initLevel(l *viewLevel, slots []slot, randomStart bool) {
	l.slots = slots
	for _, sl := range slots {
		l.maxWeight = max(l.maxWeight, sl.w)
	}
	if randomStart {
		l.next.Store(rand.Uint64N(uint64(len(slots))))
	}
	if b.policy == codeWeightedRoundRobin {
		n := uint64(len(slots))
		l.stride = make([]strideSlot, len(slots))
		for pos, sl := range slots {
			l.stride[pos] = strideSlot{
				w:     uint32(max(uint64(sl.w)*strideScale/uint64(l.maxWeight), 1)),
				phase: uint32(uint64(pos) * strideScale / n),
			}
		}
	}
}
