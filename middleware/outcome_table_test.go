package middleware_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
)

// outcomeCase is one kind of attempt result and what every consumer of the outcome must make
// of it.
type outcomeCase struct {
	name string
	// setup prepares the backend (and returns the address to resolve, "" for the backend's).
	setup func(t *testing.T, b *faultbackend.Backend) string
	// opts are extra transport options; call sends the request (nil: a GET with a 5 s
	// context).
	opts []middleware.TransportOption
	call func(t *testing.T, c *http.Client) (*http.Response, error)
	url  string // "" for http://svc/

	wantErr     func(error) bool // nil: a response is expected
	wantStatus  int
	retried     bool // a second attempt was sent
	ejected     bool // the endpoint was ejected as an outlier
	breakerOpen bool // the endpoint's breaker opened
	spanError   bool // the request span ends with status Error
}

// TestOutcomeTable sends one request per kind of attempt result through a Transport over a
// real loopback backend, with consumers set to react to a single result (a retry allowed,
// ejection after one gateway failure, a breaker that opens on one failure), and checks what
// each of them did. The table in package outcome is the specification.
func TestOutcomeTable(t *testing.T) {
	hang := func(t *testing.T, b *faultbackend.Backend) string { b.Set(faultbackend.Hang()); return "" }
	status := func(code int, header ...string) func(*testing.T, *faultbackend.Backend) string {
		return func(t *testing.T, b *faultbackend.Backend) string {
			b.SetHandler(func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i+1 < len(header); i += 2 {
					w.Header().Set(header[i], header[i+1])
				}
				w.WriteHeader(code)
			})
			return ""
		}
	}
	getWith := func(ctx func() (context.Context, context.CancelFunc)) func(*testing.T, *http.Client) (*http.Response, error) {
		return func(t *testing.T, c *http.Client) (*http.Response, error) {
			cx, cancel := ctx()
			defer cancel()
			req, _ := http.NewRequestWithContext(cx, http.MethodGet, "http://svc/", nil)
			resp, err := c.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			return resp, err
		}
	}
	isDeadline := func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }
	cases := []outcomeCase{
		{name: "connect refused", setup: func(t *testing.T, _ *faultbackend.Backend) string { return closedPort(t) },
			wantErr: func(err error) bool { var op *net.OpError; return errors.As(err, &op) }, retried: true, ejected: true, breakerOpen: true, spanError: true},
		{name: "reset before headers", setup: func(t *testing.T, b *faultbackend.Backend) string {
			b.Set(faultbackend.ResetBeforeHeaders())
			return ""
		},
			wantErr: func(err error) bool { return err != nil }, retried: true, ejected: true, breakerOpen: true, spanError: true},
		{name: "reset mid-body", setup: func(t *testing.T, b *faultbackend.Backend) string { b.Set(faultbackend.ResetAfterHeaders()); return "" },
			wantStatus: 200},
		{name: "TLS failure", setup: func(t *testing.T, _ *faultbackend.Backend) string { return faultbackend.NewTLS(t).Addr() },
			url:     "https://svc/", // the base transport trusts the system roots: the backend's CA is unknown
			wantErr: func(err error) bool { var ua x509.UnknownAuthorityError; return errors.As(err, &ua) }, ejected: true, spanError: true},
		{name: "attempt timeout", setup: hang, opts: []middleware.TransportOption{middleware.WithAttemptTimeout(50 * time.Millisecond)},
			wantErr: isDeadline, retried: true, ejected: true, breakerOpen: true, spanError: true},
		{name: "overall timeout", setup: hang, opts: []middleware.TransportOption{middleware.WithTimeout(50 * time.Millisecond)},
			wantErr: isDeadline, ejected: true, breakerOpen: true, spanError: true},
		{name: "caller cancel", setup: hang, call: getWith(func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}), wantErr: func(err error) bool { return errors.Is(err, context.Canceled) }, spanError: true},
		{name: "caller deadline", setup: hang, call: getWith(func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}), wantErr: isDeadline, spanError: true},
		{name: "http.Client.Timeout", setup: hang, call: func(t *testing.T, c *http.Client) (*http.Response, error) {
			c.Timeout = 50 * time.Millisecond
			return c.Get("http://svc/")
		}, wantErr: func(err error) bool { var ne net.Error; return errors.As(err, &ne) && ne.Timeout() }, spanError: true},
		{name: "200", setup: status(200), wantStatus: 200},
		{name: "404", setup: status(404), wantStatus: 404},
		{name: "429 with Retry-After", setup: status(429, "Retry-After", "1"), wantStatus: 429},
		{name: "500", setup: status(500), wantStatus: 500, breakerOpen: true, spanError: true},
		{name: "502", setup: status(502), wantStatus: 502, retried: true, ejected: true, breakerOpen: true, spanError: true},
		{name: "503", setup: status(503), wantStatus: 503, retried: true, ejected: true, breakerOpen: true, spanError: true},
		{name: "504", setup: status(504), wantStatus: 504, retried: true, ejected: true, breakerOpen: true, spanError: true},
		{name: "breaker open", setup: status(500), call: func(t *testing.T, c *http.Client) (*http.Response, error) {
			resp, err := c.Get("http://svc/") // a 500 opens the breaker of the only endpoint
			require.NoError(t, err)
			_ = resp.Body.Close()
			return c.Get("http://svc/")
		}, wantErr: func(err error) bool { return errors.Is(err, breaker.ErrOpen) }, breakerOpen: true, spanError: true},
		{name: "limiter refusal", setup: status(200),
			opts:    []middleware.TransportOption{middleware.WithRateLimiter(zeroLimiter(t))},
			wantErr: func(err error) bool { return errors.Is(err, ratelimit.ErrLimited) }, spanError: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runOutcomeCase(t, tc) })
	}
}

func runOutcomeCase(t *testing.T, tc outcomeCase) {
	b := faultbackend.New(t)
	addr := tc.setup(t, b)
	if addr == "" {
		addr = b.Addr()
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	opts := append([]middleware.TransportOption{
		middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: addr}}})),
		middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}),
		middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{ConsecutiveGatewayFailure: 1, AlwaysEjectOne: true}}),
		middleware.WithBreaker(breaker.Config{MinimumVolume: 1, FailureRateThreshold: 100, OpenDelay: time.Minute}),
		middleware.WithTracerProvider(tp),
	}, tc.opts...)
	base := &http.Transport{}
	tr, err := middleware.NewTransport(base, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()); base.CloseIdleConnections() })
	c := &http.Client{Transport: tr}
	call := tc.call
	if call == nil {
		call = func(t *testing.T, c *http.Client) (*http.Response, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
			resp, err := c.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			return resp, err
		}
	}
	if tc.url != "" {
		call = func(t *testing.T, c *http.Client) (*http.Response, error) { return c.Get(tc.url) }
	}
	resp, err := call(t, c)
	if tc.wantErr != nil {
		require.Error(t, err)
		assert.True(t, tc.wantErr(err), "unexpected error: %v", err)
	} else {
		require.NoError(t, err)
		assert.Equal(t, tc.wantStatus, resp.StatusCode)
	}
	st := tr.Stats()
	assert.Equal(t, tc.retried, st.Retries > 0, "retried (stats %+v)", st)
	assert.Equal(t, tc.ejected, st.Ejections > 0, "ejected (stats %+v)", st)
	assert.Equal(t, tc.breakerOpen, st.BreakerOpens > 0, "breaker opened (stats %+v)", st)
	// The pick and the permit were released, whatever happened.
	for _, e := range tr.Endpoints("svc") {
		assert.Zero(t, e.InFlight, "in flight on %s", e.Addr)
	}
	var reqSpan sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "GET svc" {
				reqSpan = s // the last request's
			}
		}
		return reqSpan != nil
	}, 5*time.Second, 5*time.Millisecond, "the request span ended")
	assert.Equal(t, tc.spanError, reqSpan.Status().Code == codes.Error, "span status %v", reqSpan.Status())
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// zeroLimiter refuses every request for the service "svc".
func zeroLimiter(t *testing.T) ratelimit.Limiter {
	l, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1, Burst: 1}, Overrides: map[string]ratelimit.Quota{"svc": {}}})
	require.NoError(t, err)
	return l
}

// panicTransport panics on its first request and passes the others on.
type panicTransport struct {
	next     http.RoundTripper
	panicked atomic.Bool
}

func (p *panicTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if p.panicked.CompareAndSwap(false, true) {
		panic("base transport exploded")
	}
	return p.next.RoundTrip(r)
}

// A panic in the base transport reaches the caller's goroutine, sequential or hedged, after
// the attempt's balancer slot and breaker permit are released: the process survives, nothing
// stays in flight, and the next request is served.
func TestPanicInBaseTransportReachesCaller(t *testing.T) {
	for _, hedged := range []bool{false, true} {
		t.Run(map[bool]string{false: "sequential", true: "hedged"}[hedged], func(t *testing.T) {
			b := faultbackend.New(t)
			base := &http.Transport{}
			t.Cleanup(base.CloseIdleConnections)
			opts := []middleware.TransportOption{
				middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: b.Addr()}}})),
				// One failure would open the breaker: the panic must not count as one.
				middleware.WithBreaker(breaker.Config{MinimumVolume: 1, FailureRateThreshold: 100}),
			}
			if hedged {
				opts = append(opts, middleware.WithHedge(middleware.HedgePolicy{Delay: time.Millisecond}))
			}
			tr, err := middleware.NewTransport(&panicTransport{next: base}, opts...)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, tr.Close()) })
			c := &http.Client{Transport: tr}
			func() {
				defer func() {
					assert.Equal(t, "base transport exploded", recover(), "the panic reached the caller")
				}()
				_, _ = c.Get("http://svc/")
				t.Error("no panic")
			}()
			for _, e := range tr.Endpoints("svc") {
				assert.Zero(t, e.InFlight, "in flight on %s", e.Addr)
			}
			resp, err := c.Get("http://svc/")
			require.NoError(t, err, "the permit was released without counting a failure")
			_ = resp.Body.Close()
			assert.Equal(t, 200, resp.StatusCode)
		})
	}
}

// A TLS verification failure is terminal: one dial per request, no retry, and every caller
// gets the certificate error, never a breaker refusal, however many requests fail so.
func TestTLSFailureIsTerminal(t *testing.T) {
	b := faultbackend.NewTLS(t)
	base := &http.Transport{} // the system roots: the backend's self-signed CA is unknown
	t.Cleanup(base.CloseIdleConnections)
	tr, err := middleware.NewTransport(base,
		middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: b.Addr()}}})),
		middleware.WithBreaker(breaker.Config{MinimumVolume: 1, FailureRateThreshold: 100, OpenDelay: time.Minute}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	c := &http.Client{Transport: tr}
	const n = 5
	for range n {
		_, err := c.Get("https://svc/")
		var ua x509.UnknownAuthorityError
		require.True(t, errors.As(err, &ua), "the caller gets the x509 error: %v", err)
	}
	st := tr.Stats()
	assert.Zero(t, st.Retries)
	assert.Zero(t, st.BreakerOpens)
	assert.EqualValues(t, n, b.NewConnections(), "one dial per request")
	assert.Zero(t, b.Attempts(), "no request got through")
}
