package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// deadlineProbe is a handler that notes its request context's deadline and the TimeoutHeader
// it got.
type deadlineProbe struct {
	mu       sync.Mutex
	deadline time.Time
	has      bool
	header   string
}

func (p *deadlineProbe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.deadline, p.has = r.Context().Deadline()
	p.header = r.Header.Get(middleware.TimeoutHeader)
	p.mu.Unlock()
	_, _ = w.Write([]byte("ok"))
}

func (p *deadlineProbe) seen() (time.Time, bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deadline, p.has, p.header
}

// serveWith starts a loopback server running h behind NewHandler with opts.
func serveWith(t *testing.T, h http.Handler, opts ...middleware.HandlerOption) *httptest.Server {
	t.Helper()
	hh, err := middleware.NewHandler(h, opts...)
	require.NoError(t, err)
	srv := httptest.NewServer(hh)
	t.Cleanup(srv.Close)
	return srv
}

// clientFor returns a Transport that knows each service by the server given.
func clientFor(t *testing.T, services map[string]*httptest.Server, opts ...middleware.TransportOption) *http.Client {
	t.Helper()
	m := map[string][]discovery.Endpoint{}
	for name, s := range services {
		m[name] = []discovery.Endpoint{{Addr: strings.TrimPrefix(s.URL, "http://")}}
	}
	base := &http.Transport{}
	tr, err := middleware.NewTransport(base, append([]middleware.TransportOption{middleware.WithResolver(discovery.MustNewStatic(m))}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()); base.CloseIdleConnections() })
	return &http.Client{Transport: tr}
}

func call(t *testing.T, c *http.Client, ctx context.Context, url string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// The handler's context deadline is the client's, within 50 ms, whether the client's deadline
// is its caller's context or its WithTimeout; the server's maximum caps it; a caller the trust
// predicate does not admit gets only the server's maximum.
func TestHandlerDeadlineFromClient(t *testing.T) {
	loopback := route.TrustPrefixes(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
	elsewhere := route.TrustPrefixes(netip.MustParsePrefix("10.0.0.0/8"))
	for _, tc := range []struct {
		name      string
		handler   []middleware.HandlerOption
		client    []middleware.TransportOption
		callerTO  time.Duration // the caller's context; 0: none
		want      time.Duration // the deadline the handler should see, from the call's start
		wantNone  bool
		fromStart bool // want is counted from the server's arrival (the server's cap), not the client's start
	}{
		{name: "caller's context", handler: []middleware.HandlerOption{middleware.WithMaxServerDeadline(time.Minute)}, callerTO: 3 * time.Second, want: 3 * time.Second},
		{name: "WithTimeout", handler: []middleware.HandlerOption{middleware.WithMaxServerDeadline(time.Minute)}, client: []middleware.TransportOption{middleware.WithTimeout(2 * time.Second)}, want: 2 * time.Second},
		{name: "attempt timeout is not sent", handler: []middleware.HandlerOption{middleware.WithMaxServerDeadline(time.Minute)}, client: []middleware.TransportOption{middleware.WithAttemptTimeout(time.Second)}, callerTO: 4 * time.Second, want: 4 * time.Second},
		{name: "capped", handler: []middleware.HandlerOption{middleware.WithMaxServerDeadline(700 * time.Millisecond)}, callerTO: 5 * time.Second, want: 700 * time.Millisecond, fromStart: true},
		{name: "no client deadline, capped", handler: []middleware.HandlerOption{middleware.WithMaxServerDeadline(900 * time.Millisecond)}, want: 900 * time.Millisecond, fromStart: true},
		{name: "trusted", handler: []middleware.HandlerOption{middleware.WithDeadlineTrust(loopback)}, callerTO: 3 * time.Second, want: 3 * time.Second},
		{name: "untrusted", handler: []middleware.HandlerOption{middleware.WithDeadlineTrust(elsewhere)}, callerTO: 3 * time.Second, wantNone: true},
		{name: "untrusted, capped", handler: []middleware.HandlerOption{middleware.WithDeadlineTrust(elsewhere), middleware.WithMaxServerDeadline(10 * time.Second)}, callerTO: 3 * time.Second, want: 10 * time.Second, fromStart: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe := &deadlineProbe{}
			srv := serveWith(t, probe, tc.handler...)
			c := clientFor(t, map[string]*httptest.Server{"svc": srv}, tc.client...)
			ctx := context.Background()
			start := time.Now()
			if tc.callerTO > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.callerTO)
				defer cancel()
			}
			call(t, c, ctx, "http://svc/")
			got, has, header := probe.seen()
			if tc.wantNone {
				assert.False(t, has, "an untrusted caller set the deadline %v (header %q)", time.Until(got), header)
				return
			}
			require.True(t, has, "no deadline; header %q", header)
			want := start.Add(tc.want)
			if tc.fromStart {
				// The server's own cap runs from the request's arrival: after start, before now.
				assert.False(t, got.Before(want), "deadline %v before %v", got, want)
				assert.False(t, got.After(time.Now().Add(tc.want)), "deadline later than the cap")
				return
			}
			assert.WithinDuration(t, want, got, 50*time.Millisecond, "the handler's deadline is the client's (header %q)", header)
		})
	}
}

// A Transport call the handler makes with r.Context() carries the rest of the deadline on:
// the next server's handler sees the same deadline, within 50 ms.
func TestHandlerDeadlinePropagates(t *testing.T) {
	last := &deadlineProbe{}
	srvB := serveWith(t, last, middleware.WithMaxServerDeadline(time.Minute))
	var toB *http.Client
	var errMid error
	mid := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://b/", nil)
		resp, err := toB.Do(req)
		if err != nil {
			errMid = err
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_ = resp.Body.Close()
		_, _ = w.Write([]byte("ok"))
	})
	srvA := serveWith(t, mid, middleware.WithMaxServerDeadline(time.Minute))
	toB = clientFor(t, map[string]*httptest.Server{"b": srvB})
	toA := clientFor(t, map[string]*httptest.Server{"a": srvA})

	deadline := time.Now().Add(3 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	call(t, toA, ctx, "http://a/")
	require.NoError(t, errMid)
	got, has, header := last.seen()
	require.True(t, has, "the second hop has no deadline")
	assert.NotEmpty(t, header)
	assert.WithinDuration(t, deadline, got, 50*time.Millisecond, "two hops on, the deadline is the caller's")
}

// Malformed or out-of-range headers are ignored: the handler gets no deadline from them (only
// the server's own cap, when it has one).
func TestHandlerDeadlineHeaderStrict(t *testing.T) {
	probe := &deadlineProbe{}
	h, err := middleware.NewHandler(probe, middleware.WithMaxServerDeadline(0))
	require.NoError(t, err)
	for _, v := range [][]string{
		{""}, {"abc"}, {"-1"}, {"+5"}, {" 5"}, {"5 "}, {"5ms"}, {"1.5"}, {"0x10"}, {"123456789"},
		{"99999999999999999999999"}, {"5", "6"}, {"٣"},
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header[middleware.TimeoutHeader] = v
		h.ServeHTTP(httptest.NewRecorder(), req)
		_, has, _ := probe.seen()
		assert.False(t, has, "header %q gave a deadline", v)
	}
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{{"0", 0}, {"1500", 1500 * time.Millisecond}, {"99999999", 99999999 * time.Millisecond}, {"00000250", 250 * time.Millisecond}} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(middleware.TimeoutHeader, tc.v)
		start := time.Now()
		h.ServeHTTP(httptest.NewRecorder(), req)
		got, has, _ := probe.seen()
		require.True(t, has, "header %q", tc.v)
		assert.WithinDuration(t, start.Add(tc.want), got, 50*time.Millisecond, "header %q", tc.v)
	}
}

// A TimeoutHeader the caller put on a request without a deadline is not sent on: the header
// says what the Transport knows, nothing else.
func TestTransportDropsCallersTimeoutHeader(t *testing.T) {
	probe := &deadlineProbe{}
	srv := serveWith(t, probe, middleware.WithMaxServerDeadline(0))
	c := clientFor(t, map[string]*httptest.Server{"svc": srv})
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	req.Header.Set(middleware.TimeoutHeader, "5")
	resp, err := c.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	_, has, header := probe.seen()
	assert.False(t, has)
	assert.Empty(t, header)
	assert.Equal(t, "5", req.Header.Get(middleware.TimeoutHeader), "the caller's request is unchanged")
}

func TestDeadlineOptionsErrors(t *testing.T) {
	_, err := middleware.NewHandler(http.NotFoundHandler(), middleware.WithMaxServerDeadline(-time.Second))
	require.ErrorContains(t, err, "WithMaxServerDeadline")
	_, err = middleware.NewHandler(http.NotFoundHandler(), middleware.WithDeadlineTrust(nil))
	require.ErrorContains(t, err, "WithDeadlineTrust")
}
