package faultbackend

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// errClosed is the cause of the handler contexts' cancellation at Close.
var errClosed = errors.New("faultbackend: backend closed")

// Request is what the backend saw of one request.
type Request struct {
	Method     string
	Path       string // URL path
	RawQuery   string
	Host       string
	Proto      string // e.g. "HTTP/1.1"
	RemoteAddr string // client host:port; equal values mean a reused connection
	Header     http.Header
	BodyLen    int64             // bytes read from the body
	BodySHA256 [sha256.Size]byte // SHA-256 of the body bytes read
	BodyErr    error             // non-nil when the body could not be read to the end
	Behavior   string            // the Behavior that served it, see Behavior.String
}

// Stats is a snapshot of a backend's counters.
type Stats struct {
	Attempts          int64 // requests that reached the handler
	NewConnections    int64 // connections accepted
	ActiveConnections int64 // connections open now (a gauge, not zeroed by Reset)
	Cancellations     int64 // Hang or Slow requests whose context ended before they answered
}

// failNext is a pending FailNext: remaining requests get b.
type failNext struct {
	remaining atomic.Int64
	b         Behavior
}

// Backend is a loopback HTTP/1.1 server whose behaviour is switched at run
// time. Create one with [Start], [StartTLS], [New] or [NewTLS]; the zero
// value is not usable. All methods are safe for concurrent use. Close it to
// release the port and its goroutines.
type Backend struct {
	srv  *http.Server // immutable
	addr string       // immutable
	url  string       // immutable
	cert *x509.Certificate

	behavior atomic.Pointer[Behavior]
	failNext atomic.Pointer[failNext]

	attempts, newConns, activeConns, cancellations atomic.Int64

	cancel    context.CancelCauseFunc // cancels every handler's context
	serveDone chan struct{}           // closed when Serve returns
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	closed   bool           // guarded by mu
	handlers sync.WaitGroup // running handlers; Add guarded by mu
	requests []Request      // guarded by mu
	changed  chan struct{}  // guarded by mu; closed and replaced on every counter change
}

// Start starts a plain HTTP backend on 127.0.0.1 on a free port. It answers
// 200 "ok" until told otherwise. Call Close when done.
func Start() (*Backend, error) { return start(nil) }

// StartTLS starts an HTTPS backend on 127.0.0.1 whose certificate is
// self-signed (valid for 127.0.0.1 and localhost, but issued by no trusted
// authority), so a client using the system roots fails the handshake with an
// x509.UnknownAuthorityError and the handler never runs (Attempts stays 0,
// NewConnections grows). A client that wants to get through adds
// [Backend.Certificate] to its roots.
func StartTLS() (*Backend, error) {
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	return start(&cert)
}

func start(cert *tls.Certificate) (*Backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultbackend: listen: %w", err)
	}
	base, cancel := context.WithCancelCause(context.Background())
	b := &Backend{
		addr:      ln.Addr().String(),
		url:       "http://" + ln.Addr().String(),
		cancel:    cancel,
		serveDone: make(chan struct{}),
		changed:   make(chan struct{}),
	}
	ok := OK("ok")
	b.behavior.Store(&ok)
	var protos http.Protocols
	protos.SetHTTP1(true) // hijacking needs HTTP/1
	b.srv = &http.Server{
		Handler:           http.HandlerFunc(b.serve),
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
		ConnState:         b.connState,
		ErrorLog:          log.New(io.Discard, "", 0), // TLS handshake failures are expected
		Protocols:         &protos,
	}
	if cert != nil {
		b.url = "https://" + b.addr
		b.cert = cert.Leaf
		b.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, b.srv.TLSConfig)
	}
	go func() {
		defer close(b.serveDone)
		_ = b.srv.Serve(ln) // returns ErrServerClosed after Close
	}()
	return b, nil
}

// Addr returns the backend's host:port, e.g. "127.0.0.1:41234".
func (b *Backend) Addr() string { return b.addr }

// URL returns the backend's base URL, "http://127.0.0.1:port" (or https).
func (b *Backend) URL() string { return b.url }

// Certificate returns the self-signed certificate of a TLS backend, or nil
// for a plain one.
func (b *Backend) Certificate() *x509.Certificate { return b.cert }

// Set makes bh the behaviour for every following request (requests already
// in flight keep the one they started with). A pending [Backend.FailNext]
// still takes precedence until it is used up.
func (b *Backend) Set(bh Behavior) { b.behavior.Store(&bh) }

// SetHandler is shorthand for Set(Handler(h)).
func (b *Backend) SetHandler(h http.HandlerFunc) { b.Set(Handler(h)) }

// FailNext makes the next n requests get fail, after which requests get the
// behaviour set by [Backend.Set] again. FailNext(0, ...) cancels a pending
// one.
func (b *Backend) FailNext(n int, fail Behavior) {
	if n <= 0 {
		b.failNext.Store(nil)
		return
	}
	f := &failNext{b: fail}
	f.remaining.Store(int64(n))
	b.failNext.Store(f)
}

func (b *Backend) current() Behavior {
	if f := b.failNext.Load(); f != nil && f.remaining.Add(-1) >= 0 {
		return f.b
	}
	return *b.behavior.Load()
}

// Attempts returns how many requests reached the handler.
func (b *Backend) Attempts() int64 { return b.attempts.Load() }

// NewConnections returns how many connections the backend accepted.
func (b *Backend) NewConnections() int64 { return b.newConns.Load() }

// ActiveConnections returns how many connections are open now.
func (b *Backend) ActiveConnections() int64 { return b.activeConns.Load() }

// Cancellations returns how many Hang or Slow requests ended because their
// context did (the client gave up or its connection closed) before the
// backend answered. Requests cut short by Close are not counted.
func (b *Backend) Cancellations() int64 { return b.cancellations.Load() }

// Stats returns a snapshot of all counters.
func (b *Backend) Stats() Stats {
	return Stats{
		Attempts:          b.attempts.Load(),
		NewConnections:    b.newConns.Load(),
		ActiveConnections: b.activeConns.Load(),
		Cancellations:     b.cancellations.Load(),
	}
}

// Requests returns a copy of the requests seen so far, in arrival order
// (the order in which their bodies finished reading).
func (b *Backend) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Request, len(b.requests))
	for i, r := range b.requests {
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// Reset zeroes Attempts, NewConnections and Cancellations and forgets the
// recorded requests. ActiveConnections, a gauge, is left alone.
func (b *Backend) Reset() {
	b.mu.Lock()
	b.requests = nil
	b.attempts.Store(0)
	b.newConns.Store(0)
	b.cancellations.Store(0)
	b.mu.Unlock()
	b.notify()
}

// Wait blocks until cond returns true for the current Stats or ctx is done,
// in which case it returns ctx.Err(). cond is called again after every
// counter change; it must not call back into the backend.
func (b *Backend) Wait(ctx context.Context, cond func(Stats) bool) error {
	for {
		b.mu.Lock()
		ch := b.changed
		b.mu.Unlock()
		if cond(b.Stats()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *Backend) notify() {
	b.mu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// Close stops the backend: it closes the listener and every connection,
// ends the context of every request in flight (so hanging requests return
// at once), and waits for its handlers and goroutines. It is idempotent and
// returns the first call's error.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.cancel(errClosed)
		b.closeErr = b.srv.Close()
		b.handlers.Wait()
		<-b.serveDone
	})
	return b.closeErr
}

func (b *Backend) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		b.newConns.Add(1)
		b.activeConns.Add(1)
	case http.StateClosed, http.StateHijacked:
		b.activeConns.Add(-1)
	default:
		return
	}
	b.notify()
}

func (b *Backend) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		panic(http.ErrAbortHandler) // drop the connection without answering
	}
	b.handlers.Add(1)
	b.mu.Unlock()
	defer b.handlers.Done()

	bh := b.current()
	b.attempts.Add(1)
	b.notify()

	b.record(r, bh)
	if !b.wait(r.Context(), bh) {
		return
	}
	respond(w, r, bh)
}

// record reads r's body, appends a [Request] describing r to b.requests, and
// replaces r.Body with a reader over the bytes read, for the handler.
func (b *Backend) record(r *http.Request, bh Behavior) {
	body, err := io.ReadAll(r.Body)
	rec := Request{
		Method:     r.Method,
		Path:       r.URL.Path,
		RawQuery:   r.URL.RawQuery,
		Host:       r.Host,
		Proto:      r.Proto,
		RemoteAddr: r.RemoteAddr,
		Header:     r.Header.Clone(),
		BodyLen:    int64(len(body)),
		BodySHA256: sha256.Sum256(body),
		BodyErr:    err,
		Behavior:   bh.String(),
	}
	b.mu.Lock()
	b.requests = append(b.requests, rec)
	b.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
}

// wait applies bh's delay, or hangs for faultHang, and reports whether to go
// on and answer. When the client cancels first it counts a cancellation and
// returns false; when the backend closes first it aborts the connection.
func (b *Backend) wait(ctx context.Context, bh Behavior) bool {
	if bh.delay <= 0 && bh.fault != faultHang {
		return true
	}
	var wait <-chan time.Time // nil: wait forever
	if bh.fault != faultHang {
		t := time.NewTimer(bh.delay)
		defer t.Stop()
		wait = t.C
	}
	select {
	case <-wait:
		return true
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), errClosed) {
			// Close: drop the connection rather than let net/http
			// finish the response with an empty 200.
			panic(http.ErrAbortHandler)
		}
		b.cancellations.Add(1)
		b.notify()
		return false
	}
}

// respond answers r as bh says: with bh's handler, a connection fault, or
// bh's status, headers and body.
func respond(w http.ResponseWriter, r *http.Request, bh Behavior) {
	switch bh.fault {
	case faultHandler:
		bh.handler(w, r)
	case faultResetBeforeHeaders:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			reset(conn)
		}
	case faultCloseBeforeHeaders:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	case faultResetAfterHeaders:
		conn, bufrw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		writePartial(bufrw.Writer, bh)
		reset(conn)
	default:
		for k, vs := range bh.header {
			w.Header()[k] = append([]string(nil), vs...)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(bh.body)))
		w.WriteHeader(bh.status())
		_, _ = w.Write(bh.body)
	}
}

// writePartial writes a status line, headers announcing the whole body, and
// half the body, and flushes them.
func writePartial(w *bufio.Writer, bh Behavior) {
	body := bh.body
	if body == nil {
		body = bytes.Repeat([]byte("x"), defaultPartialLen)
	}
	code := bh.status()
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	hdr := bh.header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	_ = hdr.Write(w)
	fmt.Fprintf(w, "\r\n")
	_, _ = w.Write(body[:len(body)/2])
	_ = w.Flush()
}

// reset closes conn with SO_LINGER 0, so the kernel sends RST instead of FIN.
func reset(conn net.Conn) {
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn() // skip close_notify: the point is an abrupt reset
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	raw.Close()
}

// selfSigned makes a throwaway ECDSA certificate for 127.0.0.1 and localhost.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("faultbackend: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("faultbackend: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "faultbackend self-signed"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("faultbackend: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("faultbackend: certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
