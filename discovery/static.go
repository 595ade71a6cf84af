package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Static is an in-memory Resolver: it serves the endpoint sets it was given and those set later
// with [Static.Set]. It suits tests, demos and fixed topologies.
//
// The zero value is not usable; call [NewStatic]. A Static is safe for concurrent use and
// starts no goroutines, so it needs no cleanup; its watchers still must be closed.
type Static struct {
	mu       sync.Mutex
	services map[string]*staticService // guarded by mu
}

type staticService struct {
	eps     []Endpoint    // guarded by Static.mu; replaced, never modified
	version uint64        // guarded by Static.mu
	changed chan struct{} // guarded by Static.mu; closed and replaced on every Set
}

var (
	_ Resolver = (*Static)(nil)
	_ Knower   = (*Static)(nil)
)

// NewStatic returns a resolver serving services, a map from service name to its endpoints.
// The map and slices are copied. Every service name must be non-empty and every endpoint
// valid (see [Endpoint.Validate]: host:port, a port from 1 to 65535); otherwise NewStatic
// returns an error naming the service and the bad entry, such as
// `discovery: NewStatic: services["payments"][1]: endpoint address "not-an-address": missing port in address`.
func NewStatic(services map[string][]Endpoint) (*Static, error) {
	s := &Static{services: make(map[string]*staticService, len(services))}
	for name, eps := range services {
		if err := validateSet(name, eps); err != nil {
			return nil, fmt.Errorf("discovery: NewStatic: %w", err)
		}
		s.services[name] = &staticService{eps: Clone(eps), version: 1, changed: make(chan struct{})}
	}
	return s, nil
}

// MustNewStatic is NewStatic for literal endpoint sets (tests, examples): it panics where
// NewStatic returns an error.
func MustNewStatic(services map[string][]Endpoint) *Static {
	s, err := NewStatic(services)
	if err != nil {
		panic(err)
	}
	return s
}

// validateSet checks a service name and its endpoints, naming the bad entry.
func validateSet(service string, eps []Endpoint) error {
	if service == "" {
		return errors.New("service name is empty")
	}
	for i, e := range eps {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("services[%q][%d]: %s", service, i, strings.TrimPrefix(err.Error(), "discovery: "))
		}
	}
	return nil
}

// Knows reports whether service was given to NewStatic or Set (and not deleted since). A
// Static refuses every other name with [ErrUnknownService].
func (s *Static) Knows(service string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.services[service]
	return ok
}

// Set replaces the endpoints of service, adding the service if it is new; watchers of the
// service see the new set; setting the set a service already has changes nothing. Set with a
// nil or empty slice leaves the service known but empty. An empty service name or an invalid
// endpoint (see [NewStatic]) is refused with an error naming it, and nothing changes.
func (s *Static) Set(service string, eps []Endpoint) error {
	if err := validateSet(service, eps); err != nil {
		return fmt.Errorf("discovery: Set: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.services[service]
	if !ok {
		s.services[service] = &staticService{eps: Clone(eps), version: 1, changed: make(chan struct{})}
		return nil
	}
	if Equal(svc.eps, eps) {
		return nil
	}
	svc.eps = Clone(eps)
	svc.version++
	close(svc.changed)
	svc.changed = make(chan struct{})
	return nil
}

// Delete forgets service. Open watchers keep their last set; new watches fail with
// [ErrUnknownService].
func (s *Static) Delete(service string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.services, service)
}

// Watch follows service. It fails with an error wrapping [ErrUnknownService] when service was
// never given to NewStatic or Set.
func (s *Static) Watch(_ context.Context, service string) (Watcher, error) {
	if service == "" {
		return nil, fmt.Errorf("discovery: service name is empty")
	}
	s.mu.Lock()
	_, ok := s.services[service]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownService, service)
	}
	return &staticWatcher{s: s, service: service, closed: make(chan struct{})}, nil
}

type staticWatcher struct {
	s       *Static
	service string
	seen    uint64 // version last returned; only touched by Next
	once    sync.Once
	closed  chan struct{}
}

func (w *staticWatcher) Next(ctx context.Context) ([]Endpoint, error) {
	for {
		w.s.mu.Lock()
		svc, ok := w.s.services[w.service]
		var (
			eps     []Endpoint
			version uint64
			changed chan struct{}
		)
		if ok {
			eps, version, changed = svc.eps, svc.version, svc.changed
		}
		w.s.mu.Unlock()
		if ok && version != w.seen {
			w.seen = version
			return Clone(eps), nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.closed:
			return nil, ErrClosed
		case <-changed: // nil when the service was deleted: wait for ctx or Close
		}
	}
}

func (w *staticWatcher) Close() error {
	w.once.Do(func() { close(w.closed) })
	return nil
}
