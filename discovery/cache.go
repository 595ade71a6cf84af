package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Snapshot is one immutable endpoint set of a service, as published by a [Cache]. Readers may
// keep and share it freely but must not modify Endpoints.
type Snapshot struct {
	Service   string
	Endpoints []Endpoint // never modified after publication
	Version   uint64     // 1 for the first set, then one more per change
	UpdatedAt time.Time  // when this set was published

	changed chan struct{} // closed when a newer snapshot replaces this one
}

// Changed returns a channel that is closed when a newer snapshot of the same service replaces
// this one, or the cache closes.
func (s *Snapshot) Changed() <-chan struct{} { return s.changed }

// Cache follows services through a Resolver and publishes the newest set of each as a
// [Snapshot]. [Cache.Load] is lock-free and allocation-free, for the request path; [Cache.Get]
// starts following a service on first use and waits for its first set.
//
// A Cache is safe for concurrent use. It starts one goroutine per followed service; Close
// stops them and closes their watchers.
type Cache struct {
	r      Resolver
	logger *slog.Logger

	ctx    context.Context // cancelled by Close; parent of every watch
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex                        // serialises writers of entries
	entries atomic.Pointer[map[string]*entry] // copy-on-write; read without mu
	closed  bool                              // guarded by mu
}

type entry struct {
	cancel  context.CancelFunc // ends the watch; nil for a failed entry
	done    chan struct{}      // closed when the watch's goroutine has returned; nil for a failed entry
	snap    atomic.Pointer[Snapshot]
	ready   chan struct{} // closed when the first snapshot is published or the watch failed
	err     error         // written before ready is closed; non-nil when Watch failed
	expires time.Time     // for a failed entry: when a new Watch may be tried; immutable
	watcher Watcher       // nil for a failed entry
}

// negativeTTL is how long a Watch failure (such as ErrUnknownService) is remembered before the
// service is tried again, so a pass-through host costs the resolver one call a second at most.
const negativeTTL = time.Second

// CacheOption configures a Cache.
type CacheOption interface{ apply(*Cache) }

type cacheOptionFunc func(*Cache)

func (f cacheOptionFunc) apply(c *Cache) { f(c) }

// WithLogger sets where the cache logs failed watches. The default discards.
func WithLogger(l *slog.Logger) CacheOption {
	return cacheOptionFunc(func(c *Cache) {
		if l != nil {
			c.logger = l
		}
	})
}

// NewCache returns a cache that follows services through r. It does not block.
func NewCache(r Resolver, opts ...CacheOption) (*Cache, error) {
	if r == nil {
		return nil, errors.New("discovery: NewCache: resolver is nil")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cache{r: r, logger: slog.New(slog.DiscardHandler), ctx: ctx, cancel: cancel}
	for _, o := range opts {
		o.apply(c)
	}
	m := map[string]*entry{}
	c.entries.Store(&m)
	return c, nil
}

// Load returns the newest snapshot of service, or nil when the cache does not follow the
// service or has no set for it yet. It takes no lock and allocates nothing.
func (c *Cache) Load(service string) *Snapshot {
	if e := (*c.entries.Load())[service]; e != nil {
		return e.snap.Load()
	}
	return nil
}

// Get returns the newest snapshot of service, starting to follow it when the cache does not
// yet. It waits for the first set until ctx is done. A resolver's refusal (for example
// [ErrUnknownService]) is returned, and remembered for a second.
func (c *Cache) Get(ctx context.Context, service string) (*Snapshot, error) {
	e := (*c.entries.Load())[service]
	if e != nil {
		if s := e.snap.Load(); s != nil {
			return s, nil
		}
	}
	if e == nil || (e.watcher == nil && isReady(e) && time.Now().After(e.expires)) {
		var err error
		if e, err = c.follow(ctx, service); err != nil {
			return nil, err
		}
	}
	select {
	case <-e.ready:
		if e.err != nil {
			return nil, e.err
		}
		return e.snap.Load(), nil
	case <-ctx.Done():
		return nil, &FirstSetError{Service: service, Err: ctx.Err(), Cause: c.Status(service).LastError}
	}
}

// FirstSetError is [Cache.Get]'s error when its context ends before the resolver's first
// answer: which service, the context's error (context.DeadlineExceeded or
// context.Canceled), and the resolver's last error when it had one (an agent refusing
// connections, say). errors.Is matches both Err and Cause.
type FirstSetError struct {
	Service string
	Err     error // the context's error
	Cause   error // the resolver's last error; nil when it had none
}

func (e *FirstSetError) Error() string {
	if e.Cause == nil {
		return fmt.Sprintf("discovery: no first set of %q: %v", e.Service, e.Err)
	}
	return fmt.Sprintf("discovery: no first set of %q: %v; last error: %v", e.Service, e.Err, e.Cause)
}

// Unwrap returns Err and Cause, so that errors.Is and errors.As see both.
func (e *FirstSetError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

func isReady(e *entry) bool {
	select {
	case <-e.ready:
		return true
	default:
		return false
	}
}

// follow starts a watch of service unless one is running, and returns its entry.
func (c *Cache) follow(ctx context.Context, service string) (*entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	old := *c.entries.Load()
	if e := old[service]; e != nil && (e.watcher != nil || !isReady(e) || time.Now().Before(e.expires)) {
		return e, nil
	}
	e := &entry{ready: make(chan struct{})}
	w, err := c.r.Watch(ctx, service)
	if err != nil {
		e.err = err
		e.expires = time.Now().Add(negativeTTL)
		close(e.ready)
		c.logger.Debug("discovery: watch failed", "service", service, "error", err)
	} else {
		var wctx context.Context
		wctx, e.cancel = context.WithCancel(c.ctx)
		e.watcher, e.done = w, make(chan struct{})
		c.wg.Add(1)
		go c.run(wctx, service, e)
	}
	next := make(map[string]*entry, len(old)+1)
	now := time.Now()
	for k, o := range old {
		// Refusals are remembered for negativeTTL, not for ever: names that are not services
		// (which callers may choose at will) do not accumulate.
		if o.watcher != nil || !isReady(o) || now.Before(o.expires) {
			next[k] = o
		}
	}
	next[service] = e
	c.entries.Store(&next)
	return e, nil
}

func (c *Cache) run(ctx context.Context, service string, e *entry) {
	defer c.wg.Done()
	defer close(e.done)
	var version uint64
	for {
		eps, err := e.watcher.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			// Watchers fail static and return errors only when they cannot go on.
			c.logger.Warn("discovery: watch ended", "service", service, "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		version++
		s := &Snapshot{Service: service, Endpoints: eps, Version: version, UpdatedAt: time.Now(), changed: make(chan struct{})}
		prev := e.snap.Swap(s)
		if prev == nil {
			close(e.ready)
		} else {
			close(prev.changed)
		}
	}
}

// Status reports whether the set of service is stale, when its watcher can tell.
func (c *Cache) Status(service string) Status {
	e := (*c.entries.Load())[service]
	if e == nil || e.watcher == nil {
		return Status{}
	}
	if sr, ok := e.watcher.(StatusReporter); ok {
		return sr.Status()
	}
	return Status{}
}

// Services returns the names of the services the cache follows.
func (c *Cache) Services() []string {
	m := *c.entries.Load()
	out := make([]string, 0, len(m))
	for k, e := range m {
		if e.watcher != nil {
			out = append(out, k)
		}
	}
	return out
}

// Forget stops following service: its watch is closed and its goroutine has returned when
// Forget returns. Readers of its last snapshot see Changed closed, and Load then returns nil;
// a later Get follows the service afresh. Forgetting a service the cache does not follow does
// nothing.
func (c *Cache) Forget(service string) error {
	c.mu.Lock()
	old := *c.entries.Load()
	e := old[service]
	if e == nil || c.closed {
		c.mu.Unlock()
		return nil
	}
	next := maps.Clone(old)
	delete(next, service)
	c.entries.Store(&next)
	c.mu.Unlock()
	if e.watcher == nil {
		return nil
	}
	e.cancel()
	err := e.watcher.Close()
	<-e.done
	if s := e.snap.Load(); s != nil {
		close(s.changed)
	} else {
		e.err = ErrClosed // run has returned; nobody else writes e
		close(e.ready)
	}
	return err
}

// Close stops every watch and waits for the cache's goroutines. It is idempotent.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	var errs []error
	for _, e := range *c.entries.Load() {
		if e.watcher != nil {
			errs = append(errs, e.watcher.Close())
		}
	}
	c.wg.Wait()
	for _, e := range *c.entries.Load() {
		if s := e.snap.Load(); s != nil {
			close(s.changed)
		} else if e.watcher != nil {
			e.err = ErrClosed // run has returned; nobody else writes e
			close(e.ready)
		}
	}
	return errors.Join(errs...)
}
