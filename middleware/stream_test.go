package middleware_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// echoServer is a loopback server that switches a request with "Upgrade: echo" to a raw byte
// echo over the hijacked connection (a WebSocket reduced to its handshake), after answering
// the first failFirst handshakes 503.
type echoServer struct {
	*httptest.Server
	handshakes atomic.Int64 // upgrade requests received
	failFirst  int64
}

func newEchoServer(t *testing.T, failFirst int64) *echoServer {
	t.Helper()
	s := &echoServer{failFirst: failFirst}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *echoServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "echo" {
		http.Error(w, "want an upgrade", http.StatusBadRequest)
		return
	}
	if n := s.handshakes.Add(1); n <= s.failFirst {
		http.Error(w, "not yet", http.StatusServiceUnavailable)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	if rw.Flush() != nil {
		return
	}
	buf := make([]byte, 512)
	for {
		n, err := rw.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *echoServer) addr() string { return strings.TrimPrefix(s.URL, "http://") }

// upgrade sends the echo handshake to http://svc/ and returns the upgraded connection.
func upgrade(t *testing.T, client *http.Client) io.ReadWriteCloser {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, "http://svc/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	require.True(t, ok, "the 101 body is a %T, not an io.ReadWriteCloser", resp.Body)
	return rwc
}

// echo writes msg on the connection and reads it back.
func echo(t *testing.T, rwc io.ReadWriteCloser, msg string) {
	t.Helper()
	_, err := rwc.Write([]byte(msg))
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(rwc, got)
	require.NoError(t, err, "echo of %q", msg)
	require.Equal(t, msg, string(got))
}

// A WebSocket-style upgrade passes through the Transport under each timeout, hedging, retries
// and routes: the 101 body is an io.ReadWriteCloser, it echoes both ways, and it still does
// well after every timeout of the Transport has passed. The handshake is never hedged (nor
// mirrored).
func TestUpgradeThroughEveryOption(t *testing.T) {
	const to = 300 * time.Millisecond
	routes := func(t *testing.T) middleware.TransportOption {
		cfg, err := route.ParseConfig([]byte(`
routes:
  - match: {hosts: [svc], path: {prefix: /ws}}
    timeout: 250ms
    attemptTimeout: 200ms
    hedge: {delay: 1ms, maxHedges: 2}
    shadow: {destination: {service: svc}, percent: 100}
`))
		require.NoError(t, err)
		router, err := route.NewRouter(cfg)
		require.NoError(t, err)
		return middleware.WithRoutes(router)
	}
	hedge := middleware.WithHedge(middleware.HedgePolicy{Delay: time.Millisecond, MaxHedges: 2})
	for _, tc := range []struct {
		name      string
		failFirst int64 // handshakes each server refuses with 503 before it upgrades
		opts      func(t *testing.T) []middleware.TransportOption
		retries   int64
	}{
		{name: "WithTimeout", opts: func(*testing.T) []middleware.TransportOption {
			return []middleware.TransportOption{middleware.WithTimeout(to)}
		}},
		{name: "WithAttemptTimeout", opts: func(*testing.T) []middleware.TransportOption {
			return []middleware.TransportOption{middleware.WithAttemptTimeout(to)}
		}},
		{name: "WithHedge", opts: func(*testing.T) []middleware.TransportOption {
			return []middleware.TransportOption{hedge, middleware.WithTimeout(to)}
		}},
		{name: "retried", failFirst: 1, retries: 1, opts: func(*testing.T) []middleware.TransportOption {
			return []middleware.TransportOption{middleware.WithTimeout(5 * to), middleware.WithAttemptTimeout(to),
				middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 3, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond})}
		}},
		{name: "everything", failFirst: 1, retries: 1, opts: func(t *testing.T) []middleware.TransportOption {
			tp := sdktrace.NewTracerProvider() // spans recorded: otelhttp wraps the 101 body
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			return []middleware.TransportOption{routes(t), hedge, middleware.WithTimeout(to), middleware.WithAttemptTimeout(to),
				middleware.WithTracerProvider(tp),
				middleware.WithStreamIdleTimeout(50 * time.Millisecond),
				middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 3, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond})}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newEchoServer(t, tc.failFirst)
			static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: srv.addr()}}})
			base := &http.Transport{}
			tr, err := middleware.NewTransport(base, append([]middleware.TransportOption{middleware.WithResolver(static)}, tc.opts(t)...)...)
			require.NoError(t, err)
			defer func() { require.NoError(t, tr.Close()); base.CloseIdleConnections() }()

			rwc := upgrade(t, &http.Client{Transport: tr})
			defer rwc.Close()
			echo(t, rwc, "hello")
			// Past every timeout the Transport has (and the idle timeout, which never applies
			// to an upgraded connection): the connection is still the caller's.
			time.Sleep(2 * to)
			echo(t, rwc, strings.Repeat("x", 2000))
			echo(t, rwc, "bye")
			assert.Equal(t, tc.failFirst+1, srv.handshakes.Load(), "handshakes the server saw: never hedged")
			st := tr.Stats()
			assert.Zero(t, st.Hedges)
			assert.Equal(t, tc.retries, st.Retries)
		})
	}
}

// sseServer sends server-sent events: events of them, every interval, then ends the stream;
// with pauseAfter > 0 it stops sending after that many events and holds the stream open until
// the client goes. It counts the requests it gets and notes when a held stream ended.
type sseServer struct {
	*httptest.Server
	events, pauseAfter int
	interval           time.Duration
	headerDelay        time.Duration // before the response headers
	requests           atomic.Int64
	clientGone         chan struct{} // closed when a held stream's client went away
}

func newSSEServer(t *testing.T, events, pauseAfter int, interval time.Duration) *sseServer {
	t.Helper()
	s := &sseServer{events: events, pauseAfter: pauseAfter, interval: interval, clientGone: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *sseServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if s.headerDelay > 0 {
		select {
		case <-time.After(s.headerDelay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for i := range s.events {
		if s.pauseAfter > 0 && i == s.pauseAfter {
			select {
			case <-r.Context().Done():
				close(s.clientGone)
			case <-time.After(10 * time.Second):
			}
			return
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		}
		if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
			return
		}
		_ = rc.Flush()
	}
}

func (s *sseServer) addr() string { return strings.TrimPrefix(s.URL, "http://") }

// streamClient is a Transport for the one service "svc" at addr.
func streamClient(t *testing.T, addr string, opts ...middleware.TransportOption) (*middleware.Transport, *http.Client) {
	t.Helper()
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: addr}}})
	base := &http.Transport{}
	tr, err := middleware.NewTransport(base, append([]middleware.TransportOption{middleware.WithResolver(static)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()); base.CloseIdleConnections() })
	return tr, &http.Client{Transport: tr}
}

// readEvents reads the "data:" lines of an event stream until it ends, returning them and
// the error that ended it (nil at EOF), with when the last event arrived.
func readEvents(body io.Reader) (events []string, last time.Time, err error) {
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, v)
			last = time.Now()
		}
	}
	return events, last, sc.Err()
}

func getSSE(t *testing.T, client *http.Client, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctxFor(t, 20*time.Second), http.MethodGet, "http://svc"+path, nil)
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return resp
}

// A 2 s event stream is read whole under a 300 ms attempt timeout, which bounds only the wait
// for the headers; with hedging and retries on, the started stream is sent once.
func TestStreamOutlivesAttemptTimeout(t *testing.T) {
	srv := newSSEServer(t, 20, 0, 100*time.Millisecond)
	tr, client := streamClient(t, srv.addr(), middleware.WithAttemptTimeout(300*time.Millisecond),
		middleware.WithHedge(middleware.HedgePolicy{Delay: 150 * time.Millisecond, MaxHedges: 2}))
	start := time.Now()
	resp := getSSE(t, client, "/events")
	defer resp.Body.Close()
	events, _, err := readEvents(resp.Body)
	require.NoError(t, err)
	assert.Len(t, events, 20, "every event of the stream")
	assert.GreaterOrEqual(t, time.Since(start), 2*time.Second, "the stream took its 2 s")
	assert.EqualValues(t, 1, srv.requests.Load(), "the started stream was sent once")
	assert.Zero(t, tr.Stats().Hedges)
	assert.Zero(t, tr.Stats().Retries)
}

// The attempt timeout still bounds the wait for the headers (the attempt is retried), and a
// route can turn it off for a stream that is slow to start.
func TestAttemptTimeoutBoundsHeadersAndRouteDisablesIt(t *testing.T) {
	srv := newSSEServer(t, 2, 0, 10*time.Millisecond)
	srv.headerDelay = 400 * time.Millisecond
	cfg, err := route.ParseConfig([]byte(`
routes:
  - match: {hosts: [svc], path: {prefix: /slow}}
    disableAttemptTimeout: true
`))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	tr, client := streamClient(t, srv.addr(), middleware.WithRoutes(router), middleware.WithAttemptTimeout(100*time.Millisecond),
		middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}))

	req, _ := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, "http://svc/fast", nil)
	_, err = client.Do(req)
	require.Error(t, err, "the headers came after the attempt timeout")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.EqualValues(t, 1, tr.Stats().Retries, "an attempt that timed out before its headers is retried")

	resp := getSSE(t, client, "/slow/events")
	defer resp.Body.Close()
	events, _, err := readEvents(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, []string{"0", "1"}, events)
}

// A stream whose server pauses is cut by the 200 ms idle timeout, with a clear error, and is
// not sent again (no retry, no hedge); the server sees its client go. The idle timeout comes
// from the Transport or from a route.
func TestStreamIdleTimeoutCutsAPausedStream(t *testing.T) {
	cfg, err := route.ParseConfig([]byte(`
routes:
  - match: {hosts: [svc], path: {prefix: /routed}}
    idleTimeout: 200ms
  - match: {hosts: [svc], path: {prefix: /off}}
    disableIdleTimeout: true
`))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	for _, tc := range []struct {
		name, path string
		opts       []middleware.TransportOption
		plain      bool // no hedging, retries or attempt timeout
	}{
		{"transport", "/events", []middleware.TransportOption{middleware.WithStreamIdleTimeout(200 * time.Millisecond)}, false},
		{"route", "/routed", []middleware.TransportOption{middleware.WithRoutes(router), middleware.WithStreamIdleTimeout(time.Hour)}, false},
		{"alone", "/events", []middleware.TransportOption{middleware.WithStreamIdleTimeout(200 * time.Millisecond)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newSSEServer(t, 10, 3, 20*time.Millisecond)
			opts := tc.opts
			if !tc.plain {
				opts = append([]middleware.TransportOption{
					middleware.WithAttemptTimeout(time.Second),
					middleware.WithHedge(middleware.HedgePolicy{Delay: 150 * time.Millisecond, MaxHedges: 2}),
					middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 3, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}),
				}, tc.opts...)
			}
			tr, client := streamClient(t, srv.addr(), opts...)
			resp := getSSE(t, client, tc.path)
			events, last, err := readEvents(resp.Body)
			cut := time.Now()
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, []string{"0", "1", "2"}, events)
			require.ErrorIs(t, err, middleware.ErrStreamIdle)
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			assert.True(t, ne.Timeout())
			assert.Contains(t, err.Error(), "200ms")
			assert.GreaterOrEqual(t, cut.Sub(last), 200*time.Millisecond, "cut before the stream was idle 200 ms")
			select {
			case <-srv.clientGone:
			case <-time.After(5 * time.Second):
				t.Fatal("the server did not see its client go")
			}
			assert.EqualValues(t, 1, srv.requests.Load(), "a started stream is never retried or hedged")
			assert.Zero(t, tr.Stats().Retries)
			assert.Zero(t, tr.Stats().Hedges)
		})
	}
	t.Run("route turns it off", func(t *testing.T) {
		srv := newSSEServer(t, 6, 0, 300*time.Millisecond) // gaps longer than the idle timeout
		_, client := streamClient(t, srv.addr(), middleware.WithRoutes(router), middleware.WithStreamIdleTimeout(100*time.Millisecond))
		resp := getSSE(t, client, "/off")
		defer resp.Body.Close()
		events, _, err := readEvents(resp.Body)
		require.NoError(t, err)
		assert.Len(t, events, 6)
	})
}

// Time the caller spends between reads is not idle time: a slow reader of a live stream is not
// cut.
func TestStreamIdleTimeoutIgnoresASlowReader(t *testing.T) {
	srv := newSSEServer(t, 4, 0, 10*time.Millisecond)
	_, client := streamClient(t, srv.addr(), middleware.WithStreamIdleTimeout(100*time.Millisecond))
	resp := getSSE(t, client, "/events")
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 16) // small reads: one Read per few bytes
	var got []string
	for {
		line, err := br.ReadString('\n')
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
			got = append(got, v)
			time.Sleep(150 * time.Millisecond) // busy with the event, longer than the idle timeout
		}
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}
	assert.Equal(t, []string{"0", "1", "2", "3"}, got)
}

func TestStreamOptionsErrors(t *testing.T) {
	_, err := middleware.NewTransport(nil, middleware.WithStreamIdleTimeout(-time.Second))
	require.ErrorContains(t, err, "WithStreamIdleTimeout")
	for _, tc := range []struct{ doc, field string }{
		{"routes:\n  - {attemptTimeout: 1s, disableAttemptTimeout: true}\n", "routes[0].disableAttemptTimeout"},
		{"routes:\n  - {idleTimeout: 1s, disableIdleTimeout: true}\n", "routes[0].disableIdleTimeout"},
		{"routes:\n  - {idleTimeout: -1s}\n", "routes[0].idleTimeout"},
	} {
		cfg, err := route.ParseConfig([]byte(tc.doc))
		if err == nil {
			_, err = route.Compile(cfg)
		}
		require.ErrorIs(t, err, route.ErrInvalidConfig, tc.doc)
		assert.ErrorContains(t, err, tc.field)
	}
}
