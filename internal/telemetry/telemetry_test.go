package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/tracing"
)

// headerTransport records the requests it is given and answers 200.
type headerTransport struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (h *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.reqs = append(h.reqs, req)
	h.mu.Unlock()
	return nopTransport{status: 200}.RoundTrip(req)
}

// scenario is what the middleware does for one request: a first attempt, a retry, a body.
func scenario(tel *telemetry.Telemetry, d *telemetry.Destination, rt http.RoundTripper, req *http.Request) error {
	ctx, r := tel.StartRequest(req.Context(), d, req)
	r.Route("default", "stable")
	actx, a := r.StartAttempt(ctx, telemetry.AttemptInfo{N: 0, Kind: tracing.AttemptFirst, Endpoint: "127.0.0.1:1"})
	resp, err := rt.RoundTrip(req.WithContext(actx))
	kind := outcome.FromHTTP(resp, err, outcome.CauseNone, time.Time{}).Kind // the adapter's Classify
	a.End(kind)
	r.End(a, kind, resp, err)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// The default, before any test installs an SDK: the global delegates are no-ops, and
// telemetry does nothing and allocates nothing. (This test must stay first in the package:
// once an SDK has been set globally, the delegates are gone for the process.)
func TestDisabledByDefault(t *testing.T) {
	tel, err := telemetry.New()
	require.NoError(t, err)
	defer tel.Close()
	require.False(t, tel.Enabled(), "global providers are no-ops until an SDK is set")

	d := tel.Destination("svc")
	base := &headerTransport{}
	rt := tel.Transport(base)
	req := httptest.NewRequest(http.MethodGet, "http://svc/x", nil)
	require.NoError(t, scenario(tel, d, rt, req))
	require.Len(t, base.reqs, 1)
	assert.Empty(t, base.reqs[0].Header.Get("traceparent"), "no propagation while off")
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Same(t, req, base.reqs[1], "the request passes straight through")

	ctx := context.Background()
	resp = &http.Response{StatusCode: 200, Body: http.NoBody}
	allocs := testing.AllocsPerRun(200, func() {
		c, r := tel.StartRequest(ctx, d, req)
		r.Route("default", "stable")
		r.BreakerRefused("127.0.0.1:2")
		r.BudgetRefused(tracing.AttemptRetry)
		c, a := r.StartAttempt(c, telemetry.AttemptInfo{Endpoint: "127.0.0.1:1"})
		a.End(outcome.Success)
		a.Discarded()
		r.Ejected("127.0.0.1:1")
		r.End(a, outcome.Success, resp, nil)
		tel.RateLimited(c, "outbound", time.Millisecond, true)
		tel.ShadowMismatch("default", "shadow")
		d.BreakerTransition("127.0.0.1:1", breaker.StateClosed, breaker.StateOpen)
		_ = tel.Extract(c, req.Header)
	})
	assert.Zero(t, allocs)
}

func TestNoopProvidersDisable(t *testing.T) {
	tel, err := telemetry.New(telemetry.WithTracerProvider(tracenoop.NewTracerProvider()),
		telemetry.WithMeterProvider(metricnoop.NewMeterProvider()))
	require.NoError(t, err)
	defer tel.Close()
	assert.False(t, tel.Enabled())
	ctx, r := tel.StartRequest(context.Background(), tel.Destination("svc"), nil)
	assert.Nil(t, r)
	assert.Equal(t, context.Background(), ctx)

	var nilTel *telemetry.Telemetry
	assert.False(t, nilTel.Enabled())
	assert.Nil(t, nilTel.Destination("svc"))
	assert.NoError(t, nilTel.Close())
}

func TestNewValidates(t *testing.T) {
	for name, opt := range map[string]telemetry.Option{
		"WithTracerProvider": telemetry.WithTracerProvider(nil),
		"WithMeterProvider":  telemetry.WithMeterProvider(nil),
		"WithPropagators":    telemetry.WithPropagators(nil),
		"WithState":          telemetry.WithState(nil),
		"nil Option":         nil,
	} {
		_, err := telemetry.New(opt)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), name)
	}
}

// weirdTP is a provider whose type cannot be compared with ==.
type weirdTP struct {
	trace.TracerProvider
	_ []int
}

// Providers are taken when New runs: the global ones as they are then. An SDK installed
// globally after New is not seen by that Telemetry; one built afterwards uses it. The global
// propagator is taken likewise, W3C trace context and baggage standing in while it
// propagates nothing. No-op providers installed globally turn telemetry off again.
func TestGlobalProvidersTakenAtNew(t *testing.T) {
	s := newSDK(t)
	before, err := telemetry.New()
	require.NoError(t, err)
	defer before.Close()
	delegate := otel.GetTracerProvider() // the API's own, which forwards to an SDK once one is set

	otel.SetTracerProvider(s.tp)
	otel.SetMeterProvider(s.mp)
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		// The default delegate cannot be restored; this is what it stood for.
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	})
	assert.False(t, before.Enabled(), "an SDK installed after New is not seen")
	base := &headerTransport{}
	require.NoError(t, scenario(before, before.Destination("svc"), before.Transport(base), httptest.NewRequest(http.MethodGet, "http://svc/x", nil)))
	assert.Empty(t, s.rec.Started())
	assert.Empty(t, base.reqs[0].Header.Get("traceparent"))

	tel, err := telemetry.New()
	require.NoError(t, err)
	defer tel.Close()
	require.True(t, tel.Enabled())
	base = &headerTransport{}
	require.NoError(t, scenario(tel, tel.Destination("svc"), tel.Transport(base), httptest.NewRequest(http.MethodGet, "http://svc/x", nil)))
	spans := s.rec.Ended()
	require.Len(t, spans, 2, "the request's span and its attempt's, and no other")
	assert.Len(t, s.rec.Started(), 2)
	tp := base.reqs[0].Header.Get("traceparent")
	assert.Contains(t, tp, spans[0].SpanContext().TraceID().String(), "W3C trace context by default")
	assert.Equal(t, int64(1), sum(t, s.metrics(t), tracing.MetricAttempts))

	// The API's delegating provider, given explicitly, records once it has an SDK behind it.
	viaDelegate, err := telemetry.New(telemetry.WithTracerProvider(delegate), telemetry.WithMeterProvider(metricnoop.NewMeterProvider()))
	require.NoError(t, err)
	defer viaDelegate.Close()
	assert.True(t, viaDelegate.Enabled())

	// A global propagator set later is used by what is built later, and only by it.
	otel.SetTextMapPropagator(propagation.Baggage{})
	baggageOnly, err := telemetry.New()
	require.NoError(t, err)
	defer baggageOnly.Close()
	base = &headerTransport{}
	require.NoError(t, scenario(baggageOnly, baggageOnly.Destination("svc"), baggageOnly.Transport(base), httptest.NewRequest(http.MethodGet, "http://svc/x", nil)))
	assert.Empty(t, base.reqs[0].Header.Get("traceparent"))
	base = &headerTransport{}
	require.NoError(t, scenario(tel, tel.Destination("svc"), tel.Transport(base), httptest.NewRequest(http.MethodGet, "http://svc/x", nil)))
	assert.NotEmpty(t, base.reqs[0].Header.Get("traceparent"), "the propagator taken at New")

	// A provider type that == would panic on is handled.
	otel.SetTracerProvider(weirdTP{TracerProvider: s.tp})
	weird, err := telemetry.New()
	require.NoError(t, err)
	defer weird.Close()
	assert.True(t, weird.Enabled())

	otel.SetTracerProvider(tracenoop.NewTracerProvider())
	otel.SetMeterProvider(metricnoop.NewMeterProvider())
	after, err := telemetry.New()
	require.NoError(t, err)
	defer after.Close()
	assert.False(t, after.Enabled())
	assert.True(t, tel.Enabled(), "what was built keeps its providers")
	n := len(s.rec.Ended())
	require.NoError(t, scenario(after, after.Destination("svc"), after.Transport(&headerTransport{}), httptest.NewRequest(http.MethodGet, "http://svc/x", nil)))
	assert.Len(t, s.rec.Ended(), n, "nothing recorded with no-op providers")
}

// backend is a loopback server: /fail answers 503, /slow waits for the client to give up,
// anything else 200. It records the traceparent of each request.
type backend struct {
	*httptest.Server
	mu          sync.Mutex
	traceparent []string
	slow        chan struct{} // closed when /slow is entered
}

func newBackend(t *testing.T) *backend {
	b := &backend{slow: make(chan struct{})}
	var once sync.Once
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.traceparent = append(b.traceparent, r.Header.Get("traceparent"))
		b.mu.Unlock()
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/slow":
			once.Do(func() { close(b.slow) })
			<-r.Context().Done()
		default:
			_, _ = io.WriteString(w, "hello")
		}
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

// The span tree and metrics of a request that failed once with a 503, was retried to a slow
// endpoint, and hedged to a fast one that won; the retry is cancelled.
func TestRetriedAndHedged(t *testing.T) {
	s := newSDK(t)
	tel := s.telemetry(t)
	a, b := newBackend(t), newBackend(t)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	rt := tel.Transport(base)
	d := tel.Destination("svc")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
	require.NoError(t, err)
	rctx, r := tel.StartRequest(ctx, d, req)
	require.NotNil(t, r)
	assert.True(t, r.Recording())
	r.Route("by-path", "canary")

	send := func(actx context.Context, url string) (*http.Response, error) {
		out, err := http.NewRequestWithContext(actx, http.MethodGet, url, nil)
		require.NoError(t, err)
		return rt.RoundTrip(out)
	}

	// Attempt 0: a 503, thrown away for a retry.
	c0, a0 := r.StartAttempt(rctx, telemetry.AttemptInfo{N: 0, Kind: tracing.AttemptFirst, Endpoint: a.addr()})
	resp0, err := send(c0, a.URL+"/fail")
	require.NoError(t, err)
	a0.End(outcome.GatewayFailure)        // a 503
	r.BudgetRefused(tracing.AttemptHedge) // a budget refusal along the way
	a0.Discarded()
	_, _ = io.Copy(io.Discard, resp0.Body)
	require.NoError(t, resp0.Body.Close())

	// Attempt 1: a retry to the slow endpoint; attempt 2: a hedge to the fast one, which wins.
	c1, cancel1 := context.WithCancel(rctx)
	c1, a1 := r.StartAttempt(c1, telemetry.AttemptInfo{N: 1, Kind: tracing.AttemptRetry, Endpoint: a.addr(), Backoff: 5 * time.Millisecond, Breaker: breaker.StateHalfOpen})
	type result struct {
		resp *http.Response
		err  error
	}
	done1 := make(chan result, 1)
	go func() {
		resp, err := send(c1, a.URL+"/slow")
		a1.End(outcome.Canceled) // abandoned for the hedge
		done1 <- result{resp, err}
	}()
	select {
	case <-a.slow:
	case <-ctx.Done():
		t.Fatal("the slow attempt never arrived")
	}
	c2, a2 := r.StartAttempt(rctx, telemetry.AttemptInfo{N: 2, Kind: tracing.AttemptHedge, Endpoint: b.addr()})
	resp2, err := send(c2, b.URL+"/ok")
	require.NoError(t, err)
	a2.End(outcome.Success)
	cancel1()
	res1 := <-done1
	require.ErrorIs(t, res1.err, context.Canceled)

	r.End(a2, outcome.Success, resp2, nil)
	assert.Len(t, s.rec.Ended(), 2, "the winner's and the request's spans stay open until the body is read")
	body, err := io.ReadAll(resp2.Body)
	require.NoError(t, err)
	require.NoError(t, resp2.Body.Close())
	assert.Equal(t, "hello", string(body))

	assertRetriedHedgedSpans(t, s, a, b)
	assertRetriedHedgedMetrics(t, s, b)
}

// assertRetriedHedgedSpans checks the span tree TestRetriedAndHedged leaves: a request span
// and three attempts under it (a 503 to a, discarded; a cancelled retry to a; a winning hedge
// to b), every one ended, and the W3C trace context that reached both servers.
func assertRetriedHedgedSpans(t *testing.T, s *sdk, a, b *backend) {
	t.Helper()
	// Every span started has ended.
	require.Len(t, s.rec.Started(), 4)
	spans := s.rec.Ended()
	require.Len(t, spans, 4)
	var root sdktrace.ReadOnlySpan
	attempts := map[int64]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		if sp.SpanKind() == trace.SpanKindInternal {
			root = sp
			continue
		}
		require.Equal(t, trace.SpanKindClient, sp.SpanKind())
		attempts[attrs(sp)[tracing.KeyAttempt].AsInt64()] = sp
	}
	require.NotNil(t, root)
	require.Len(t, attempts, 3)
	assert.Equal(t, "GET svc", root.Name())
	assert.False(t, root.Parent().IsValid())
	ra := attrs(root)
	assert.Equal(t, "svc", ra[tracing.KeyDestination].AsString())
	assert.Equal(t, "by-path", ra[tracing.KeyRoute].AsString())
	assert.Equal(t, "canary", ra[tracing.KeySplit].AsString())
	assert.Equal(t, "success", ra[tracing.KeyOutcome].AsString())
	assert.Equal(t, int64(3), ra[tracing.KeyAttempts].AsInt64())
	assert.Equal(t, int64(2), ra[tracing.KeyAttempt].AsInt64())
	assert.Equal(t, b.addr(), ra[tracing.KeyEndpoint].AsString())
	var events []string
	for _, e := range root.Events() {
		events = append(events, e.Name)
	}
	assert.Equal(t, []string{"proxyless.retry_budget.refused", "proxyless.retry", "proxyless.hedge"}, events)

	for n, sp := range attempts {
		assert.Equal(t, root.SpanContext().SpanID(), sp.Parent().SpanID(), "attempt %d is a child of the request", n)
		assert.Equal(t, "HTTP GET", sp.Name(), "otelhttp's span")
	}
	a0a, a1a, a2a := attrs(attempts[0]), attrs(attempts[1]), attrs(attempts[2])
	assert.Equal(t, "first", a0a[tracing.KeyAttemptKind].AsString())
	assert.Equal(t, a.addr(), net.JoinHostPort(a0a["server.address"].AsString(), strconv.Itoa(int(a0a["server.port"].AsInt64()))),
		"the endpoint is otelhttp's server.address and server.port")
	assert.NotContains(t, a0a, tracing.KeyEndpoint, "not repeated")
	assert.NotContains(t, a0a, tracing.KeyDestination, "on the request span")
	assert.Equal(t, "closed", a0a[tracing.KeyBreakerState].AsString())
	assert.Equal(t, "gateway_failure", a0a[tracing.KeyOutcome].AsString())
	assert.True(t, a0a[tracing.KeyDiscarded].AsBool())
	assert.Equal(t, int64(503), a0a["http.response.status_code"].AsInt64(), "otelhttp's attributes are there too")
	assert.Equal(t, "retry", a1a[tracing.KeyAttemptKind].AsString())
	assert.Equal(t, "half-open", a1a[tracing.KeyBreakerState].AsString())
	assert.Equal(t, 0.005, a1a[tracing.KeyBackoff].AsFloat64())
	assert.Equal(t, codes.Error, attempts[1].Status().Code)
	assert.Equal(t, "hedge", a2a[tracing.KeyAttemptKind].AsString())
	assert.True(t, a2a[tracing.KeyWinner].AsBool())
	_, won := a0a[tracing.KeyWinner]
	assert.False(t, won)

	// W3C trace context reached both servers, in the request's trace.
	for _, be := range []*backend{a, b} {
		be.mu.Lock()
		for _, tp := range be.traceparent {
			assert.Contains(t, tp, root.SpanContext().TraceID().String())
		}
		be.mu.Unlock()
	}

}

// assertRetriedHedgedMetrics checks the metrics TestRetriedAndHedged leaves: three attempts
// (first, retry, hedge), a retry, a hedge that won on b, and a budget refusal.
func assertRetriedHedgedMetrics(t *testing.T, s *sdk, b *backend) {
	t.Helper()
	ms := s.metrics(t)
	svc := tracing.KeyDestination.String("svc")
	assert.Equal(t, int64(3), sum(t, ms, tracing.MetricAttempts, svc))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricAttempts, tracing.KeyAttemptKind.String("first"), tracing.KeyOutcome.String("gateway_failure")))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricAttempts, tracing.KeyAttemptKind.String("retry"), tracing.KeyOutcome.String("canceled")))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricAttempts, tracing.KeyAttemptKind.String("hedge"), tracing.KeyOutcome.String("success"), tracing.KeyEndpoint.String(b.addr())))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricRetries, svc))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricHedges, svc))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricHedgeWins, svc))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricBudgetRefusals, svc, tracing.KeyAttemptKind.String("hedge")))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricRequestDuration, svc, tracing.KeyEndpoint.String(b.addr()), tracing.KeyOutcome.String("success")))
	assert.Equal(t, int64(3), sum(t, ms, "http.client.request.duration", svc), "otelhttp's metric, with the destination added")
}

func TestRequestEndsOnError(t *testing.T) {
	s := newSDK(t)
	tel := s.telemetry(t)
	d := tel.Destination("svc")

	_, r := tel.StartRequest(context.Background(), d, nil)
	r.BreakerRefused("127.0.0.1:1") // a span event
	r.BreakerRefused("127.0.0.1:2")
	r.AttemptRefused() // the count
	r.End(nil, outcome.LocalRefusal, nil, fmt.Errorf("every endpoint: %w", breaker.ErrOpen))
	r.End(nil, outcome.Failure, nil, errors.New("a second End is ignored"))

	_, r2 := tel.StartRequest(context.Background(), d, nil)
	r2.End(nil, outcome.Canceled, nil, context.Canceled)

	spans := s.rec.Ended()
	require.Len(t, spans, 2)
	assert.Equal(t, codes.Error, spans[0].Status().Code)
	assert.Equal(t, "local_refusal", attrs(spans[0])[tracing.KeyOutcome].AsString())
	assert.Equal(t, "canceled", attrs(spans[1])[tracing.KeyOutcome].AsString())
	require.Len(t, spans[0].Events(), 3) // the two refusals and the error
	ms := s.metrics(t)
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricRequestDuration, tracing.KeyOutcome.String("local_refusal")))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricRequestDuration, tracing.KeyOutcome.String("canceled")))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricBreakerRefusals, tracing.KeyDestination.String("svc")), "one refused attempt, however many endpoints it skipped")
}

// The request span ends when the body is read to its end, without Close.
func TestRequestEndsAtEOF(t *testing.T) {
	s := newSDK(t)
	tel := s.telemetry(t)
	_, r := tel.StartRequest(context.Background(), tel.Destination("svc"), nil)
	resp, _ := nopTransport{status: 500}.RoundTrip(httptest.NewRequest(http.MethodGet, "http://svc/", nil))
	r.End(nil, outcome.Failure, resp, nil)
	require.Empty(t, s.rec.Ended())
	_, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Len(t, s.rec.Ended(), 1)
	assert.Equal(t, codes.Error, s.rec.Ended()[0].Status().Code)
	assert.Equal(t, "failure", attrs(s.rec.Ended()[0])[tracing.KeyOutcome].AsString())
	require.NoError(t, resp.Body.Close())
}

// A malformed incoming traceparent is ignored: the server serves the request in a new trace.
func TestMalformedTraceparent(t *testing.T) {
	s := newSDK(t)
	tel := s.telemetry(t)
	var got trace.SpanContext
	h := tel.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = trace.SpanContextFromContext(r.Context())
		_, _ = io.WriteString(w, "ok")
	}), "inbound")

	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		traceparent string
		continues   bool
	}{
		{"garbage", false},
		{"00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-00f067aa0ba902b7-01", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"", false},
		{valid, true},
	} {
		req := httptest.NewRequest(http.MethodGet, "http://svc/x", nil)
		if tc.traceparent != "" {
			req.Header.Set("traceparent", tc.traceparent)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		assert.Equal(t, http.StatusOK, w.Code, tc.traceparent)
		require.True(t, got.IsValid(), tc.traceparent)
		assert.Equal(t, tc.continues, got.TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736", tc.traceparent)

		ctx := tel.Extract(context.Background(), req.Header)
		assert.Equal(t, tc.continues, trace.SpanContextFromContext(ctx).IsValid(), tc.traceparent)
	}
	spans := s.rec.Ended()
	require.Len(t, spans, 6)
	for _, sp := range spans[:5] {
		assert.False(t, sp.Parent().IsValid(), "a new trace")
		assert.Equal(t, trace.SpanKindServer, sp.SpanKind())
	}
	assert.True(t, spans[5].Parent().IsRemote())
}

func TestObservableState(t *testing.T) {
	s := newSDK(t)
	now := time.Now()
	tel := s.telemetry(t, telemetry.WithState(func(time.Time) telemetry.State {
		return telemetry.State{
			Destinations: []telemetry.DestinationState{{
				Name: "svc",
				Endpoints: []telemetry.EndpointState{
					{Addr: "127.0.0.1:1", Healthy: true, HasBreaker: true, Breaker: breaker.StateClosed},
					{Addr: "127.0.0.1:2", Healthy: true, Ejected: true, HasBreaker: true, Breaker: breaker.StateOpen},
					{Addr: "127.0.0.1:3", Healthy: false, HasBreaker: true, Breaker: breaker.StateHalfOpen},
				},
				Ejections:  4,
				StaleSince: now.Add(-time.Minute),
			}},
			Limits:   []telemetry.LimitState{{Policy: "outbound", Limit: 17}},
			Canaries: []telemetry.CanaryState{{Route: "r", Destination: "svc-canary", Percent: 5}},
		}
	}))
	d := tel.Destination("svc")
	d.BreakerTransition("127.0.0.1:2", breaker.StateClosed, breaker.StateOpen)
	ctx := context.Background()
	tel.RateLimited(ctx, "outbound", 2*time.Millisecond, true)
	tel.RateLimited(ctx, "outbound", 0, false)
	tel.ShadowMismatch("r", "svc-shadow")

	ms := s.metrics(t)
	svc := tracing.KeyDestination.String("svc")
	assert.Equal(t, int64(3), sum(t, ms, tracing.MetricEndpointsKnown, svc))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricEndpointsHealthy, svc))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricEjectionsActive, svc))
	assert.Equal(t, int64(4), sum(t, ms, tracing.MetricEjections, svc))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricBreakerState, tracing.KeyEndpoint.String("127.0.0.1:2")))
	assert.Equal(t, int64(2), sum(t, ms, tracing.MetricBreakerState, tracing.KeyEndpoint.String("127.0.0.1:3")))
	assert.Equal(t, int64(17), sum(t, ms, tracing.MetricConcurrencyLimit, tracing.KeyLimitPolicy.String("outbound")))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricBreakerTrans, tracing.KeyBreakerState.String("open")))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricLimitDecisions, tracing.KeyLimitDecision.String("admitted")))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricLimitDecisions, tracing.KeyLimitDecision.String("refused")))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricLimitWait))
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricShadowMismatches, tracing.KeyShadow.String("svc-shadow")))
	stale := ms[tracing.MetricDiscoveryStale].(metricdataGaugeF)
	require.Len(t, stale.DataPoints, 1)
	assert.InDelta(t, 60, stale.DataPoints[0].Value, 5)
	canary := ms[tracing.MetricCanaryWeight].(metricdataGaugeF)
	require.Len(t, canary.DataPoints, 1)
	assert.Equal(t, 5.0, canary.DataPoints[0].Value)
	v, _ := canary.DataPoints[0].Attributes.Value(tracing.KeyRoute)
	assert.Equal(t, attribute.StringValue("r"), v)

	// After Close the callback is gone.
	require.NoError(t, tel.Close())
	ms = s.metrics(t)
	assert.Zero(t, sum(t, ms, tracing.MetricEndpointsKnown, svc))
	assert.False(t, tel.Enabled())
}

// The request span's attributes are all set when it ends, in one call: the ready-made ones
// of a GET answered 200 by its one attempt, and built ones otherwise (here a POST whose one
// attempt failed, through a route). Both carry the destination and the method.
func TestRequestSpanAttributesAtEnd(t *testing.T) {
	s := newSDK(t)
	tel := s.telemetry(t)
	d := tel.Destination("svc")
	rt := tel.Transport(answerTransport{})
	for _, tc := range []struct {
		method, route string
		code          int
		want          map[attribute.Key]string
	}{
		{http.MethodGet, "", 200, map[attribute.Key]string{tracing.KeyDestination: "svc", "http.request.method": "GET",
			tracing.KeyOutcome: "success", tracing.KeyAttempts: "1", tracing.KeyEndpoint: "127.0.0.1:1", tracing.KeyAttempt: "0", "http.response.status_code": "200"}},
		{http.MethodPost, "orders", 503, map[attribute.Key]string{tracing.KeyDestination: "svc", "http.request.method": "POST",
			tracing.KeyOutcome: "gateway_failure", tracing.KeyAttempts: "1", tracing.KeyEndpoint: "127.0.0.1:1", tracing.KeyAttempt: "0",
			"http.response.status_code": "503", tracing.KeyRoute: "orders"}},
	} {
		s.rec.Reset()
		req := httptest.NewRequest(tc.method, "http://127.0.0.1:1/", nil)
		req.RequestURI = ""
		req.Header.Set("X-Code", strconv.Itoa(tc.code))
		ctx, r := tel.StartRequest(context.Background(), d, req)
		r.Route(tc.route, "")
		actx, a := r.StartAttempt(ctx, telemetry.AttemptInfo{Kind: tracing.AttemptFirst, Endpoint: "127.0.0.1:1"})
		resp, err := rt.RoundTrip(req.WithContext(actx))
		require.NoError(t, err)
		kind := outcome.FromStatus(resp.StatusCode, "", time.Time{}).Kind
		a.End(kind)
		r.End(a, kind, resp, nil)
		require.NoError(t, resp.Body.Close())
		var got map[attribute.Key]string
		for _, sp := range s.rec.Ended() {
			if sp.SpanKind() == trace.SpanKindInternal {
				got = map[attribute.Key]string{}
				for _, kv := range sp.Attributes() {
					got[kv.Key] = kv.Value.Emit()
				}
				assert.Equal(t, tc.method+" svc", sp.Name())
			}
		}
		assert.Equal(t, tc.want, got, tc.method)
	}
}

// answerTransport answers with the status code the request's X-Code header names.
type answerTransport struct{}

func (answerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	code, _ := strconv.Atoi(req.Header.Get("X-Code"))
	return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader("x")), Header: http.Header{}, Request: req}, nil
}
