package middleware

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/grpcresolver"
	"github.com/proxyless/proxyless/route"
)

// routedChannels are the channels a GRPCClient dials itself for the destinations its routes
// choose (another service, a subset, a split arm, a canary side) when a call's channel dials
// something else. They carry the resolver, the balancer and the telemetry of the client's own
// channels but no interceptors: the call's interceptor runs the engine and sends each attempt
// on the routed channel.
type routedChannels struct {
	r    discovery.Resolver
	mon  *grpcbalancer.Monitor
	base []grpc.DialOption // what every channel gets but the interceptors and the resolver

	mu     sync.Mutex
	extra  []grpc.DialOption           // the first NewClient's own options (credentials); guarded by mu
	known  bool                        // extra was recorded; guarded by mu
	conns  map[string]*grpc.ClientConn // by destination key; guarded by mu
	closed bool                        // guarded by mu
}

// remember records the options a channel made by GRPCClient.NewClient was given, so that
// routed channels are dialled with the same credentials. The first call wins.
func (rc *routedChannels) remember(extra []grpc.DialOption) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.known {
		rc.extra, rc.known = append([]grpc.DialOption(nil), extra...), true
	}
}

// conn returns the channel to destination d, dialling it on first use. It refuses when the
// client cannot know the credentials to dial with: no channel was made with NewClient and
// WithTLS set none.
func (rc *routedChannels) conn(routeName string, d *route.Destination, tlsSet bool) (*grpc.ClientConn, error) {
	key := d.Key()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		return nil, status.Error(codes.Unavailable, "middleware: the GRPCClient is closed")
	}
	if c := rc.conns[key]; c != nil {
		return c, nil
	}
	if !rc.known && !tlsSet {
		return nil, status.Errorf(codes.FailedPrecondition,
			"middleware: route %q sends the call to %s, which the client cannot dial without knowing its credentials: make channels with GRPCClient.NewClient (whose options routed channels reuse) or set WithTLS", routeName, key)
	}
	var res discovery.Resolver = rc.r
	if !d.Subset.IsZero() {
		res = subsetResolver{r: rc.r, subset: d.Subset}
	}
	opts := append([]grpc.DialOption{
		grpc.WithResolvers(grpcresolver.NewBuilder(res, grpcresolver.WithAttributes(grpcbalancer.WithMonitor(nil, rc.mon)))),
	}, rc.base...)
	opts = append(opts, rc.extra...)
	c, err := grpc.NewClient(grpcresolver.Scheme+":///"+d.Service, opts...)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "middleware: dialling %s: %v", key, err)
	}
	if rc.conns == nil {
		rc.conns = map[string]*grpc.ClientConn{}
	}
	rc.conns[key] = c
	return c, nil
}

// close closes the routed channels; later calls to conn fail.
func (rc *routedChannels) close() error {
	rc.mu.Lock()
	conns := rc.conns
	rc.conns, rc.closed = nil, true
	rc.mu.Unlock()
	var errs []error
	for _, c := range conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// invokeOn sends a unary attempt on a routed channel, which has no interceptors.
func invokeOn(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
	return cc.Invoke(ctx, method, req, reply, opts...)
}

// streamOn opens a stream attempt on a routed channel.
func streamOn(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return cc.NewStream(ctx, desc, method, opts...)
}

// subsetResolver follows a service's endpoints of one subset.
type subsetResolver struct {
	r      discovery.Resolver
	subset route.Subset
}

func (s subsetResolver) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	w, err := s.r.Watch(ctx, service)
	if err != nil {
		return nil, err
	}
	return subsetWatcher{Watcher: w, subset: s.subset}, nil
}

type subsetWatcher struct {
	discovery.Watcher
	subset route.Subset
}

func (w subsetWatcher) Next(ctx context.Context) ([]discovery.Endpoint, error) {
	eps, err := w.Watcher.Next(ctx)
	if err != nil {
		return nil, err
	}
	return w.subset.Filter(eps), nil
}

// Status passes the watcher's staleness on, when it reports one.
func (w subsetWatcher) Status() discovery.Status {
	if sr, ok := w.Watcher.(discovery.StatusReporter); ok {
		return sr.Status()
	}
	return discovery.Status{}
}
