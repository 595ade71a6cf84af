package grpcbalancer

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/attributes"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
)

// Monitor hears from the policies of the channels it is attached to: it describes their
// endpoints as the balancer core sees them, with their breakers, and counts breaker openings
// and outlier ejections. Attach it to a channel through its resolver's state attributes
// ([WithMonitor]; grpcresolver.WithAttributes puts them in every state). A policy registers
// with the monitor on its first update and leaves it when its channel closes.
//
// Create it with [NewMonitor]. It is safe for concurrent use and holds nothing to close.
type Monitor struct {
	mu       sync.Mutex
	channels map[*lb]uint64 // guarded by mu: each policy, by order of arrival
	next     uint64         // guarded by mu

	opens   atomic.Int64  // breaker transitions to open
	retired atomic.Uint64 // ejections of cores replaced or closed
}

// NewMonitor returns a monitor attached to no channel.
func NewMonitor() *Monitor { return &Monitor{channels: map[*lb]uint64{}} }

type monitorKey struct{}

// WithMonitor returns a (which may be nil) with m added, for resolver.State.Attributes: the
// policy of a channel whose resolver state carries them reports to m.
func WithMonitor(a *attributes.Attributes, m *Monitor) *attributes.Attributes {
	if a == nil {
		return attributes.New(monitorKey{}, m)
	}
	return a.WithValue(monitorKey{}, m)
}

func monitorFrom(a *attributes.Attributes) *Monitor {
	m, _ := a.Value(monitorKey{}).(*Monitor)
	return m
}

func (m *Monitor) add(b *lb) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next++
	m.channels[b] = m.next
}

func (m *Monitor) remove(b *lb) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.channels, b)
}

// ChannelStatus describes one channel attached to a [Monitor].
type ChannelStatus struct {
	// Service is the service the channel's target names ("payments" for
	// "proxyless:///payments").
	Service string
	// Endpoints are those the balancer core holds, sorted by address: the endpoints whose
	// connection is READY (or, while none is, the last that were).
	Endpoints []EndpointStatus
	// Ejections counts the core's outlier ejections.
	Ejections uint64
}

// EndpointStatus is the balancer core's view of one endpoint plus its breaker's state.
type EndpointStatus struct {
	balancer.EndpointStats
	HasBreaker bool          // breakers are on; Breaker is meaningful
	Breaker    breaker.State // the endpoint's breaker state
}

// Channels describes each channel attached to m and still open, by service, then in the
// order they arrived. It is meant for status pages and tests, not the request path.
func (m *Monitor) Channels() []ChannelStatus {
	type entry struct {
		b   *lb
		seq uint64
	}
	m.mu.Lock()
	lbs := make([]entry, 0, len(m.channels))
	for b, seq := range m.channels {
		lbs = append(lbs, entry{b, seq})
	}
	m.mu.Unlock()
	out := make([]ChannelStatus, 0, len(lbs))
	seqs := make([]uint64, 0, len(lbs))
	for _, e := range lbs {
		e.b.mu.Lock()
		core, set, closed := e.b.core, e.b.breakers, e.b.closed
		e.b.mu.Unlock()
		if closed || core == nil {
			continue
		}
		cs := ChannelStatus{Service: e.b.service, Ejections: core.Ejections()}
		for _, es := range core.Endpoints() {
			st := EndpointStatus{EndpointStats: es}
			if set != nil {
				set.Range(func(addr string, br *breaker.Breaker) bool {
					if addr == es.Addr {
						st.HasBreaker, st.Breaker = true, br.State()
						return false
					}
					return true
				})
			}
			cs.Endpoints = append(cs.Endpoints, st)
		}
		out = append(out, cs)
		seqs = append(seqs, e.seq)
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int {
		return cmp.Or(cmp.Compare(out[i].Service, out[j].Service), cmp.Compare(seqs[i], seqs[j]))
	})
	sorted := make([]ChannelStatus, len(out))
	for i, k := range idx {
		sorted[i] = out[k]
	}
	return sorted
}

// BreakerOpens counts the transitions to open of the breakers of every channel attached to
// m, closed ones included.
func (m *Monitor) BreakerOpens() int64 { return m.opens.Load() }

// Ejections counts the outlier ejections of every channel attached to m, closed ones
// included.
func (m *Monitor) Ejections() uint64 {
	m.mu.Lock()
	lbs := make([]*lb, 0, len(m.channels))
	for b := range m.channels {
		lbs = append(lbs, b)
	}
	m.mu.Unlock()
	n := m.retired.Load()
	for _, b := range lbs {
		b.mu.Lock()
		if b.core != nil && !b.closed {
			n += b.core.Ejections()
		}
		b.mu.Unlock()
	}
	return n
}
