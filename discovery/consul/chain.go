package consul

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"go.yaml.in/yaml/v3"
	"golang.org/x/time/rate"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/route"
)

// ChainTarget is what a [ChainWatcher] loads its documents into: a middleware.Config (a
// route table and the policies of each destination), whose Load refuses an invalid document
// and keeps what it had. It has the shape of route/reload's Target.
type ChainTarget interface {
	Load(data []byte) error
	Version() uint64
}

// ChainResult reports one attempt by a [ChainWatcher] to follow a change.
type ChainResult struct {
	// Service is the chain that changed, or "" when instance health changed a failover.
	Service string
	// Version is the target's version after the load; 0 when Err is set or nothing changed.
	Version uint64
	// Err is why a chain was refused or the document could not be loaded; what was in force
	// stays. It is a *ChainError for a chain the library cannot follow.
	Err error
	// Warnings name what the chains in force ask for that is approximated or not applied.
	Warnings []string
}

// ChainOption configures [WatchChains].
type ChainOption interface {
	applyChain(*chainOptions)
}

type chainOptionFunc func(*chainOptions)

func (f chainOptionFunc) applyChain(o *chainOptions) { f(o) }

type chainOptions struct {
	local map[string]any
	err   error
	hook  func(ChainResult)
}

// WithLocalDocument gives the local configuration document (YAML or JSON, the target's own
// format: routes, default, limits, destinations) that takes precedence over the chains: its
// routes come before the chains' routes, so a request a local route matches goes where the
// local route says; its default applies only when neither matches; its destination policies
// replace the chains' for the services they name. Default: none; the chains alone.
func WithLocalDocument(doc []byte) ChainOption {
	return chainOptionFunc(func(o *chainOptions) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			o.err = fmt.Errorf("consul: WithLocalDocument: %w", err)
			return
		}
		if r, ok := m["routes"]; ok && r != nil {
			if _, ok := r.([]any); !ok {
				o.err = errors.New("consul: WithLocalDocument: routes: want a list")
				return
			}
		}
		if d, ok := m["destinations"]; ok && d != nil {
			if _, ok := d.(map[string]any); !ok {
				o.err = errors.New("consul: WithLocalDocument: destinations: want a mapping")
				return
			}
		}
		if err := checkLocalRoutes(m); err != nil {
			o.err = fmt.Errorf("consul: WithLocalDocument: %w", err)
			return
		}
		o.local = m
	})
}

// checkLocalRoutes validates the route part of a local document (all but its destinations,
// which the target checks when it loads them) as the route package does.
func checkLocalRoutes(m map[string]any) error {
	routes := make(map[string]any, len(m))
	for k, v := range m {
		if k != "destinations" {
			routes[k] = v
		}
	}
	if len(routes) == 0 {
		return nil
	}
	b, err := json.Marshal(routes)
	if err != nil {
		return err
	}
	if _, err := route.ParseConfig(b); err != nil {
		var ce *route.ConfigError
		if errors.As(err, &ce) {
			c := *ce
			c.Line, c.Column = 0, 0 // they would point into the re-encoded document
			return &c
		}
		return err
	}
	return nil
}

// WithChainHook makes the watcher report every change it follows, good or refused, to fn,
// called from the watcher's goroutine without locks held. Default: none.
func WithChainHook(fn func(ChainResult)) ChainOption {
	return chainOptionFunc(func(o *chainOptions) { o.hook = fn })
}

// ChainWatcher follows the compiled discovery chains of services in Consul
// (/v1/discovery-chain/<service>, with blocking queries) and the health of the services their
// failovers name, and loads the routes and destination policies they compile to (see
// [CompileChain]) into a target, typically a middleware.Config given to the transport with
// WithConfig. A chain that cannot be followed is reported and the one in force stays; so do
// query errors (retried with backoff): the watcher fails static.
//
// Create one with [WatchChains] and Close it when done. It is safe for concurrent use.
type ChainWatcher struct {
	cfg    Config // immutable
	client *api.Client
	own    *http.Transport // closed by Close; nil when Config.HTTPClient was given
	target ChainTarget
	opts   chainOptions
	order  []string // the chains' services, in the caller's order; immutable

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	signal chan struct{} // capacity 1: something changed

	mu      sync.Mutex
	chains  map[string]chainAnswer // guarded by mu; the last good chain of each service
	health  map[string][]instance  // guarded by mu; by service, once known
	health0 map[string]bool        // guarded by mu; services whose health is followed
	errs    []ChainResult          // guarded by mu; refusals to report
	doc     []byte                 // guarded by mu; the last document loaded
	status  discovery.Status       // guarded by mu
	failing map[string]error       // guarded by mu; the queries whose last attempt failed
}

// instance is what a failover decision needs of one instance.
type instance struct {
	tags    []string
	meta    map[string]string
	healthy bool // passing or warning
}

// WatchChains starts following the discovery chains of services and returns at once; the
// first document is loaded into target as soon as the first chain arrives (wait for it with
// [WithChainHook] or the target's Version). Every route of a service's chain matches requests
// whose host is the service's name (http://<service>/...). The health that decides a
// failover is that of the services' instances, or, with cfg.Connect, of their mesh endpoints
// (/v1/health/connect/<service>), as the resolver with the same Config sees them.
func WatchChains(cfg Config, services []string, target ChainTarget, opts ...ChainOption) (*ChainWatcher, error) {
	if target == nil {
		return nil, errors.New("consul: WatchChains: nil target")
	}
	if len(services) == 0 {
		return nil, errors.New("consul: WatchChains: no services")
	}
	var o chainOptions
	for _, opt := range opts {
		if opt != nil {
			opt.applyChain(&o)
		}
	}
	if o.err != nil {
		return nil, o.err
	}
	order := slices.Clone(services)
	for i, s := range order {
		if validName("", s) != nil {
			return nil, fmt.Errorf("consul: WatchChains: services[%d]: bad service name %q (want letters, digits, '-', '_', '.')", i, truncateFilter(s))
		}
		if slices.Index(order, s) != i {
			return nil, fmt.Errorf("consul: WatchChains: services[%d]: %q named twice", i, s)
		}
	}
	own := (*http.Transport)(nil)
	if cfg.HTTPClient == nil {
		own = http.DefaultTransport.(*http.Transport).Clone()
		cfg.HTTPClient = &http.Client{Transport: own}
	}
	hc := *cfg.HTTPClient // the caller's client, its answers capped in size
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	hc.Transport = limitBody{next: next, max: maxAnswerBytes}
	cfg.HTTPClient = &hc
	client, err := newClient(&cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &ChainWatcher{
		cfg: cfg, client: client, own: own, target: target, opts: o, order: order,
		cancel: cancel, signal: make(chan struct{}, 1),
		chains: map[string]chainAnswer{}, health: map[string][]instance{}, health0: map[string]bool{},
		failing: map[string]error{},
	}
	w.wg.Add(1 + len(order))
	go w.publish(ctx)
	for _, s := range order {
		go w.followChain(ctx, s)
	}
	return w, nil
}

// Close stops every query, waits for the watcher's goroutines and releases its connections.
// The target keeps the last document loaded. It is idempotent.
func (w *ChainWatcher) Close() error {
	w.once.Do(func() {
		w.cancel()
		w.wg.Wait()
		if w.own != nil {
			w.own.CloseIdleConnections()
		}
	})
	return nil
}

// Services returns the services whose chains the watcher follows, in the order given.
func (w *ChainWatcher) Services() []string { return slices.Clone(w.order) }

// Document returns the last document the watcher loaded into its target (JSON), or nil.
func (w *ChainWatcher) Document() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.doc)
}

func (w *ChainWatcher) poke() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// loop runs query with blocking-query indexes, rate limited, backing off after errors, until
// the watcher closes. query returns the answer's index.
func (w *ChainWatcher) loop(ctx context.Context, what string, query func(q *api.QueryOptions) (uint64, error)) {
	defer w.wg.Done()
	limiter := rate.NewLimiter(rate.Limit(w.cfg.MaxQueryRate), queryBurst)
	var index uint64
	failures := 0
	for limiter.Wait(ctx) == nil {
		q := (&api.QueryOptions{Datacenter: w.cfg.Datacenter, WaitIndex: index, WaitTime: w.cfg.WaitTime}).WithContext(ctx)
		got, err := query(q)
		if ctx.Err() != nil {
			return
		}
		w.record(what, err)
		if err != nil {
			failures++
			w.cfg.Logger.Warn("consul: query failed", "query", what, "error", err, "failures", failures)
			index = 0
			if !backoff.Sleep(ctx, backoff.HalfJitter(w.cfg.RetryMin, w.cfg.RetryMax, failures)) {
				return
			}
			continue
		}
		failures = 0
		index = nextIndex(index, got)
	}
}

// record notes the result of one query for Status.
func (w *ChainWatcher) record(what string, err error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failing[what] = err
		if !w.status.Stale {
			w.status.Stale, w.status.StaleSince = true, now
		}
		w.status.LastError = err
		return
	}
	delete(w.failing, what)
	w.status.LastUpdate = now
	if len(w.failing) == 0 {
		w.status.Stale, w.status.StaleSince, w.status.LastError = false, time.Time{}, nil
	}
}

// Status reports whether the rules in force are stale: true while a query of a chain or of
// a failover's health fails (the agent is down, say), and the last error. The rules in force
// stay while it is.
func (w *ChainWatcher) Status() discovery.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// followChain follows one service's compiled chain.
func (w *ChainWatcher) followChain(ctx context.Context, service string) {
	w.loop(ctx, "discovery-chain/"+service, func(q *api.QueryOptions) (uint64, error) {
		var raw json.RawMessage
		meta, err := w.client.Raw().Query("/v1/discovery-chain/"+service, &raw, q)
		if err != nil {
			if ctx.Err() == nil {
				w.refuse(ChainResult{Service: service, Err: fmt.Errorf("consul: discovery chain %s: %w", service, err)})
			}
			return 0, err
		}
		ans, err := decodeChainAnswer(raw)
		switch {
		case err != nil:
			err = &ChainError{Service: service, Err: err}
		case ans.chain != nil && ans.chain.ServiceName != service:
			err = &ChainError{Service: service, Err: fmt.Errorf("answer is the chain of %q", ans.chain.ServiceName)}
		default:
			var rules *ChainRules
			if rules, err = ans.compile(nil); err == nil {
				w.followHealth(ctx, rules.Failover)
			}
		}
		w.mu.Lock()
		if err == nil {
			w.chains[service] = ans
		}
		w.mu.Unlock()
		if err != nil {
			w.refuse(ChainResult{Service: service, Err: err})
		}
		w.poke()
		return meta.LastIndex, nil
	})
}

// refuse queues a refusal for the publisher to report.
func (w *ChainWatcher) refuse(r ChainResult) {
	w.mu.Lock()
	if len(w.errs) < 64 {
		w.errs = append(w.errs, r)
	}
	w.mu.Unlock()
	w.poke()
}

// followHealth starts following the health of the services not yet followed. The watches
// last until Close.
func (w *ChainWatcher) followHealth(ctx context.Context, services []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range services {
		if w.health0[s] || len(w.health0) >= maxChainNodes || ctx.Err() != nil {
			continue
		}
		w.health0[s] = true
		w.wg.Add(1)
		go w.loop(ctx, "health/"+s, func(q *api.QueryOptions) (uint64, error) {
			query := w.client.Health().Service
			if w.cfg.Connect {
				query = w.client.Health().Connect // the mesh endpoints
			}
			entries, meta, err := query(s, "", false, q)
			if err != nil {
				return 0, err
			}
			insts := make([]instance, 0, len(entries))
			for _, e := range entries {
				if e == nil || e.Service == nil {
					continue
				}
				st := e.Checks.AggregatedStatus()
				insts = append(insts, instance{tags: e.Service.Tags, meta: e.Service.Meta, healthy: st == api.HealthPassing || st == api.HealthWarning})
			}
			w.mu.Lock()
			w.health[s] = insts
			w.mu.Unlock()
			w.poke()
			return meta.LastIndex, nil
		})
	}
}

// down reports whether every known instance of service in subset is critical (or there is
// none); false while the service's health is not yet known. Called with mu held.
func (w *ChainWatcher) down(service string, subset route.Subset) bool {
	insts, known := w.health[service]
	if !known {
		return false
	}
	for _, in := range insts {
		if in.healthy && inSubset(in, subset) {
			return false
		}
	}
	return true
}

func inSubset(in instance, s route.Subset) bool {
	for _, t := range s.Tags {
		if !slices.Contains(in.tags, t) {
			return false
		}
	}
	for k, v := range s.Meta {
		if got, ok := in.meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// publish builds and loads the document whenever something changed, until Close.
func (w *ChainWatcher) publish(ctx context.Context) {
	defer w.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.signal:
		}
		doc, warnings, errs := w.build()
		for _, r := range errs {
			w.report(r)
		}
		if doc == nil {
			continue
		}
		w.mu.Lock()
		same := bytes.Equal(doc, w.doc)
		w.mu.Unlock()
		if same {
			continue
		}
		res := ChainResult{Warnings: warnings}
		if err := w.target.Load(doc); err != nil {
			res.Err = fmt.Errorf("consul: discovery chain document refused: %w", err)
		} else {
			res.Version = w.target.Version()
			w.mu.Lock()
			w.doc = doc
			w.mu.Unlock()
		}
		w.report(res)
	}
}

func (w *ChainWatcher) report(r ChainResult) {
	if r.Err != nil {
		w.cfg.Logger.Warn("consul: discovery chain refused; keeping the rules in force", "service", r.Service, "error", r.Err)
	} else {
		w.cfg.Logger.Info("consul: discovery chain loaded", "version", r.Version, "warnings", r.Warnings)
	}
	if w.opts.hook != nil {
		w.opts.hook(r)
	}
}

// build compiles the chains in force with the current health into a document; nil while no
// chain is known (a default chain is known, and adds no route). It also returns the refusals queued since the last build.
func (w *ChainWatcher) build() (doc []byte, warnings []string, errs []ChainResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	errs, w.errs = w.errs, nil
	routes := []any{}
	dests := map[string]any{}
	known := false
	for _, s := range w.order {
		c, ok := w.chains[s]
		if !ok {
			continue
		}
		known = true
		rules, err := c.compile(w.down)
		if err != nil { // it compiled when it came: only a bug gets here
			errs = append(errs, ChainResult{Service: s, Err: err})
			continue
		}
		for _, rc := range rules.Routes {
			routes = append(routes, rc)
		}
		addChainDests(dests, rules) // chain_hash.go
		warnings = append(warnings, rules.Warnings...)
	}
	if !known {
		return nil, warnings, errs
	}
	out := map[string]any{}
	for k, v := range w.opts.local {
		out[k] = v
	}
	if local, ok := out["routes"].([]any); ok {
		routes = append(slices.Clone(local), routes...)
	}
	out["routes"] = routes
	if local, ok := out["destinations"].(map[string]any); ok {
		for svc, p := range local {
			dests[svc] = p // the local policy replaces the chain's
		}
	}
	if len(dests) > 0 {
		out["destinations"] = dests
	}
	b, err := json.Marshal(out)
	if err != nil {
		errs = append(errs, ChainResult{Err: fmt.Errorf("consul: discovery chain document: %w", err)})
		return nil, warnings, errs
	}
	return b, warnings, errs
}
