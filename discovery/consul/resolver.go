package consul

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/internal/feed"
)

// Resolver follows services in a Consul catalog. It implements discovery.Resolver.
//
// Create one with [New]; the zero value is not usable. A Resolver is safe for concurrent use
// and holds no goroutine of its own; each Watcher it returns runs one until closed. Close it
// when done, after its watchers (a middleware.Transport closes the watchers it started, not
// the resolver it was given), to release its connections to the agent.
//
// # Against a cluster
//
// Point Config.Address at the local client agent, as Consul intends; the agent forwards to
// the servers. What a watcher does when the cluster misbehaves:
//
//   - The leader dies: a blocking query without Near is answered from the agent's streaming
//     view (Consul 1.10 and later), which mostly survives the election unseen; while the
//     agent's stream is not ready (it ran to the dead server), the agent asks a server over
//     RPC instead. A query a server answers over RPC (Near set, an agent without streaming,
//     or that fallback) waits or fails while there is no leader, unless Config.AllowStale
//     lets a follower answer it. Either way the watcher fails static: requests go on to the
//     last good set, and an update made after the election arrives with the watcher's next
//     answer (within RetryMax of the election, if its queries failed meanwhile).
//   - The agent goes away (restart, crash): every watcher fails at the same moment. Each
//     retries after a delay drawn from [e/2, e], e = min(RetryMin·2^(n-1), RetryMax) for the
//     n-th failure in a row (equal jitter), on top of the MaxQueryRate cap. A fleet's retries
//     thus spread over [e/2, e] instead of arriving together, and an update made after the
//     agent's return reaches a watcher within RetryMax plus one query.
//
// The bound on what a fleet sends after a blip, which the tests check against a real cluster:
// in the time T from the moment the agent goes away, however long it stays away, a watcher
// sends at most K + 1 + ⌊T/WaitTime⌋ requests (plus one per change of its service), where K
// is the largest k with Σ_{i=1..k} e_i/2 ≤ T (the retries whose shortest delays fit in T) and
// the 1 is the blocking query after the first answer. With the defaults and T = 10 s: K = 6,
// so at most 7 requests a watcher, 700 for a fleet of 100 watchers, where retrying at the pace
// of the rate cap alone would allow 52 a watcher. Measured (100 watchers, the agent away for
// 3 s): about 570.
//
// Each watcher holds one connection to the agent during its blocking query. Consul limits
// concurrent connections from one client address (limits.http_max_conns_per_client, 200 by
// default): a process following more services than that needs the limit raised.
//
// [Resolver.Stats] counts the queries and errors, and [Resolver.Watches] reports every open
// watcher's state, with the staleness Consul reported for its last answer.
type Resolver struct {
	cfg    Config // immutable after New
	client *api.Client
	own    *http.Transport // the transport New made, closed by Close; nil when Config.HTTPClient was given

	queries, errors atomic.Int64 // over every watcher, since New

	mu       sync.Mutex
	closed   bool                  // guarded by mu
	watchers map[*Watcher]struct{} // guarded by mu; the open watchers
}

var _ discovery.Resolver = (*Resolver)(nil)

// New validates cfg and returns a resolver. It does not contact Consul.
func New(cfg Config) (*Resolver, error) {
	own := (*http.Transport)(nil)
	if cfg.HTTPClient == nil {
		own = http.DefaultTransport.(*http.Transport).Clone()
		cfg.HTTPClient = &http.Client{Transport: own}
	}
	client, err := newClient(&cfg)
	if err != nil {
		return nil, err
	}
	return &Resolver{cfg: cfg, client: client, own: own, watchers: map[*Watcher]struct{}{}}, nil
}

// Close releases the resolver's idle connections to the agent (those of the HTTP client New
// made; a Config.HTTPClient is the caller's to close) and makes later Watch calls fail with
// discovery.ErrClosed. Watchers already returned are not stopped: close them first. It is
// idempotent.
func (r *Resolver) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	if r.own != nil {
		r.own.CloseIdleConnections()
	}
	return nil
}

func newClient(cfg *Config) (*api.Client, error) {
	scheme, hostport, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	client, err := api.NewClient(&api.Config{
		Address:    hostport,
		Scheme:     scheme,
		Datacenter: cfg.Datacenter,
		Token:      cfg.Token,
		HttpClient: hc,
	})
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	return client, nil
}

// Watch starts following service and returns at once; the first call to Next waits for the
// first answer. The ctx is not used past the call.
func (r *Resolver) Watch(_ context.Context, service string) (discovery.Watcher, error) {
	if service == "" {
		return nil, errors.New("consul: Watch: service name is empty")
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{
		r:       r,
		service: service,
		feed:    feed.New(r.cfg.EmptyAnswers, r.cfg.EmptyGrace),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	r.mu.Lock()
	closed := r.closed
	if !closed {
		r.watchers[w] = struct{}{}
	}
	r.mu.Unlock()
	if closed {
		cancel()
		return nil, discovery.ErrClosed
	}
	go w.run(ctx)
	return w, nil
}

// Watcher follows one service. It implements discovery.Watcher and discovery.StatusReporter.
// Next must not be called concurrently with itself; Status and Close may be called at any time.
type Watcher struct {
	r       *Resolver
	service string
	feed    *feed.Feed
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returns
	once    sync.Once
	seen    uint64 // version last returned by Next; only Next touches it

	queries, errors atomic.Int64
	mu              sync.Mutex
	last            api.QueryMeta // guarded by mu; the last answer's metadata
	lastAt          time.Time     // guarded by mu; when it arrived
}

var (
	_ discovery.Watcher        = (*Watcher)(nil)
	_ discovery.StatusReporter = (*Watcher)(nil)
)

// Next returns the current set once one is known, then blocks until it changes.
func (w *Watcher) Next(ctx context.Context) ([]discovery.Endpoint, error) {
	return w.feed.Next(ctx, &w.seen, w.done)
}

// Status reports whether the watcher serves a stale set.
func (w *Watcher) Status() discovery.Status { return w.feed.Status() }

// Close stops the watch, cancelling a blocking query in flight, and waits for its goroutine.
// It is idempotent.
func (w *Watcher) Close() error {
	w.once.Do(func() {
		w.cancel()
		w.r.mu.Lock()
		delete(w.r.watchers, w)
		w.r.mu.Unlock()
	})
	<-w.done
	return nil
}

// run is the blocking-query loop.
func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	cfg := &w.r.cfg
	limiter := rate.NewLimiter(rate.Limit(cfg.MaxQueryRate), queryBurst)
	var index uint64
	failures := 0
	for {
		if limiter.Wait(ctx) != nil {
			return
		}
		entries, meta, err := w.query(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			w.errors.Add(1)
			w.r.errors.Add(1)
			w.feed.Fail(fmt.Errorf("consul: query %q: %w", w.service, err), time.Now())
			cfg.Logger.Warn("consul: query failed", "service", w.service, "error", err, "failures", failures)
			index = 0 // the agent may have restarted with a fresh index; ask afresh
			if !backoff.Sleep(ctx, backoff.EqualJitter(cfg.RetryMin, cfg.RetryMax, failures)) {
				return
			}
			continue
		}
		failures = 0
		index = nextIndex(index, meta.LastIndex)
		w.mu.Lock()
		w.last, w.lastAt = *meta, time.Now()
		w.mu.Unlock()

		eps, err := endpoints(entries, cfg.ZoneKey)
		if err != nil {
			w.feed.Fail(fmt.Errorf("consul: update of %q rejected: %w", w.service, err), time.Now())
			cfg.Logger.Warn("consul: update rejected", "service", w.service, "error", err)
			continue
		}
		if !w.feed.Publish(eps, meta.LastIndex, time.Now()) {
			cfg.Logger.Info("consul: empty answer not yet believed", "service", w.service)
		}
	}
}

// query sends one (blocking, when index > 0) health query.
func (w *Watcher) query(ctx context.Context, index uint64) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	cfg := &w.r.cfg
	wait := cfg.WaitTime
	if d := w.feed.EmptyGraceLeft(time.Now()); d > 0 && d < wait {
		wait = d // come back in time to believe a confirmed empty set
	}
	q := (&api.QueryOptions{
		Datacenter: cfg.Datacenter,
		AllowStale: cfg.AllowStale,
		Near:       cfg.Near,
		Filter:     cfg.Filter,
		WaitIndex:  index,
		WaitTime:   wait,
	}).WithContext(ctx)
	var tags []string
	if cfg.Tag != "" {
		tags = []string{cfg.Tag}
	}
	query := w.r.client.Health().ServiceMultipleTags
	if cfg.Connect {
		query = w.r.client.Health().ConnectMultipleTags
	}
	w.queries.Add(1)
	w.r.queries.Add(1)
	return query(w.service, tags, !cfg.IncludeUnhealthy, q)
}

// nextIndex applies Consul's rules for blocking-query indexes: reset to 0 when the index goes
// backwards (the next query then returns at once with a fresh index), and never block on 0,
// which would return at once every time: treat a 0 answer as 1.
func nextIndex(prev, got uint64) uint64 {
	if got < prev {
		return 0
	}
	if got == 0 {
		return 1
	}
	return got
}

// endpoints converts Consul health entries into endpoints. It rejects the whole answer when
// any entry is malformed (no service, a port out of range, an address that is neither an IP
// nor a host name), so that one bad answer cannot replace a good set with a partial one.
// Weights come from Weights.Passing (Weights.Warning when a check warns); the zone from the
// service's metadata key zoneKey, else the node's.
func endpoints(entries []*api.ServiceEntry, zoneKey string) ([]discovery.Endpoint, error) {
	eps := make([]discovery.Endpoint, 0, len(entries))
	for i, e := range entries {
		if e == nil || e.Service == nil {
			return nil, fmt.Errorf("entry %d: no service", i)
		}
		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		if err := discovery.ValidateHost(host); err != nil {
			return nil, fmt.Errorf("entry %d (%q): %w", i, e.Service.ID, err)
		}
		if e.Service.Port < 1 || e.Service.Port > 65535 {
			return nil, fmt.Errorf("entry %d (%q): port %d out of range", i, e.Service.ID, e.Service.Port)
		}
		weight := e.Service.Weights.Passing
		if e.Checks.AggregatedStatus() == api.HealthWarning {
			weight = e.Service.Weights.Warning
		}
		if weight < 0 {
			weight = 0
		}
		ep := discovery.Endpoint{
			Addr:   net.JoinHostPort(host, strconv.Itoa(e.Service.Port)),
			Weight: uint32(min(int64(weight), math.MaxUint32)), // int64: an int may be 32 bits
			Zone:   e.Service.Meta[zoneKey],
			Tags:   append([]string(nil), e.Service.Tags...),
		}
		if ep.Zone == "" && e.Node != nil {
			ep.Zone = e.Node.Meta[zoneKey]
		}
		if len(e.Service.Meta) > 0 {
			ep.Meta = make(map[string]string, len(e.Service.Meta))
			for k, v := range e.Service.Meta {
				ep.Meta[k] = v
			}
		}
		eps = append(eps, ep)
	}
	return eps, nil
}
