package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"go.opentelemetry.io/otel/metric"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/consul"
)

// Config says which agent to follow and which service this process is. Zero fields mean their
// defaults.
type Config struct {
	// Consul names the local agent (Address, Datacenter, Token, HTTPClient) and how to follow
	// it (WaitTime, MaxQueryRate, RetryMin, RetryMax, Logger); the resolver of mesh endpoints
	// (Mesh.Resolver) uses the rest, as consul.New does. Default: the zero consul.Config, an
	// agent at 127.0.0.1:8500.
	Consul consul.Config
	// Service is this service's name in the mesh: the identity of its leaf certificate and the
	// destination whose intentions its authorizer enforces. Required.
	Service string
	// DefaultPolicy decides a request that no intention matches: "allow" or "deny". Default
	// (""): the agent's, as Consul decides it: allow when the agent has ACLs disabled, else
	// its ACL default policy (read once, by New, from /v1/agent/self, which needs agent:read).
	DefaultPolicy string
	// MeterProvider receives the denial counter. Default: the global provider, taken at New.
	MeterProvider metric.MeterProvider
}

// Mesh is a Connect-native member of a Consul service mesh: it follows, from the local agent,
// the service's leaf certificate, the CA roots and the intentions that name the service (or
// "*"), each with blocking queries, and offers what a proxyless server and client need:
// TLS configurations (ServerTLS, ClientTLS, Transport), a resolver of mesh endpoints
// (Resolver), an intentions authorizer (Handler, UnaryServerInterceptor,
// StreamServerInterceptor, Authorize) and registration (Register).
//
// Create it with [New]; the zero value is not usable. A Mesh is safe for concurrent use. It
// fails static: when the agent is down or answers something unusable, it keeps the last good
// certificate (until it expires: then handshakes fail with ErrLeafExpired), roots and
// intentions, and Status says so. Close stops it.
type Mesh struct {
	cfg     Config // immutable after New
	client  *api.Client
	own     *http.Transport // the agent client's transport New made; nil when Consul.HTTPClient was given
	res     *consul.Resolver
	addrs   *discovery.AddrBook
	denials metric.Int64Counter

	leaf  atomic.Pointer[leafState]
	roots atomic.Pointer[rootState]
	rules atomic.Pointer[ruleSet]

	status [3]partStatus // leaf, roots, intentions

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Parts of the status, in Mesh.status.
const (
	partLeaf = iota
	partRoots
	partIntentions
)

// New validates cfg, fetches the service's leaf certificate, the CA roots, the intentions
// and (unless cfg.DefaultPolicy is set) the default policy from the agent, and starts
// following them. It fails with a clear error when the agent cannot give them, for example
// when its service mesh (Connect) is disabled. ctx bounds the first fetches only. Close the
// Mesh when done.
func New(ctx context.Context, cfg Config) (*Mesh, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	m := &Mesh{cfg: cfg}
	if cfg.Consul.HTTPClient == nil {
		m.own = http.DefaultTransport.(*http.Transport).Clone()
		m.cfg.Consul.HTTPClient = &http.Client{Transport: m.own}
	}
	var err error
	if m.client, err = consul.NewAPIClient(m.cfg.Consul); err != nil {
		return nil, err
	}
	if m.denials, err = newDenialCounter(cfg.MeterProvider); err != nil {
		return nil, err
	}
	if err := m.first(ctx); err != nil {
		m.closeIdle()
		return nil, err
	}
	rcfg := m.cfg.Consul
	rcfg.Connect = true
	if m.res, err = consul.New(rcfg); err != nil {
		m.closeIdle()
		return nil, err
	}
	m.addrs = discovery.NewAddrBook()
	wctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.start(wctx)
	return m, nil
}

func validate(cfg *Config) error {
	if cfg.Service == "" {
		return errors.New("connect: Config.Service is empty")
	}
	if strings.ContainsAny(cfg.Service, "/?#% ") || cfg.Service == "*" {
		return fmt.Errorf("connect: Config.Service %q is not a service name", cfg.Service)
	}
	switch cfg.DefaultPolicy {
	case "", "allow", "deny":
	default:
		return fmt.Errorf("connect: Config.DefaultPolicy must be \"allow\", \"deny\" or empty, got %q", cfg.DefaultPolicy)
	}
	if cfg.Consul.Logger == nil {
		cfg.Consul.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := consul.NewAPIClient(cfg.Consul); err != nil { // validates the rest
		return err
	}
	return nil
}

// first makes the first fetch of every part, without blocking.
func (m *Mesh) first(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := m.fetchRoots(q); err != nil {
		return connectErr(err)
	}
	if err := m.fetchLeaf(q); err != nil {
		return connectErr(err)
	}
	defaultAllow, err := m.defaultAllow(ctx)
	if err != nil {
		return err
	}
	m.rules.Store(&ruleSet{defaultAllow: defaultAllow})
	if err := m.fetchIntentions(q); err != nil {
		return connectErr(err)
	}
	return nil
}

// connectErr explains the agent's answer when its service mesh is off.
func connectErr(err error) error {
	var se api.StatusError
	if errors.As(err, &se) && strings.Contains(strings.ToLower(se.Body), "connect must be enabled") {
		return fmt.Errorf("connect: the agent's service mesh (Connect) is disabled; enable it (connect { enabled = true }): %w", err)
	}
	return err
}

// defaultAllow returns the decision for requests no intention matches.
func (m *Mesh) defaultAllow(ctx context.Context) (bool, error) {
	switch m.cfg.DefaultPolicy {
	case "allow":
		return true, nil
	case "deny":
		return false, nil
	}
	var self map[string]map[string]any
	_, err := m.client.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("connect: reading the agent's ACL default policy from /v1/agent/self (or set Config.DefaultPolicy): %w", err)
	}
	acl, _ := self["DebugConfig"]["ACLResolverSettings"].(map[string]any)
	enabled, ok1 := acl["ACLsEnabled"].(bool)
	policy, ok2 := acl["ACLDefaultPolicy"].(string)
	if !ok1 || !ok2 {
		return false, errors.New("connect: the agent's /v1/agent/self has no ACL settings; set Config.DefaultPolicy")
	}
	return !enabled || policy == "allow", nil
}

// Close stops following the agent and releases the connections New made. It is idempotent.
// Servers and clients using the Mesh's TLS configurations keep the last material, which
// expires in time: close them first.
func (m *Mesh) Close() error {
	m.once.Do(func() {
		m.cancel()
		m.wg.Wait()
		_ = m.res.Close()
		m.closeIdle()
	})
	return nil
}

func (m *Mesh) closeIdle() {
	if m.own != nil {
		m.own.CloseIdleConnections()
	}
}

// Service returns the name of this service.
func (m *Mesh) Service() string { return m.cfg.Service }

// Identity returns the identity of the current leaf certificate.
func (m *Mesh) Identity() Identity { return m.leaf.Load().id }

// Register adds this instance to the catalog as a Connect-native instance of the service
// (reg.Name defaults to the Mesh's service; reg.ConnectNative is set), with its checks, as
// consul.Register does, and returns the function that removes it.
func (m *Mesh) Register(ctx context.Context, reg consul.Registration) (func(context.Context) error, error) {
	if reg.Name == "" {
		reg.Name = m.cfg.Service
	}
	if reg.Name != m.cfg.Service {
		return nil, fmt.Errorf("connect: Register: Registration.Name %q is not the mesh's service %q", reg.Name, m.cfg.Service)
	}
	reg.ConnectNative = true
	return consul.Register(ctx, m.cfg.Consul, reg)
}

// Resolver returns the resolver of mesh endpoints: for a service, the instances that accept
// mesh traffic (/v1/health/connect/<name>: sidecar proxies and Connect-native instances),
// followed as consul.Resolver follows a catalog. Give it to middleware.WithResolver with
// Transport as the base, or to middleware.NewGRPCClient with ClientTLS. The Mesh closes it.
func (m *Mesh) Resolver() discovery.Resolver { return m.addrs.Resolver(m.res) }

// Status is the state of what a Mesh follows.
type Status struct {
	Leaf, Roots, Intentions PartStatus
	// LeafExpires is when the current leaf certificate expires.
	LeafExpires time.Time
	// TrustDomain is the trust domain of the current roots.
	TrustDomain string
	// RootIDs are the IDs of the trusted roots, the agent's (every root in its bundle).
	RootIDs []string
}

// PartStatus is the state of one followed part.
type PartStatus struct {
	// Stale is true while the last query failed or its answer was rejected: the last good
	// value is in use.
	Stale bool
	// Err is the last failure, while Stale.
	Err error
	// Since is when the part became stale; zero while fresh.
	Since time.Time
	// Index is the agent's index of the value in use.
	Index uint64
}

// Status returns the state of the leaf, roots and intentions, for status pages.
func (m *Mesh) Status() Status {
	l, r := m.leaf.Load(), m.roots.Load()
	return Status{
		Leaf: m.status[partLeaf].get(), Roots: m.status[partRoots].get(), Intentions: m.status[partIntentions].get(),
		LeafExpires: l.notAfter, TrustDomain: r.trustDomain, RootIDs: append([]string(nil), r.ids...),
	}
}

type partStatus struct {
	mu sync.Mutex
	s  PartStatus // guarded by mu
}

func (p *partStatus) get() PartStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s
}

func (p *partStatus) fail(err error, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.s.Stale {
		p.s.Since = now
	}
	p.s.Stale, p.s.Err = true, err
}

func (p *partStatus) ok(index uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.s = PartStatus{Index: index}
}
