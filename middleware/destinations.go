package middleware

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of the destination table's bounds.
const (
	defaultMaxDestinations = 1000
	defaultDestinationIdle = 10 * time.Minute
	defaultDiscoveryWait   = 5 * time.Second
)

// WithDiscoveryWait bounds how long a request waits for the first endpoints of a service the
// Transport does not follow yet: past d, or past the request's own deadline if that comes
// first, the request fails with an error naming the service that matches
// context.DeadlineExceeded and holds a *discovery.FirstSetError whose Cause is the resolver's
// last error (a Consul agent refusing connections, say). Later requests wait again, each no
// longer than d, while the watch goes on. Default 5 s.
//
// Taken by NewTransport (a gRPC channel waits for its resolver as grpc-go decides).
func WithDiscoveryWait(d time.Duration) TransportOption {
	return transportOption(func(c *config) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithDiscoveryWait must be positive, got %v", d))
		}
		c.discoveryWait = d
	})
}

// WithMaxDestinations caps the destinations a Transport follows at once: the services (and
// route subsets) its requests went to, each with a discovery watch, a balancer and breakers.
// When the table is full, destinations no request used since the last sweep make room; when
// none is idle, a request to a new destination fails with ErrTooManyDestinations. Hosts a
// caller can choose at will (single-label names a Consul resolver cannot refuse) thus cannot
// grow the transport without bound. Default 1000.
//
// Taken by NewTransport: a gRPC channel dials one service, which its owner closes.
func WithMaxDestinations(n int) TransportOption {
	return transportOption(func(c *config) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithMaxDestinations must be positive, got %d", n))
		}
		c.maxDests = n
	})
}

// WithDestinationIdleTimeout sets how long a destination no request uses is kept: after it,
// its discovery watch, goroutines, balancer and breakers are released (a later request starts
// afresh). Destinations routes no longer name (after a reload to new subsets, say) go the same
// way. Idleness is checked every half of d, so a destination goes between d and 1.5 d after
// its last request. At least a second. Default 10 minutes.
//
// Taken by NewTransport.
func WithDestinationIdleTimeout(d time.Duration) TransportOption {
	return transportOption(func(c *config) {
		if d < time.Second {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithDestinationIdleTimeout must be at least 1s, got %v", d))
		}
		c.destIdle = d
	})
}

// ErrTooManyDestinations is returned for a request to a new destination while the transport
// follows WithMaxDestinations destinations, every one used since the last sweep.
var ErrTooManyDestinations = errors.New("middleware: too many destinations (WithMaxDestinations)")

// touch marks d as used in the transport's current sweep epoch: a load, and a store once per
// epoch.
func (t *Transport) touch(d *destination) {
	if e := t.epoch.Load(); d.epoch.Load() != e {
		d.epoch.Store(e)
	}
}

// sweep releases the destinations no request has used in the current epoch nor the one
// before (two intervals between sweeps: between the idle timeout and one and a half of it),
// then starts a new epoch.
func (t *Transport) sweep() {
	cur := t.epoch.Load()
	t.release(func(d *destination) bool { return d.epoch.Load() < cur-1 })
	t.epoch.Add(1)
}

// sweeper sweeps every interval until the transport closes.
func (t *Transport) sweeper(interval time.Duration) {
	defer t.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.sweep()
		}
	}
}

// release removes the destinations for which idle reports true from the table and frees what
// they hold: their follow goroutine, balancer (health checks) and, when no destination is left
// on their service, the discovery watch. Requests in flight on them finish normally.
func (t *Transport) release(idle func(*destination) bool) int {
	t.mu.Lock()
	old := *t.dests.Load()
	next := make(map[string]*destination, len(old))
	var gone []*destination
	for k, d := range old {
		if idle(d) {
			gone = append(gone, d)
		} else {
			next[k] = d
		}
	}
	if len(gone) == 0 {
		t.mu.Unlock()
		return 0
	}
	t.dests.Store(&next)
	services := map[string]bool{}
	for _, d := range next {
		services[d.service] = true
	}
	t.mu.Unlock()
	for _, d := range gone {
		close(d.stop)
		_ = d.bal.Close()
		if !services[d.service] {
			services[d.service] = true // forget once
			_ = t.cache.Forget(d.service)
		}
	}
	return len(gone)
}
