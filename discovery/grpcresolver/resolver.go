package grpcresolver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/backoff"
)

// Scheme is the target scheme the Builder serves: "proxyless:///payments" follows the service
// "payments".
const Scheme = "proxyless"

// Backoff bounds between two attempts to (re)start a watch that failed.
const (
	retryBase = 100 * time.Millisecond
	retryMax  = 10 * time.Second
)

// Builder is a resolver.Builder for the scheme [Scheme] fed by a [discovery.Resolver].
//
// Create it with [NewBuilder]; the zero value is not usable. A Builder is safe for concurrent
// use and may serve any number of channels. It starts no goroutine itself; each channel's
// resolver runs one, which stops when the channel closes.
type Builder struct {
	r     discovery.Resolver     // immutable
	attrs *attributes.Attributes // immutable; nil for none
}

// Option configures a [Builder].
type Option func(*Builder)

// WithAttributes makes the resolvers the Builder builds carry a in every state they hand the
// channel (resolver.State.Attributes), which its load-balancing policy reads: package
// grpcbalancer's policy reports to the Monitor it finds there (grpcbalancer.WithMonitor).
func WithAttributes(a *attributes.Attributes) Option { return func(b *Builder) { b.attrs = a } }

var _ resolver.Builder = (*Builder)(nil)

// NewBuilder returns a Builder that follows services through r. It panics on nothing: a nil r
// makes every Build fail.
func NewBuilder(r discovery.Resolver, opts ...Option) *Builder {
	b := &Builder{r: r}
	for _, o := range opts {
		if o != nil {
			o(b)
		}
	}
	return b
}

// Scheme returns [Scheme].
func (*Builder) Scheme() string { return Scheme }

// Build starts following the service the target names (its endpoint, without a leading
// slash). It does not block on the network: the first set reaches the channel when the watch
// yields it.
//
// The resolver fails static: when the watch cannot start or ends with an error, the channel
// keeps the last set it was given and the resolver tries again with backoff; before any set is
// known, the error is reported to the channel, which fails RPCs that are not wait-for-ready.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	if b == nil || b.r == nil {
		return nil, errors.New("grpcresolver: Builder has no discovery.Resolver")
	}
	service := strings.TrimPrefix(target.Endpoint(), "/")
	if service == "" {
		return nil, fmt.Errorf("grpcresolver: target %q names no service", target.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &watchResolver{dr: b.r, service: service, cc: cc, attrs: b.attrs, cancel: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r, nil
}

// watchResolver follows one service for one channel.
type watchResolver struct {
	dr      discovery.Resolver     // immutable
	service string                 // immutable
	cc      resolver.ClientConn    // immutable
	attrs   *attributes.Attributes // immutable: the Builder's
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returns
	once    sync.Once
}

func (r *watchResolver) run(ctx context.Context) {
	defer close(r.done)
	known := false                  // a set has reached the channel
	for attempt := 1; ; attempt++ { // attempt counts failures in a row
		w, err := r.dr.Watch(ctx, r.service)
		if err == nil {
			var delivered bool
			delivered, err = r.follow(ctx, w)
			_ = w.Close()
			known = known || delivered
			if delivered {
				attempt = 0 // the watch worked for a while: start the backoff over
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !known {
			r.cc.ReportError(fmt.Errorf("grpcresolver: service %q: %w", r.service, err))
		}
		if !backoff.Sleep(ctx, backoff.FullJitter(retryBase, retryMax, attempt)) {
			return
		}
	}
}

// follow passes each set w yields to the channel until w fails or ctx is done. It reports
// whether it passed at least one set.
func (r *watchResolver) follow(ctx context.Context, w discovery.Watcher) (bool, error) {
	delivered := false
	for {
		eps, err := w.Next(ctx)
		if err != nil {
			if errors.Is(err, discovery.ErrClosed) && ctx.Err() == nil {
				err = fmt.Errorf("watch ended: %w", err)
			}
			return delivered, err
		}
		// An error here is the balancer refusing the set (for example an empty one); the
		// channel asks for a re-resolution, which a watch needs not: the next set comes anyway.
		st := State(eps)
		st.Attributes = r.attrs
		_ = r.cc.UpdateState(st)
		delivered = true
	}
}

// ResolveNow does nothing: the watch pushes every change as it happens.
func (*watchResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watch and waits for the resolver's goroutine. It is idempotent.
func (r *watchResolver) Close() {
	r.once.Do(r.cancel)
	<-r.done
}

// State converts an endpoint set to the resolver.State a channel expects: one
// resolver.Endpoint per endpoint, with one address, carrying the discovery.Endpoint as an
// attribute (see [FromEndpoint]). Addresses lists the same addresses for balancers that read
// only them.
func State(eps []discovery.Endpoint) resolver.State {
	s := resolver.State{
		Endpoints: make([]resolver.Endpoint, len(eps)),
		Addresses: make([]resolver.Address, len(eps)),
	}
	for i, e := range eps {
		attrs := attributes.New(attrKey{}, &endpointAttr{ep: e})
		addr := resolver.Address{Addr: e.Addr, BalancerAttributes: attrs}
		s.Addresses[i] = addr
		s.Endpoints[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: e.Addr}}, Attributes: attrs}
	}
	return s
}

type attrKey struct{}

// endpointAttr holds a discovery.Endpoint in gRPC attributes, which compare values with an
// Equal method when they have one (an Endpoint holds a slice and a map, so == would panic).
type endpointAttr struct{ ep discovery.Endpoint }

func (a *endpointAttr) Equal(o any) bool {
	b, ok := o.(*endpointAttr)
	return ok && discovery.Equal([]discovery.Endpoint{a.ep}, []discovery.Endpoint{b.ep})
}

// FromEndpoint returns the discovery.Endpoint that [State] attached to e. For an endpoint that
// another resolver made, it returns one built from e's first address (weight 1, no zone) and
// false.
func FromEndpoint(e resolver.Endpoint) (discovery.Endpoint, bool) {
	if a, ok := e.Attributes.Value(attrKey{}).(*endpointAttr); ok {
		return a.ep, true
	}
	if len(e.Addresses) > 0 {
		if a, ok := e.Addresses[0].BalancerAttributes.Value(attrKey{}).(*endpointAttr); ok {
			return a.ep, true
		}
		return discovery.Endpoint{Addr: e.Addresses[0].Addr}, false
	}
	return discovery.Endpoint{}, false
}

// FromAddress is [FromEndpoint] for a resolver.Address.
func FromAddress(a resolver.Address) (discovery.Endpoint, bool) {
	if v, ok := a.BalancerAttributes.Value(attrKey{}).(*endpointAttr); ok {
		return v.ep, true
	}
	return discovery.Endpoint{Addr: a.Addr}, false
}
