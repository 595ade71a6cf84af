package route

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// Router publishes the current [Table] and swaps in new ones atomically. Lookups read the
// table through an atomic pointer, without locks; a request keeps the Table (and Decision) it
// started with, so in-flight requests finish on their table while a reload happens.
//
// Use NewRouter; the zero value is not usable. A Router is safe for concurrent use, starts no
// goroutines and needs no Close (reloaders that feed it have their own).
type Router struct {
	opts    *options // immutable
	cur     atomic.Pointer[Table]
	version atomic.Uint64

	mu sync.Mutex // serialises the swaps of Update, so analyzers carry over in order
}

// NewRouter compiles cfg and returns a Router serving it. The options (trust, events) apply
// to every table the Router compiles later.
func NewRouter(cfg Config, opts ...Option) (*Router, error) {
	o := newOptions(opts)
	t, err := compile(cfg, o, nil)
	if err != nil {
		return nil, err
	}
	r := &Router{opts: o}
	r.cur.Store(t)
	r.version.Store(1)
	return r, nil
}

// Table returns the current table. Hold on to it for the life of one request.
func (r *Router) Table() *Table { return r.cur.Load() }

// Version counts successful updates, starting at 1 for the table NewRouter built.
func (r *Router) Version() uint64 { return r.version.Load() }

// Lookup is r.Table().Lookup(req).
func (r *Router) Lookup(req *Request) (Decision, bool) { return r.cur.Load().Lookup(req) }

// Update compiles cfg and, if it is valid, makes it the current table. An invalid cfg is
// refused with a *[ConfigError] and the current table stays. A canary whose config did not
// change keeps its running analysis. The document is compiled without holding the Router's
// lock, so that readers such as [Router.Current] (a status page) wait only for the swap.
func (r *Router) Update(cfg Config) error {
	for {
		prev := r.cur.Load()
		t, err := compile(cfg, r.opts, prev)
		if err != nil {
			return err
		}
		r.mu.Lock()
		if r.cur.Load() == prev {
			r.cur.Store(t)
			r.version.Add(1)
			r.mu.Unlock()
			return nil
		}
		// Another Update swapped in a table meanwhile: compile again against it, so that
		// running analyses carry over from the table actually replaced.
		r.mu.Unlock()
	}
}

// Load parses a YAML or JSON document (see [ParseConfig]) and applies it with Update.
func (r *Router) Load(data []byte) error {
	cfg, err := decode(data)
	if err != nil {
		return err
	}
	return r.Update(cfg)
}

// FaultHandler returns a server-side handler that injects, before next, the faults of the
// route each request matches in the current table (see [FaultHandler]).
func (r *Router) FaultHandler(next http.Handler) http.Handler {
	return FaultHandler(next, func(req *http.Request) *Injector {
		rq := FromHTTP(req)
		if rt := r.cur.Load().Match(&rq); rt != nil {
			return rt.fault
		}
		return nil
	})
}
