package discovery

import (
	"context"
	"sync"
)

// AddrBook maps the endpoint addresses that resolvers' watchers give to the services they are
// endpoints of, so that a transport can tell, from an address alone, whether it belongs to a
// service and to which (to send credentials only to the mesh, or to check the identity of the
// service behind it). An address stays known while a watcher's current or previous set holds
// it, so that an attempt picked just before an update still finds its service. Wrap a
// resolver with [AddrBook.Resolver] to fill it. It is safe for concurrent use.
type AddrBook struct {
	mu sync.RWMutex
	n  map[string]map[string]int // addr → service → watcher generations holding it
}

// NewAddrBook returns an empty book.
func NewAddrBook() *AddrBook { return &AddrBook{n: map[string]map[string]int{}} }

// Has reports whether addr is an endpoint of any service.
func (b *AddrBook) Has(addr string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.n[addr]) > 0
}

// Service returns the one service addr is an endpoint of; false when it is none's, or when
// several services share it (no one identity fits it).
func (b *AddrBook) Service(addr string) (string, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	svcs := b.n[addr]
	if len(svcs) != 1 {
		return "", false
	}
	for s := range svcs {
		return s, true
	}
	return "", false
}

// Shared reports whether addr is an endpoint of more than one service.
func (b *AddrBook) Shared(addr string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.n[addr]) > 1
}

func (b *AddrBook) shift(service string, add, drop []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range add {
		if b.n[a] == nil {
			b.n[a] = map[string]int{}
		}
		b.n[a][service]++
	}
	for _, a := range drop {
		if b.n[a][service]--; b.n[a][service] <= 0 {
			delete(b.n[a], service)
			if len(b.n[a]) == 0 {
				delete(b.n, a)
			}
		}
	}
}

// Resolver returns r wrapped so that the addresses its watchers give are recorded in b, and
// forgotten when a watcher moves on or is closed.
func (b *AddrBook) Resolver(r Resolver) Resolver { return &bookResolver{r: r, book: b} }

type bookResolver struct {
	r    Resolver
	book *AddrBook
}

func (r *bookResolver) Watch(ctx context.Context, service string) (Watcher, error) {
	w, err := r.r.Watch(ctx, service)
	if err != nil {
		return nil, err
	}
	return &bookWatcher{w: w, book: r.book, service: service}, nil
}

type bookWatcher struct {
	w       Watcher
	book    *AddrBook
	service string

	mu        sync.Mutex // Next and Close may run concurrently
	closed    bool
	cur, prev []string
}

func (w *bookWatcher) Next(ctx context.Context) ([]Endpoint, error) {
	eps, err := w.w.Next(ctx)
	if err != nil {
		return eps, err
	}
	next := make([]string, len(eps))
	for i, e := range eps {
		next[i] = e.Addr
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.book.shift(w.service, next, w.prev)
		w.prev, w.cur = w.cur, next
	}
	return eps, nil
}

func (w *bookWatcher) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.book.shift(w.service, nil, append(w.prev, w.cur...))
		w.prev, w.cur = nil, nil
	}
	w.mu.Unlock()
	return w.w.Close()
}

// Status forwards to the wrapped watcher when it reports one.
func (w *bookWatcher) Status() Status {
	if sr, ok := w.w.(StatusReporter); ok {
		return sr.Status()
	}
	return Status{}
}
