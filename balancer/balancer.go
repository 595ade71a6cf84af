package balancer

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyless/proxyless/discovery"
)

// Balancer picks endpoints of one destination service. Create it with [New], feed it endpoint
// sets with [Balancer.Update], and call [Balancer.Pick] per request attempt and
// [Pick.Done] when the attempt ends.
//
// Pick and Done are lock-free and allocate nothing; Update, Pick, Done and the introspection
// methods are safe for concurrent use. A Balancer with active health checks runs goroutines
// until [Balancer.Close]; Close is idempotent and harmless without health checks, so always
// calling it is the simplest rule. The zero Balancer is not usable.
type Balancer struct {
	cfg       Config  // immutable, normalized
	tau       float64 // DecayTime in ns; immutable
	ssWindow  int64   // SlowStart.Window in ns; immutable
	ssFloor   float64 // SlowStart.MinWeightPercent/100; immutable
	overprov  float64 // 100/Zone.MinHealthyPercent; immutable
	ejectBase int64   // immutable
	ejectMax  int64   // immutable
	maxTimes  int64   // cap of the ejection multiplier; immutable

	snap atomic.Pointer[snapshot]
	// gen counts changes of ejection and health state; a view built at an older gen is stale.
	gen       atomic.Uint64
	ejections atomic.Uint64

	mu     sync.Mutex // serializes Update and ejection decisions
	viewMu sync.Mutex // taken with TryLock by the pick that rebuilds a stale view

	hc *healthChecker // nil without active health checks; immutable
}

// New returns a balancer configured by cfg, with an empty endpoint set. It validates cfg and
// returns an error naming the first bad field. When cfg.HealthCheck is set, New starts the
// health checker, which does not touch the network until endpoints arrive; call Close to stop
// it.
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
	}
	b.maxTimes = (b.ejectMax+b.ejectBase-1)/b.ejectBase + 1
	b.snap.Store(b.newSnapshot(nil))
	if c.HealthCheck != nil {
		probe, closeIdle := newHTTPProber(*c.HealthCheck)
		b.hc = newHealthChecker(b, *c.HealthCheck, probe, closeIdle)
	}
	return b, nil
}

// Config returns the balancer's configuration with every default filled in.
func (b *Balancer) Config() Config {
	c := b.cfg
	if c.HealthCheck != nil {
		hc := *c.HealthCheck
		c.HealthCheck = &hc
	}
	c.Zone.Failover = append([]string(nil), c.Zone.Failover...)
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
	b.snap.Store(b.newSnapshot(eps))
	if b.hc != nil {
		b.hc.poke()
	}
}

// Pick chooses an endpoint for one request attempt according to the policy, zone priority,
// ejections, health and slow start, avoiding the endpoints in info.Tried and those steered
// away from by Retry-After when any other is available. It returns ErrNoEndpoints at once
// when the set is empty. When no endpoint is healthy, or fewer than Config.PanicThreshold
// percent, it picks among all of them. Pick is lock-free and allocates nothing. The caller
// must call Done on the result.
func (b *Balancer) Pick(info PickInfo) (Pick, error) {
	s := b.snap.Load()
	if len(s.states) == 0 {
		return Pick{}, ErrNoEndpoints
	}
	if info.Now.IsZero() {
		info.Now = time.Now()
	}
	now := info.Now.UnixNano()
	v := s.view.Load()
	if v.gen != b.gen.Load() || now >= v.validUntil {
		v = b.refresh(s, now)
	}
	var i int32
	switch b.cfg.Policy {
	case PolicyMaglev:
		i = b.pickMaglev(s, v, &info, now)
	default:
		lv := v.level()
		switch b.cfg.Policy {
		case PolicyRoundRobin:
			i = b.pickRoundRobin(s, lv, &info, now)
		case PolicyWeightedRoundRobin:
			i = b.pickWeighted(s, lv, &info, now)
		case PolicyRandom:
			i = b.pickRandom(s, lv, &info, now)
		case PolicyLeastRequest:
			i = b.pickP2C(s, lv, &info, now, false)
		default:
			i = b.pickP2C(s, lv, &info, now, true)
		}
	}
	e := s.states[i]
	e.inflight.Add(1)
	return Pick{Endpoint: &s.eps[i], state: e, start: info.Now}, nil
}

// Close stops the active health checks, if any, and waits for their goroutines. It is
// idempotent and always returns nil. Picks still work after Close.
func (b *Balancer) Close() error {
	if b.hc != nil {
		b.hc.close()
	}
	return nil
}

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
			Addr:         e.addr,
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
	member, ejected := false, 0
	for _, x := range s.states {
		if x == e {
			member = true
		}
		if x.ejected(now) {
			ejected++
		}
	}
	if !member {
		return
	}
	pct := 100 * float64(ejected+1) / float64(len(s.states))
	if pct > b.cfg.Outlier.MaxEjectionPercent && !(b.cfg.Outlier.AlwaysEjectOne && ejected == 0) {
		return
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
}

// snapshot is an immutable endpoint set with its precomputed structure. Only view changes.
type snapshot struct {
	eps     []discovery.Endpoint
	states  []*endpointState
	weights []uint32  // effective weights
	levels  [][]int32 // endpoint indexes per zone priority level; empty levels left out
	maglev  []int32   // Maglev lookup table, PolicyMaglev only
	view    atomic.Pointer[view]
}

// newSnapshot builds a snapshot of eps, keeping endpoint state by address. Called under b.mu
// (or from New).
func (b *Balancer) newSnapshot(eps []discovery.Endpoint) *snapshot {
	old := b.snap.Load()
	prev := map[string]*endpointState{}
	if old != nil {
		for _, e := range old.states {
			prev[e.addr] = e
		}
	}
	rampNew := b.ssWindow > 0 && old != nil && len(old.states) > 0
	s := &snapshot{
		eps:     make([]discovery.Endpoint, 0, len(eps)),
		states:  make([]*endpointState, 0, len(eps)),
		weights: make([]uint32, 0, len(eps)),
	}
	seen := make(map[string]struct{}, len(eps))
	for _, ep := range eps {
		if _, dup := seen[ep.Addr]; dup {
			continue
		}
		seen[ep.Addr] = struct{}{}
		e := prev[ep.Addr]
		if e == nil {
			e = &endpointState{b: b, addr: ep.Addr}
			if rampNew {
				e.slowStart.Store(startPending)
			}
		}
		s.eps = append(s.eps, ep)
		s.states = append(s.states, e)
		s.weights = append(s.weights, ep.EffectiveWeight())
	}
	s.eps = discovery.Clone(s.eps)
	s.levels = zoneLevels(s.eps, b.cfg.Zone)
	if b.cfg.Policy == PolicyMaglev && len(s.eps) > 0 {
		s.maglev = buildMaglev(s, b.cfg.MaglevTableSize)
	}
	s.view.Store(b.buildView(s, 0))
	return s
}

// zoneLevels groups endpoint indexes into priority levels: the local zone, each failover
// zone in order, then the rest.
func zoneLevels(eps []discovery.Endpoint, z ZoneConfig) [][]int32 {
	if z.Local == "" {
		all := make([]int32, len(eps))
		for i := range all {
			all[i] = int32(i)
		}
		return [][]int32{all}
	}
	rank := make(map[string]int, len(z.Failover)+1)
	rank[z.Local] = 0
	for i, zone := range z.Failover {
		rank[zone] = i + 1
	}
	rest := len(z.Failover) + 1
	levels := make([][]int32, rest+1)
	for i, ep := range eps {
		r, ok := rank[ep.Zone]
		if !ok {
			r = rest
		}
		levels[r] = append(levels[r], int32(i))
	}
	out := levels[:0]
	for _, l := range levels {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// view is the part of a snapshot that depends on ejection and health: which endpoints are
// available in each priority level, and each level's share of the traffic. It is rebuilt
// when the balancer's gen moves or an ejection ends.
type view struct {
	gen        uint64
	validUntil int64 // unix ns when the next ejection ends
	panic      bool
	levels     []viewLevel
	cum        []uint64 // cumulative share of levels[i], scaled to 1<<32
}

type viewLevel struct {
	idx       []int32 // available endpoints
	maxWeight uint32
	next      atomic.Uint64 // round-robin counter
}

// level returns the level for this pick, drawn by the levels' shares.
func (v *view) level() *viewLevel {
	if len(v.levels) == 1 {
		return &v.levels[0]
	}
	r := uint64(rand.Uint32())
	for i := range v.cum {
		if r < v.cum[i] {
			return &v.levels[i]
		}
	}
	return &v.levels[len(v.levels)-1]
}

// refresh rebuilds s's view if it is stale. Only one goroutine rebuilds at a time; the others
// go on with the stale view meanwhile.
func (b *Balancer) refresh(s *snapshot, now int64) *view {
	if !b.viewMu.TryLock() {
		return s.view.Load()
	}
	defer b.viewMu.Unlock()
	v := s.view.Load()
	if v.gen != b.gen.Load() || now >= v.validUntil {
		v = b.buildView(s, now)
		s.view.Store(v)
	}
	return v
}

// buildView computes which endpoints are available at now, the priority levels' shares
// (Envoy's priority load with overprovisioning, normalized when the total health is under
// 100 %) and whether the balancer is in panic mode.
func (b *Balancer) buildView(s *snapshot, now int64) *view {
	v := &view{gen: b.gen.Load(), validUntil: math.MaxInt64}
	healthy := 0
	for _, e := range s.states {
		if u := e.ejectedUntil.Load(); u > now && u < v.validUntil {
			v.validUntil = u
		}
		if e.healthyAt(now) {
			healthy++
		}
	}
	n := len(s.states)
	if n == 0 {
		v.levels = make([]viewLevel, 1)
		return v
	}
	if healthy == 0 || 100*float64(healthy)/float64(n) < b.cfg.PanicThreshold {
		v.panic = true
		all := make([]int32, n)
		for i := range all {
			all[i] = int32(i)
		}
		v.levels = []viewLevel{{idx: all, maxWeight: maxWeight(s, all)}}
		return v
	}
	// Levels without share stay in the view (after the others' cumulative share is full) so
	// that a pick avoiding every endpoint of the shared levels can still fall back to them.
	type lvl struct {
		idx  []int32
		load float64
	}
	ls := make([]lvl, 0, len(s.levels))
	remaining := 1.0
	for _, level := range s.levels {
		var avail []int32
		for _, i := range level {
			if s.states[i].healthyAt(now) {
				avail = append(avail, i)
			}
		}
		if len(avail) == 0 {
			continue
		}
		health := min(1, float64(len(avail))/float64(len(level))*b.overprov)
		load := min(remaining, health)
		remaining -= load
		ls = append(ls, lvl{avail, load})
	}
	total := 1 - remaining
	v.levels = make([]viewLevel, len(ls))
	v.cum = make([]uint64, len(ls))
	acc, last := 0.0, 0
	for i, l := range ls {
		v.levels[i].idx = l.idx
		v.levels[i].maxWeight = maxWeight(s, l.idx)
		v.levels[i].next.Store(rand.Uint64N(uint64(len(l.idx))))
		acc += l.load / total
		v.cum[i] = uint64(acc * (1 << 32))
		if l.load > 0 {
			last = i
		}
	}
	for i := last; i < len(v.cum); i++ {
		v.cum[i] = 1 << 32
	}
	return v
}

func maxWeight(s *snapshot, idx []int32) uint32 {
	var m uint32
	for _, i := range idx {
		m = max(m, s.weights[i])
	}
	return m
}
