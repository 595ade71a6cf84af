package consul

import (
	"cmp"
	"slices"
	"time"

	"github.com/proxyless/proxyless/discovery"
)

// WatchStatus is a watcher's state: whether it serves a stale set (the embedded
// discovery.Status, as Status reports it) and what Consul said about its last answer.
type WatchStatus struct {
	// Service is the watched service.
	Service string
	discovery.Status
	// AllowStale is Config.AllowStale: whether any server may answer the queries.
	AllowStale bool
	// Backend is the X-Consul-Query-Backend of the last answer: "streaming" when the agent
	// answered from its own view of the service, kept current by a subscription to the
	// servers (the default of Consul 1.10 and later, for blocking queries without Near), or
	// "blocking-query" when a server answered over RPC. A streaming answer carries no
	// KnownLeader or LastContact: the agent's view outlives an election.
	Backend string
	// KnownLeader is whether the server that gave the last answer knew of a leader. False
	// during an election, when a follower answered a stale read (or before the first answer).
	KnownLeader bool
	// LastContact is how long the server that gave the last answer had gone without hearing
	// from the leader (X-Consul-LastContact): 0 when the leader answered, and growing on a
	// follower cut off from it. Only stale reads can be answered by a follower.
	LastContact time.Duration
	// Index is the Consul index of the last answer (X-Consul-Index); 0 before the first.
	Index uint64
	// AnsweredAt is when the last answer arrived; zero before the first.
	AnsweredAt time.Time
	// Queries counts the requests the watcher sent to the agent, Errors those that failed.
	Queries, Errors int64
}

// WatchStatus returns the watcher's state. It is safe to call at any time.
func (w *Watcher) WatchStatus() WatchStatus {
	w.mu.Lock()
	meta, at := w.last, w.lastAt
	w.mu.Unlock()
	return WatchStatus{
		Service:     w.service,
		Status:      w.feed.Status(),
		AllowStale:  w.r.cfg.AllowStale,
		Backend:     meta.QueryBackend,
		KnownLeader: meta.KnownLeader,
		LastContact: meta.LastContact,
		Index:       meta.LastIndex,
		AnsweredAt:  at,
		Queries:     w.queries.Load(),
		Errors:      w.errors.Load(),
	}
}

// Stats counts a resolver's work.
type Stats struct {
	// Watchers is the number of open watchers.
	Watchers int
	// Queries counts the requests every watcher sent to the agent since New; Errors those
	// that failed.
	Queries, Errors int64
}

// Stats returns the resolver's counters.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	n := len(r.watchers)
	r.mu.Unlock()
	return Stats{Watchers: n, Queries: r.queries.Load(), Errors: r.errors.Load()}
}

// Watches returns the state of every open watcher, sorted by service. A middleware.Transport
// opens its watchers through the resolver it was given: this is how its owner sees them.
func (r *Resolver) Watches() []WatchStatus {
	r.mu.Lock()
	ws := make([]*Watcher, 0, len(r.watchers))
	for w := range r.watchers {
		ws = append(ws, w)
	}
	r.mu.Unlock()
	out := make([]WatchStatus, len(ws))
	for i, w := range ws {
		out[i] = w.WatchStatus()
	}
	slices.SortFunc(out, func(a, b WatchStatus) int { return cmp.Compare(a.Service, b.Service) })
	return out
}
