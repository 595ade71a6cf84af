package breaker

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Set holds one Breaker per key, created lazily from one Config on first use. A key is opaque:
// use endpoint addresses ("10.0.0.7:8080") for per-endpoint breakers and a destination name for a
// per-destination breaker, in one Set or in two.
//
// A Set is made by NewSet; the zero value is not usable. It is safe for concurrent use; looking up
// an existing key is a plain read of an immutable map
// (copied on write when keys come or go), so it takes no lock and does not allocate. It starts no goroutines and needs no Close.
// Breakers of keys that are gone (endpoints that left the service) stay until Remove or Retain
// drops them.
type Set struct {
	cfg  Config  // immutable, normalized
	opts options // immutable

	// m is an immutable map, replaced as a whole (copy on write) when keys come or go, so
	// lookups are a plain map read. Replaced only with mu held.
	m  atomic.Pointer[map[string]*Breaker]
	mu sync.Mutex
}

// NewSet returns a Set whose breakers are configured by cfg, or an error naming the first invalid
// field of cfg. OnStateChange callbacks get the key of the breaker that changed.
func NewSet(cfg Config, opts ...Option) (*Set, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	s := &Set{cfg: cfg}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&s.opts)
		}
	}
	s.m.Store(&map[string]*Breaker{})
	return s, nil
}

// Get returns the Breaker for key, creating it, closed, if there is none.
func (s *Set) Get(key string) *Breaker {
	if b, ok := (*s.m.Load())[key]; ok {
		return b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.m.Load()
	if b, ok := old[key]; ok {
		return b
	}
	b := newBreaker(s.cfg, &s.opts, key)
	m := make(map[string]*Breaker, len(old)+1)
	maps.Copy(m, old)
	m[key] = b
	s.m.Store(&m)
	return b
}

// Allow is Get(key).Allow().
func (s *Set) Allow(key string) (Permit, error) {
	return s.Get(key).Allow()
}

// Remove drops the Breaker for key. Permits it issued stay valid but their outcomes no longer
// matter; a later Get creates a fresh, closed Breaker.
func (s *Set) Remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.m.Load()
	if _, ok := old[key]; !ok {
		return
	}
	m := maps.Clone(old)
	delete(m, key)
	s.m.Store(&m)
}

// Retain drops the Breakers of every key not in keys, such as endpoints that left the service.
func (s *Set) Retain(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.m.Load()
	m := make(map[string]*Breaker, len(keys))
	for _, k := range keys {
		if b, ok := old[k]; ok {
			m[k] = b
		}
	}
	if len(m) != len(old) {
		s.m.Store(&m)
	}
}

// Sync makes the Set hold exactly keys: the Breakers of keys it already has are kept, ones for
// new keys are created closed, and the others are dropped, all in one copy of the map. Call it
// when a destination's endpoint set changes, so that n new endpoints cost one copy rather than
// one per first request (Get copies the map for each new key).
func (s *Set) Sync(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.m.Load()
	m := make(map[string]*Breaker, len(keys))
	changed := false
	for _, k := range keys {
		if b, ok := old[k]; ok {
			m[k] = b
			continue
		}
		if _, dup := m[k]; !dup {
			m[k] = newBreaker(s.cfg, &s.opts, k)
			changed = true
		}
	}
	if changed || len(m) != len(old) {
		s.m.Store(&m)
	}
}

// Range calls fn for each key and Breaker in the Set, in no particular order, until fn returns
// false. It walks a snapshot: keys added or removed meanwhile are not reflected.
func (s *Set) Range(fn func(key string, b *Breaker) bool) {
	for k, b := range *s.m.Load() {
		if !fn(k, b) {
			return
		}
	}
}

// Len returns the number of keys in the Set.
func (s *Set) Len() int { return len(*s.m.Load()) }
