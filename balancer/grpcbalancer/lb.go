package grpcbalancer

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	grpcbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/grpcresolver"
)

// lb is one channel's policy. It wraps endpointsharding (a pick_first child per endpoint) and
// intercepts the children's state to pick among the READY ones with a balancer core.
//
// gRPC calls UpdateClientConnState, ResolverError, ExitIdle and Close one at a time; children
// call UpdateState from those calls or from their own serialized callbacks, so mu is short.
type lb struct {
	grpcbalancer.ClientConn // the channel; embedded to intercept UpdateState
	child                   grpcbalancer.Balancer
	policy                  balancer.Policy         // immutable; "" when the config decides
	service                 string                  // immutable: what the channel's target names
	mon                     atomic.Pointer[Monitor] // set once, by the first update that carries one

	mu       sync.Mutex
	cfg      *Config            // guarded by mu; nil before the first update
	core     *balancer.Balancer // guarded by mu
	breakers *breaker.Set       // guarded by mu; nil when breakers are off
	ready    []string           // guarded by mu: addresses the core holds, sorted
	closed   bool               // guarded by mu
}

func newLB(cc grpcbalancer.ClientConn, opts grpcbalancer.BuildOptions, policy balancer.Policy) *lb {
	b := &lb{ClientConn: cc, policy: policy, service: strings.TrimPrefix(opts.Target.Endpoint(), "/")}
	b.child = endpointsharding.NewBalancer(b, opts, grpcbalancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

func (b *lb) UpdateClientConnState(s grpcbalancer.ClientConnState) error {
	cfg, _ := s.BalancerConfig.(*Config)
	if cfg == nil {
		cfg = &Config{Steer: DefaultSteer}
		if b.policy != "" {
			cfg.Balancer.Policy = b.policy
		}
	}
	if m := monitorFrom(s.ResolverState.Attributes); m != nil && b.mon.Load() == nil {
		b.mon.Store(m)
		m.add(b)
	}
	b.mu.Lock()
	if b.cfg == nil || !reflect.DeepEqual(b.cfg, cfg) {
		if err := b.configure(cfg); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	empty := len(s.ResolverState.Endpoints) == 0
	if empty {
		b.core.Update(nil)
		b.ready = nil
	}
	b.mu.Unlock()
	err := b.child.UpdateClientConnState(grpcbalancer.ClientConnState{
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
	if errors.Is(err, grpcbalancer.ErrBadResolverState) && empty {
		// No endpoints: RPCs fail at once with ErrNoEndpoints rather than wait.
		b.ClientConn.UpdateState(grpcbalancer.State{
			ConnectivityState: connectivity.TransientFailure,
			Picker:            errPicker{err: pickErr(balancer.ErrNoEndpoints)},
		})
	}
	return err
}

// configure replaces the core and the breakers. Called with mu held.
func (b *lb) configure(cfg *Config) error {
	core, err := balancer.New(cfg.Balancer)
	if err != nil {
		return err
	}
	var set *breaker.Set
	if !cfg.DisableBreaker {
		onChange := breaker.OnStateChange(func(c breaker.StateChange) {
			if m := b.mon.Load(); m != nil && c.To == breaker.StateOpen {
				m.opens.Add(1)
			}
		})
		if set, err = breaker.NewSet(cfg.Breaker, onChange); err != nil {
			_ = core.Close()
			return err
		}
	}
	if b.core != nil {
		b.retire()
		_ = b.core.Close()
	}
	b.cfg, b.core, b.breakers, b.ready = cfg, core, set, nil
	return nil
}

func (b *lb) ResolverError(err error) { b.child.ResolverError(err) }

func (b *lb) ExitIdle() { b.child.ExitIdle() }

func (b *lb) UpdateSubConnState(grpcbalancer.SubConn, grpcbalancer.SubConnState) {}

func (b *lb) Close() {
	b.child.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.core != nil {
		b.retire()
		_ = b.core.Close()
	}
	if m := b.mon.Load(); m != nil {
		m.remove(b)
	}
}

// retire hands the ejections of the core, about to be replaced or closed, to the monitor's
// count. Called with mu held.
func (b *lb) retire() {
	if m := b.mon.Load(); m != nil {
		m.retired.Add(b.core.Ejections())
	}
}

// UpdateState receives endpointsharding's aggregate state and, when some endpoints are READY,
// replaces its picker with one that picks among them through the core.
func (b *lb) UpdateState(s grpcbalancer.State) {
	children := endpointsharding.ChildStatesFromPicker(s.Picker)
	eps := make([]discovery.Endpoint, 0, len(children))
	pickers := make(map[string]grpcbalancer.Picker, len(children))
	for _, c := range children {
		if c.State.ConnectivityState != connectivity.Ready {
			continue
		}
		ep, _ := grpcresolver.FromEndpoint(c.Endpoint)
		if ep.Addr == "" {
			continue
		}
		if _, dup := pickers[ep.Addr]; dup {
			continue
		}
		eps = append(eps, ep)
		pickers[ep.Addr] = c.State.Picker
	}
	b.mu.Lock()
	if b.closed || b.core == nil {
		b.mu.Unlock()
		return
	}
	if len(eps) == 0 {
		// Nothing READY: endpointsharding's picker queues RPCs while children connect and
		// fails them while all are in TRANSIENT_FAILURE. The core keeps its last set, so an
		// endpoint that returns finds its history.
		b.mu.Unlock()
		b.ClientConn.UpdateState(s)
		return
	}
	slices.SortFunc(eps, func(x, y discovery.Endpoint) int { return strings.Compare(x.Addr, y.Addr) })
	addrs := make([]string, len(eps))
	for i, e := range eps {
		addrs[i] = e.Addr
	}
	if !slices.Equal(addrs, b.ready) {
		b.core.Update(eps)
		b.ready = addrs
		if b.breakers != nil {
			b.breakers.Sync(addrs...) // one map copy per update
		}
	}
	p := &picker{core: b.core, breakers: b.breakers, children: pickers, steer: b.cfg.Steer}
	if b.cfg.Balancer.Policy.Hashing() && len(b.cfg.Balancer.HashPolicy) > 0 {
		p.hash = b.cfg.Balancer.HashPolicy
	}
	b.mu.Unlock()
	b.ClientConn.UpdateState(grpcbalancer.State{ConnectivityState: connectivity.Ready, Picker: p})
}

// errPicker fails every pick with err.
type errPicker struct{ err error }

func (p errPicker) Pick(grpcbalancer.PickInfo) (grpcbalancer.PickResult, error) {
	return grpcbalancer.PickResult{}, p.err
}

// pickError is a refusal made by the picker: it carries status Unavailable, so that gRPC ends
// the RPC with it, and unwraps to the cause (balancer.ErrNoEndpoints, breaker.ErrOpen).
type pickError struct{ err error }

func pickErr(err error) error { return &pickError{err: err} }

func (e *pickError) Error() string { return e.err.Error() }
func (e *pickError) Unwrap() error { return e.err }

// GRPCStatus returns status Unavailable with the cause's message.
func (e *pickError) GRPCStatus() *status.Status { return status.New(codes.Unavailable, e.err.Error()) }
