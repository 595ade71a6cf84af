package middleware

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/internal/conf"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
	"github.com/proxyless/proxyless/route"
)

// Document is a configuration document: a route table and, beside it, the policies of each
// destination service. In YAML:
//
//	routes:
//	  - match: {path: {prefix: /api/}}
//	    destination: {service: payments}
//	destinations:
//	  payments:
//	    balancer: {policy: least_request}
//	    breaker: {minimumVolume: 10, openDelay: 5s}
//	    retry: {maxRetries: 3, backoffBase: 10ms}
//	    hedge: {delay: 50ms}
//	    timeout: 2s
//	    attemptTimeout: 500ms
//	    limits: {rate: 100, burst: 20, maxConcurrent: 50}
//
// Keys are camelCase, durations strings such as "250ms"; an unknown key is an error naming its
// path and line. The route fields (routes, default, limits) are those of [route.Config].
type Document struct {
	route.Config
	// Destinations maps a service name (as requests and routes name it) to its policies.
	// Default: none; every destination runs under the transport's options.
	Destinations map[string]DestinationPolicy `json:"destinations,omitempty" yaml:"destinations,omitempty"`
}

// DestinationPolicy is what requests to one service run under. Each field that is set
// replaces the transport's own setting (its option) for that service; a route's overrides
// still apply on top. A zero field keeps the transport's.
type DestinationPolicy struct {
	// Balancer replaces WithBalancer's configuration, its limits included (see WithConfig for
	// maxConnections). Default nil: the transport's.
	Balancer *balancer.Config `json:"balancer,omitempty" yaml:"balancer,omitempty"`
	// Breaker replaces WithBreaker's configuration. Default nil: the transport's.
	Breaker *breaker.Config `json:"breaker,omitempty" yaml:"breaker,omitempty"`
	// DisableBreaker turns the per-endpoint breakers off for the service. Default false.
	DisableBreaker bool `json:"disableBreaker,omitempty" yaml:"disableBreaker,omitempty"`
	// Retry replaces WithRetry's policy (its zero fields take the RetryPolicy defaults). The
	// retry budget is the transport's: BudgetRatio and MinRetriesPerSecond must be left
	// unset. Default nil: the transport's.
	Retry *RetryPolicy `json:"retry,omitempty" yaml:"retry,omitempty"`
	// Hedge turns hedging on for the service with this policy. Default nil: the transport's.
	Hedge *HedgePolicy `json:"hedge,omitempty" yaml:"hedge,omitempty"`
	// DisableHedge turns hedging off for the service. Default false.
	DisableHedge bool `json:"disableHedge,omitempty" yaml:"disableHedge,omitempty"`
	// Timeout replaces WithTimeout. Default 0: the transport's.
	Timeout time.Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// AttemptTimeout replaces WithAttemptTimeout. Default 0: the transport's.
	AttemptTimeout time.Duration `json:"attemptTimeout,omitempty" yaml:"attemptTimeout,omitempty"`
	// Limits bound the requests sent to the service, on top of the transport's own limits.
	// Default nil: none.
	Limits *DestinationLimits `json:"limits,omitempty" yaml:"limits,omitempty"`
	// ConnectTimeout bounds the dial of each new connection to the service's endpoints (an
	// attempt whose dial takes longer fails as a connection failure, which is retried as
	// such); connections already open are reused without it. The Transport applies it
	// through the dialer of its base when that is an *http.Transport (or nil), and not over
	// another base, whose dials it cannot reach, nor through a DialTLS without a context.
	// Default 0: the base dialer's own timeout.
	ConnectTimeout time.Duration `json:"connectTimeout,omitempty" yaml:"connectTimeout,omitempty"`
}

// DestinationLimits bound the requests a transport sends to one service. A refusal is an
// error matching ratelimit.ErrLimited, as for WithRateLimit. At least one of Rate and
// MaxConcurrent must be set.
type DestinationLimits struct {
	// Rate is the requests per second allowed. Default 0: no rate limit.
	Rate float64 `json:"rate,omitempty" yaml:"rate,omitempty"`
	// Burst is the bucket size of the rate limit. Default 0: one second's worth.
	Burst int `json:"burst,omitempty" yaml:"burst,omitempty"`
	// MaxConcurrent caps the requests in flight to the service. Default 0: no cap.
	MaxConcurrent int `json:"maxConcurrent,omitempty" yaml:"maxConcurrent,omitempty"`
	// MaxWait is how long a request over MaxConcurrent waits for a slot. Default 0: refused
	// at once.
	MaxWait time.Duration `json:"maxWait,omitempty" yaml:"maxWait,omitempty"`
}

// UnmarshalJSON reads d strictly, as [ParseDocument] does, without validating it.
func (d *Document) UnmarshalJSON(b []byte) error { return conf.JSONInto("middleware", b, d) }

// UnmarshalYAML reads d strictly, as [ParseDocument] does, without validating it.
func (d *Document) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("middleware", n, d) }

// MarshalJSON writes d with durations as strings, so that it reads back.
func (d Document) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(d) }

// MarshalYAML writes d with durations as strings, so that it reads back.
func (d Document) MarshalYAML() (any, error) { return conf.Node(d) }

// ParseDocument reads a [Document] from YAML or JSON (a document whose first non-blank
// character is '{' is JSON), strictly: an unknown or repeated key, a bare number for a
// duration, a syntax error are *route.ConfigError values naming the path, line and column
// (matching route.ErrInvalidConfig). It validates the routes and the destination policies.
func ParseDocument(data []byte) (Document, error) {
	var doc Document
	if err := conf.Decode(data, &doc); err != nil {
		return Document{}, docError(err)
	}
	if doc.Routes == nil && doc.Default == nil && doc.Destinations == nil {
		return Document{}, docError(conf.ErrEmpty)
	}
	if _, err := route.Compile(doc.Config); err != nil {
		return Document{}, err
	}
	if _, err := buildDestTable(doc.Destinations, nil); err != nil {
		return Document{}, err
	}
	return doc, nil
}

func docError(err error) error {
	var ce *conf.Error
	switch {
	case errors.Is(err, conf.ErrEmpty):
		return &route.ConfigError{Err: errors.New("empty document: write \"routes: []\" for one without routes")}
	case errors.As(err, &ce):
		return &route.ConfigError{Path: ce.Path, Line: ce.Line, Column: ce.Column, Err: ce.Err}
	}
	return &route.ConfigError{Err: err}
}

// Config is a loaded [Document] that transports follow while it changes: its routes (a
// [route.Router]) and its destination policies, swapped together by [Config.Load] and
// [Config.Update]: a request of a transport following the Config reads the two at once, so it
// never sees one document's routes with another's destination policies. Give it to a transport
// with [WithConfig], and to route/reload's File or Consul to follow a file or a Consul key. A
// request keeps the policies it started with; requests in flight finish under them.
//
// Use NewConfig; the zero value is not usable. A Config is safe for concurrent use, starts no
// goroutines and needs no Close.
type Config struct {
	router *route.Router
	mu     sync.Mutex // serialises updates
	cur    atomic.Pointer[configSnap]
	// uncounted are the Transports following it that cannot count connections: it refuses
	// a maxConnections while there are any (dynamic_limits.go). Guarded by mu.
	uncounted map[*uncountedBase]struct{}
}

// NewConfig validates doc and returns a Config serving it. The route options (trust, events)
// apply to every route table the Config compiles.
func NewConfig(doc Document, opts ...route.Option) (*Config, error) {
	t, err := buildDestTable(doc.Destinations, nil)
	if err != nil {
		return nil, err
	}
	r, err := route.NewRouter(doc.Config, opts...)
	if err != nil {
		return nil, err
	}
	c := &Config{router: r}
	c.cur.Store(&configSnap{routes: r.Table(), dests: t})
	return c, nil
}

// configSnap is one document as transports read it: its route table and its destination
// policies, loaded together once per request; immutable.
type configSnap struct {
	routes *route.Table
	dests  *destTable
}

// Router returns the Config's route table publisher, for reading (a status page, edge
// routes, fault handlers). Change the routes through the Config (Load, Update): transports
// following the Config route by the table of its last update, swapped in with that
// document's destination policies, and do not see a table given to the Router directly.
func (c *Config) Router() *route.Router { return c.router }

// Version counts the documents the Config took, starting at 1 (the router's version).
func (c *Config) Version() uint64 { return c.router.Version() }

// Load parses a YAML or JSON document (see [ParseDocument]) and applies it with Update.
func (c *Config) Load(data []byte) error {
	var doc Document
	if err := conf.Decode(data, &doc); err != nil {
		return docError(err)
	}
	if doc.Routes == nil && doc.Default == nil && doc.Destinations == nil {
		return docError(conf.ErrEmpty)
	}
	return c.Update(doc)
}

// Update validates doc and, if the whole of it is valid, makes its routes and destination
// policies current; otherwise it returns the error and the current configuration stays.
// Destinations whose balancer or breaker settings changed get a new balancer and breakers
// on their next request (their latency history and breaker states start afresh); requests in
// flight finish on the old ones. Rate and concurrency limits that did not change keep their
// state.
func (c *Config) Update(doc Document) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, err := buildDestTable(doc.Destinations, c.cur.Load().dests)
	if err != nil {
		return err
	}
	if err := c.checkCountable(t); err != nil { // dynamic_limits.go
		return err
	}
	if err := c.router.Update(doc.Config); err != nil {
		return err
	}
	// Transports read the routes from the snapshot, not the router: the new table and t
	// become theirs in this one store.
	c.cur.Store(&configSnap{routes: c.router.Table(), dests: t})
	return nil
}

// Destinations returns the destination policies in force, as the document wrote them. The
// caller may modify the map it gets; the policies' pointers are shared and must not be.
func (c *Config) Destinations() map[string]DestinationPolicy {
	t := c.cur.Load().dests
	m := make(map[string]DestinationPolicy, len(t.m))
	for svc, e := range t.m {
		m[svc] = e.spec
	}
	return m
}

// destTable is one document's destination policies, validated; immutable.
type destTable struct {
	m map[string]*destEntry
}

// destEntry is one service's policies.
type destEntry struct {
	spec   DestinationPolicy
	retry  *RetryPolicy    // normalized; nil: the transport's
	hedge  *HedgePolicy    // normalized; nil: the transport's
	build  *destBuild      // nil: the transport's balancer and breakers; kept across updates that leave it alone
	limits *outboundLimits // nil: none; kept across updates that leave it alone
}

// destBuild is what a destination's balancer and breakers are made from.
type destBuild struct {
	balancer   *balancer.Config
	breaker    *breaker.Config
	breakerOff bool
}

// buildDestTable validates specs and builds their table, reusing from prev the builds and
// limiters of services whose settings did not change.
func buildDestTable(specs map[string]DestinationPolicy, prev *destTable) (*destTable, error) {
	t := &destTable{m: make(map[string]*destEntry, len(specs))}
	for svc, spec := range specs {
		e, err := newDestEntry(spec)
		if err != nil {
			var ce *route.ConfigError
			if errors.As(err, &ce) {
				ce.Path = "destinations." + svc + "." + ce.Path
				return nil, ce
			}
			return nil, &route.ConfigError{Path: "destinations." + svc, Err: err}
		}
		if prev != nil {
			if old := prev.m[svc]; old != nil {
				if old.build != nil && e.build != nil && reflect.DeepEqual(*old.build, *e.build) {
					e.build = old.build
				}
				if old.limits != nil && reflect.DeepEqual(old.spec.Limits, spec.Limits) {
					e.limits = old.limits
				}
			}
		}
		t.m[svc] = e
	}
	return t, nil
}

func fieldErr(path string, err error) error { return &route.ConfigError{Path: path, Err: err} }

// newDestEntry validates one service's policies.
func newDestEntry(spec DestinationPolicy) (*destEntry, error) {
	e := &destEntry{spec: spec}
	if spec.Balancer != nil || spec.Breaker != nil || spec.DisableBreaker {
		e.build = &destBuild{balancer: spec.Balancer, breaker: spec.Breaker, breakerOff: spec.DisableBreaker}
		if spec.Balancer != nil {
			b, err := balancer.New(*spec.Balancer)
			if err != nil {
				return nil, fieldErr("balancer", err)
			}
			_ = b.Close()
		}
		if spec.Breaker != nil && !spec.DisableBreaker {
			if err := spec.Breaker.Validate(); err != nil {
				return nil, fieldErr("breaker", err)
			}
		}
	}
	if r := spec.Retry; r != nil {
		if r.BudgetRatio != 0 || r.MinRetriesPerSecond != 0 {
			return nil, fieldErr("retry", errors.New("the retry budget (budgetRatio, minRetriesPerSecond) is the transport's: set it with WithRetry"))
		}
		p := *r
		if err := p.normalize(); err != nil {
			return nil, fieldErr("retry", err)
		}
		e.retry = &p
	}
	if h := spec.Hedge; h != nil && !spec.DisableHedge {
		p := *h
		p.enabled = true
		if err := p.normalize(); err != nil {
			return nil, fieldErr("hedge", err)
		}
		e.hedge = &p
	}
	if spec.Timeout < 0 {
		return nil, fieldErr("timeout", fmt.Errorf("must not be negative, got %v", spec.Timeout))
	}
	if spec.AttemptTimeout < 0 {
		return nil, fieldErr("attemptTimeout", fmt.Errorf("must not be negative, got %v", spec.AttemptTimeout))
	}
	if spec.ConnectTimeout < 0 {
		return nil, fieldErr("connectTimeout", fmt.Errorf("must not be negative, got %v", spec.ConnectTimeout))
	}
	if l := spec.Limits; l != nil {
		lim, err := newDestLimits(*l)
		if err != nil {
			return nil, fieldErr("limits", err)
		}
		e.limits = lim
	}
	return e, nil
}

func newDestLimits(l DestinationLimits) (*outboundLimits, error) {
	if l.Rate == 0 && l.MaxConcurrent == 0 {
		return nil, errors.New("set rate or maxConcurrent")
	}
	if l.MaxConcurrent < 0 {
		return nil, fmt.Errorf("maxConcurrent must not be negative, got %d", l.MaxConcurrent)
	}
	o := &outboundLimits{}
	if l.Rate != 0 {
		lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: l.Rate, Burst: l.Burst}, MaxKeys: 1, Shards: 1})
		if err != nil {
			return nil, err
		}
		o.rate = lim
	}
	if l.MaxConcurrent > 0 {
		b, err := overload.NewBulkhead(l.MaxConcurrent, l.MaxWait)
		if err != nil {
			return nil, err
		}
		o.conc = b
	}
	return o, nil
}

// WithConfig makes the transport follow c: its routes (as WithRoutes(c.Router())) and the
// policies of its destinations, which replace the transport's own options for the services
// they name. Both take effect for new requests as soon as c is updated (route/reload keeps it
// in step with a file or a Consul key).
//
// A destination's balancer may set limits.maxConnections (see balancer.Limits), which the
// Transport counts through the dialer of its base, as for WithLimits: it sends through a
// clone of its base (an *http.Transport, or nil) whose dialers count connections, and closes
// the clone's idle connections on Close. Over a base of another type, NewTransport refuses a
// Config that sets a maxConnections, and while the Transport follows the Config (until its
// Close) the Config refuses an update that sets one, with an error naming the field.
//
// Taken by NewTransport.
func WithConfig(c *Config) TransportOption {
	return transportOption(func(cfg *config) {
		if c == nil {
			cfg.errs = append(cfg.errs, errors.New("middleware: WithConfig: config is nil"))
			return
		}
		cfg.routes, cfg.dynamic = c.router, c
	})
}
