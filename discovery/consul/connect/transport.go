package connect

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/proxyless/proxyless/discovery"
)

// Transport returns the base transport of a mesh HTTP client: give it to
// middleware.NewTransport with middleware.WithResolver(m.Resolver()). An attempt to an
// endpoint the Mesh's resolver gave for a service goes over mTLS as ClientTLS(service)
// describes (HTTP/1.1 over TLS, whatever the URL's scheme); a request to an address that is an
// endpoint of several services is refused (no one identity could be checked); any other
// request passes through to base unchanged. base may be nil (a clone of http.DefaultTransport); its TLS settings are
// not used for mesh endpoints. Close the Mesh's idle connections with CloseIdleConnections.
func (m *Mesh) Transport(base *http.Transport) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	mesh := base.Clone()
	mesh.TLSClientConfig = nil
	mesh.Proxy = nil // mesh endpoints are dialled directly, never through an HTTP proxy
	mesh.ForceAttemptHTTP2 = false
	mesh.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	dialer := &net.Dialer{}
	dial := base.DialContext
	if dial == nil {
		dial = dialer.DialContext
	}
	mesh.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		service, ok := m.addrs.service(addr)
		if !ok {
			return nil, fmt.Errorf("connect: %s is no longer an endpoint of a mesh service", addr)
		}
		cfg, err := m.ClientTLS(service)
		if err != nil {
			return nil, err
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("connect: mTLS handshake with %s (service %q): %w", addr, service, err)
		}
		return conn, nil
	}
	return &meshTransport{m: m, base: base, mesh: mesh}
}

type meshTransport struct {
	m    *Mesh
	base http.RoundTripper
	mesh *http.Transport
}

// RoundTrip sends req over mTLS when its host is a mesh endpoint, else through base.
func (t *meshTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		return t.base.RoundTrip(req)
	}
	if _, ok := t.m.addrs.service(req.URL.Host); !ok {
		if t.m.addrs.shared(req.URL.Host) {
			// An endpoint of several services: no identity can be checked, and it must not
			// go in clear text to base either.
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("connect: %s is an endpoint of several mesh services: refused", req.URL.Host)
		}
		return t.base.RoundTrip(req)
	}
	out := req.WithContext(req.Context()) // a shallow copy: the caller's request is not modified
	u := *req.URL
	u.Scheme = "https"
	out.URL = &u
	return t.mesh.RoundTrip(out)
}

// CloseIdleConnections closes the idle connections of both transports.
func (t *meshTransport) CloseIdleConnections() {
	t.mesh.CloseIdleConnections()
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// addrBook maps the endpoint addresses the Mesh's resolver gives to their services. An
// address stays known while a watcher's current or previous set holds it, so that an attempt
// picked just before an update still finds its service.
type addrBook struct {
	mu sync.RWMutex
	n  map[string]map[string]int // addr → service → generations holding it
}

func newAddrBook() *addrBook { return &addrBook{n: map[string]map[string]int{}} }

// service returns the one service addr is an endpoint of; an address two services share is
// refused (no identity could be checked for it).
func (b *addrBook) service(addr string) (string, bool) {
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

// shared reports whether addr is an endpoint of more than one service.
func (b *addrBook) shared(addr string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.n[addr]) > 1
}

func (b *addrBook) shift(service string, add, drop []string) {
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

// bookResolver records in book the addresses its watchers give.
type bookResolver struct {
	r    discovery.Resolver
	book *addrBook
}

func (r *bookResolver) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	w, err := r.r.Watch(ctx, service)
	if err != nil {
		return nil, err
	}
	return &bookWatcher{w: w, book: r.book, service: service}, nil
}

type bookWatcher struct {
	w       discovery.Watcher
	book    *addrBook
	service string

	mu        sync.Mutex // Next and Close may run concurrently
	closed    bool
	cur, prev []string
}

func (w *bookWatcher) Next(ctx context.Context) ([]discovery.Endpoint, error) {
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

// Status forwards to the wrapped watcher.
func (w *bookWatcher) Status() discovery.Status {
	if sr, ok := w.w.(discovery.StatusReporter); ok {
		return sr.Status()
	}
	return discovery.Status{}
}
