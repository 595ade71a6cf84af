package middleware_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// countingListener counts the bytes the server reads from its connections.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, read: l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// wireCountingServer serves h on loopback and counts the bytes it reads off the wire.
func wireCountingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var read atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = countingListener{Listener: srv.Listener, read: &read}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &read
}

// bodyReader is a backend that reads the whole body, counting what it got, and answers 400
// (not 413) when the read fails, as a handler unaware of the limit would.
type bodyReader struct {
	hits, got atomic.Int64
	mu        sync.Mutex
	err       error // the last read error
}

func (b *bodyReader) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	n, err := io.Copy(io.Discard, r.Body)
	b.got.Add(n)
	b.mu.Lock()
	b.err = err
	b.mu.Unlock()
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Got", fmt.Sprint(n))
	w.WriteHeader(http.StatusOK)
}

func (b *bodyReader) lastErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// rawPost sends a POST's head on a fresh connection to addr, then body (if any) from another
// goroutine, and reads the response; the connection is closed before it returns.
func rawPost(t *testing.T, addr, head string, body func(w io.Writer)) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if body != nil {
		wg.Go(func() { body(conn) })
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	return resp
}

// writeChunks writes total bytes as a chunked body, chunk bytes at a time, until a write fails.
func writeChunks(total, chunk int) func(io.Writer) {
	return func(w io.Writer) {
		data := bytes.Repeat([]byte{'x'}, chunk)
		for sent := 0; sent < total; sent += chunk {
			if _, err := fmt.Fprintf(w, "%x\r\n%s\r\n", chunk, data); err != nil {
				return
			}
		}
		_, _ = io.WriteString(w, "0\r\n\r\n")
	}
}

const bodyLimit = 64 << 10

// TestBodyLimitContentLength checks that a request whose Content-Length is over the limit is
// answered 413 before its body is read: the server reads less than the limit off the wire
// while the client has sent four times the limit, and the handler never runs.
func TestBodyLimitContentLength(t *testing.T) {
	backend := &bodyReader{}
	h, err := middleware.NewHandler(backend, middleware.WithMaxRequestBody(bodyLimit))
	if err != nil {
		t.Fatal(err)
	}
	srv, read := wireCountingServer(t, h)
	head := fmt.Sprintf("POST /up HTTP/1.1\r\nHost: edge\r\nContent-Length: %d\r\n\r\n", 8<<20)
	resp := rawPost(t, srv.Listener.Addr().String(), head, func(w io.Writer) {
		_, _ = w.Write(bytes.Repeat([]byte{'x'}, 4*bodyLimit))
	})
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("status %d, close %v: want 413 and the connection closed", resp.StatusCode, resp.Close)
	}
	if n := backend.hits.Load(); n != 0 {
		t.Errorf("the handler ran %d times", n)
	}
	if n := read.Load(); n >= bodyLimit {
		t.Errorf("the server read %d bytes off the wire, want fewer than the %d-byte limit", n, bodyLimit)
	}
	t.Logf("server read %d bytes for a 413 while the client sent %d", read.Load(), 4*bodyLimit)
}

// TestBodyLimitChunked checks a body of unknown length: it is cut at the limit (the handler
// reads exactly the limit and then an *http.MaxBytesError), the handler's 400 becomes 413,
// and the server reads little past the limit off the wire although the client sends 16 times
// as much.
func TestBodyLimitChunked(t *testing.T) {
	backend := &bodyReader{}
	h, err := middleware.NewHandler(backend, middleware.WithMaxRequestBody(bodyLimit))
	if err != nil {
		t.Fatal(err)
	}
	srv, read := wireCountingServer(t, h)
	const chunk = 8 << 10
	head := "POST /up HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n"
	resp := rawPost(t, srv.Listener.Addr().String(), head, writeChunks(16*bodyLimit, chunk))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
	var mbe *http.MaxBytesError
	if err := backend.lastErr(); !errors.As(err, &mbe) || mbe.Limit != bodyLimit {
		t.Errorf("handler's read error %v, want *http.MaxBytesError{%d}", err, bodyLimit)
	}
	if got := backend.got.Load(); got != bodyLimit {
		t.Errorf("handler read %d bytes, want exactly the limit %d", got, bodyLimit)
	}
	// Slack: the request head, the framing, one chunk and net/http's 4 KiB read buffer.
	if n := read.Load(); n > bodyLimit+chunk+8<<10 {
		t.Errorf("the server read %d bytes off the wire for a %d-byte limit", n, bodyLimit)
	}
	t.Logf("server read %d bytes for a 413 while the client offered %d", read.Load(), 16*bodyLimit)

	// A chunked body within the limit passes whole.
	resp = rawPost(t, srv.Listener.Addr().String(), head, writeChunks(bodyLimit, chunk))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Got") != fmt.Sprint(bodyLimit) {
		t.Errorf("body of exactly the limit: status %d, X-Got %q", resp.StatusCode, resp.Header.Get("X-Got"))
	}
}

// TestEdgeRoutes checks a route's edge settings: its own body limit replacing the server's,
// and its request and response header transforms.
func TestEdgeRoutes(t *testing.T) {
	router, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Name:  "uploads",
		Match: route.Match{Path: &route.StringMatch{Prefix: "/upload"}},
		Edge: &route.Edge{
			MaxBodyBytes:    4 * bodyLimit,
			RequestHeaders:  route.HeaderRewrite{Set: map[string]string{"X-Edge": "yes"}, Remove: []string{"X-Internal-User"}},
			ResponseHeaders: route.HeaderRewrite{Add: map[string]string{"Cache-Control": "no-store"}, Remove: []string{"Server"}},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	var seen atomic.Value
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		seen.Store(fmt.Sprintf("edge=%q internal=%q n=%d", r.Header.Get("X-Edge"), r.Header.Get("X-Internal-User"), n))
		w.Header().Set("Server", "backend/1.0")
		w.WriteHeader(http.StatusOK)
	})
	h, err := middleware.NewHandler(backend, middleware.WithMaxRequestBody(bodyLimit), middleware.WithEdgeRoutes(router))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	post := func(path string, n int) *http.Response {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, bytes.NewReader(make([]byte, n)))
		req.Header.Set("X-Edge", "spoofed")
		req.Header.Set("X-Internal-User", "admin")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	resp := post("/upload/a", 2*bodyLimit)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/upload with twice the server limit: status %d, want the route's larger limit to admit it", resp.StatusCode)
	}
	if got, want := seen.Load(), fmt.Sprintf(`edge="yes" internal="" n=%d`, 2*bodyLimit); got != want {
		t.Errorf("backend saw %s, want %s", got, want)
	}
	if resp.Header.Get("Server") != "" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("response headers: %v", resp.Header)
	}
	if resp := post("/upload/a", 4*bodyLimit+1); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("/upload over the route's limit: status %d, want 413", resp.StatusCode)
	}
	if resp := post("/other", 2*bodyLimit); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("/other over the server's limit: status %d, want 413", resp.StatusCode)
	}
	if resp := post("/other", bodyLimit); resp.StatusCode != http.StatusOK || resp.Header.Get("Server") != "backend/1.0" {
		t.Errorf("/other within the limit: status %d, Server %q: want 200, untouched", resp.StatusCode, resp.Header.Get("Server"))
	}
	if !strings.Contains(seen.Load().(string), `edge="spoofed"`) {
		t.Errorf("a route without edge settings rewrote the request: %s", seen.Load())
	}
}

func TestEdgeOptionErrors(t *testing.T) {
	// The edge options are NewHandler's only: not even a type assertion hands them to gRPC.
	for _, opt := range []middleware.HandlerOption{
		middleware.WithCORS(middleware.CORSConfig{AllowedOrigins: []string{"*"}}), middleware.WithMaxRequestBody(1), middleware.WithEdgeRoutes(nil),
	} {
		if _, ok := opt.(middleware.GRPCServerOption); ok {
			t.Errorf("%T is a GRPCServerOption", opt)
		}
	}
	for _, opt := range []middleware.HandlerOption{middleware.WithMaxRequestBody(0), middleware.WithMaxRequestBody(-5), middleware.WithEdgeRoutes(nil)} {
		if _, err := middleware.NewHandler(http.NotFoundHandler(), opt); err == nil {
			t.Errorf("option accepted")
		}
	}
}
