package middleware_test

// Proof of the telemetry: the span tree of a request that was retried and
// hedged, spans that end on body close, on cancellation and when a response is discarded,
// metrics that match what the servers saw, trace context across HTTP and gRPC hops, and the
// cost of telemetry. Every test passes its own SDK providers (no global state) and talks to
// real loopback servers.

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/internal/testenv"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/tracing"
)

// otelSDK is an OpenTelemetry SDK that records into memory: every span started and ended
// (tracetest.SpanRecorder keeps both, so that an unended span shows), and metrics on demand.
type otelSDK struct {
	rec    *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	only   trace.TraceID // when set, spansOf returns the spans of this trace only
}

func newOtelSDK(t testing.TB) *otelSDK {
	s := &otelSDK{rec: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(s.rec))
	s.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.reader))
	t.Cleanup(func() {
		_ = s.tp.Shutdown(context.Background())
		_ = s.mp.Shutdown(context.Background())
	})
	return s
}

func (s *otelSDK) options() []middleware.TransportOption {
	return []middleware.TransportOption{middleware.WithTracerProvider(s.tp), middleware.WithMeterProvider(s.mp)}
}

// unended returns the names of the spans started but not ended.
func (s *otelSDK) unended() []string {
	ended := map[trace.SpanID]bool{}
	for _, sp := range s.rec.Ended() {
		ended[sp.SpanContext().SpanID()] = true
	}
	var out []string
	for _, sp := range s.rec.Started() {
		if !ended[sp.SpanContext().SpanID()] {
			out = append(out, sp.Name())
		}
	}
	return out
}

// waitAllEnded polls until every span started has ended: losers of a hedge end in the
// background, after the caller has its answer.
func (s *otelSDK) waitAllEnded(t *testing.T, ctx context.Context) {
	t.Helper()
	for len(s.unended()) > 0 {
		select {
		case <-ctx.Done():
			require.Empty(t, s.unended(), "spans started and never ended")
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (s *otelSDK) isEnded(id trace.SpanID) bool {
	return slices.ContainsFunc(s.rec.Ended(), func(sp sdktrace.ReadOnlySpan) bool { return sp.SpanContext().SpanID() == id })
}

// spansOf returns the ended spans of a kind.
func (s *otelSDK) spansOf(kind trace.SpanKind) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, sp := range s.rec.Ended() {
		if sp.SpanKind() == kind && (!s.only.IsValid() || sp.SpanContext().TraceID() == s.only) {
			out = append(out, sp)
		}
	}
	return out
}

// endpointOf returns the endpoint an attempt's otelhttp span was sent to: its server.address
// and server.port, which name the endpoint picked (the attempt's URL names it).
func endpointOf(sp sdktrace.ReadOnlySpan) string {
	a := attrs(sp)
	return net.JoinHostPort(a["server.address"], a["server.port"])
}

func attrs(sp sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range sp.Attributes() {
		m[kv.Key] = kv.Value.Emit()
	}
	return m
}

func events(sp sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, e := range sp.Events() {
		out = append(out, e.Name)
	}
	return out
}

// collect returns every metric, by name.
func (s *otelSDK) collect(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, s.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// has reports whether set holds every attribute of want.
func has(set attribute.Set, want ...attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// counter sums the points of an int64 sum whose attributes hold want.
func counter(ms map[string]metricdata.Aggregation, name string, want ...attribute.KeyValue) int64 {
	sum, _ := ms[name].(metricdata.Sum[int64])
	var n int64
	for _, p := range sum.DataPoints {
		if has(p.Attributes, want...) {
			n += p.Value
		}
	}
	return n
}

// histCount counts the measurements of a float64 histogram whose attributes hold want.
func histCount(ms map[string]metricdata.Aggregation, name string, want ...attribute.KeyValue) uint64 {
	h, _ := ms[name].(metricdata.Histogram[float64])
	var n uint64
	for _, p := range h.DataPoints {
		if has(p.Attributes, want...) {
			n += p.Count
		}
	}
	return n
}

func staticOf(service string, backends ...*faultbackend.Backend) *discovery.Static {
	eps := make([]discovery.Endpoint, len(backends))
	for i, b := range backends {
		eps[i] = discovery.Endpoint{Addr: b.Addr()}
	}
	return discovery.MustNewStatic(map[string][]discovery.Endpoint{service: eps})
}

// newMeshClient returns an http.Client over a proxyless Transport, closed at cleanup.
func newMeshClient(t *testing.T, r discovery.Resolver, opts ...middleware.TransportOption) (*http.Client, *middleware.Transport) {
	t.Helper()
	base := &http.Transport{MaxIdleConnsPerHost: 16}
	tr, err := middleware.NewTransport(base, append([]middleware.TransportOption{middleware.WithResolver(r)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, tr.Close())
		base.CloseIdleConnections()
	})
	return &http.Client{Transport: tr}, tr
}

// roundRobin makes picks follow the endpoints' order, so that a test knows which endpoint
// each attempt goes to: round robin starts at the first and skips those already tried.
var roundRobin = middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin})

// One request, retried once and hedged once, over three real loopback backends: the first
// attempt gets a 503 (retried: its response is discarded), the retry goes to a slow endpoint,
// the hedge to a fast one wins and the retry is cancelled. The tree: the caller's span, the
// request span (INTERNAL) beneath it, and one otelhttp CLIENT span per attempt beneath that,
// each carrying its endpoint, number and kind; the first is marked discarded, the hedge the
// winner. The request span ends when the body is closed, and no span is left unended.
func TestSpanTreeRetriedAndHedged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sdk := newOtelSDK(t)
	backends := []*faultbackend.Backend{faultbackend.New(t), faultbackend.New(t), faultbackend.New(t)}
	client, tr := newMeshClient(t, staticOf("svc", backends...), append(sdk.options(), roundRobin,
		middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 1}),
		middleware.WithHedge(middleware.HedgePolicy{Delay: 300 * time.Millisecond, MaxHedges: 1}))...)
	flaky, slow, fast := scriptRetryThenHedge(ctx, t, client, backends)
	statsBefore := tr.Stats()
	msBefore := sdk.collect(t)

	rctx, root := sdk.tp.Tracer("test").Start(ctx, "caller")
	req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://svc/x", nil)
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// The answer is in, its body not yet closed: the request span and the winner's are open.
	var reqSpan sdktrace.ReadWriteSpan
	for _, sp := range sdk.rec.Started() {
		if sp.SpanKind() == trace.SpanKindInternal && sp.Parent().SpanID() == root.SpanContext().SpanID() {
			reqSpan = sp
		}
	}
	require.NotNil(t, reqSpan, "a request span")
	assert.False(t, sdk.isEnded(reqSpan.SpanContext().SpanID()), "the request span is open until the body is closed")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "fast", string(body))
	require.NoError(t, resp.Body.Close())
	assert.True(t, sdk.isEnded(reqSpan.SpanContext().SpanID()), "closing the body ends the request span")
	root.End()

	// The losing retry ends in the background once its cancellation reaches it.
	sdk.waitAllEnded(t, ctx)
	require.NoError(t, slow.Wait(ctx, func(s faultbackend.Stats) bool { return s.Cancellations == 1 }),
		"the slow endpoint saw the retry cancelled: %+v", slow.Stats())

	// The servers' view: one attempt each.
	assert.EqualValues(t, 1, flaky.Attempts())
	assert.EqualValues(t, 1, slow.Attempts())
	assert.EqualValues(t, 1, fast.Attempts())
	st := tr.Stats()
	assert.Equal(t, middleware.Stats{Requests: 1, Attempts: 3, Retries: 1, Hedges: 1, HedgeWins: 1}, middleware.Stats{
		Requests: st.Requests - statsBefore.Requests, Attempts: st.Attempts - statsBefore.Attempts,
		Retries: st.Retries - statsBefore.Retries, Hedges: st.Hedges - statsBefore.Hedges, HedgeWins: st.HedgeWins - statsBefore.HedgeWins,
	})

	sdk.only = root.SpanContext().TraceID() // leave out the first request's spans
	request := assertRetriedHedgedRequestSpan(t, sdk, root, fast)
	attempts := assertRetriedHedgedAttemptSpans(t, sdk, root.SpanContext().TraceID(), request, flaky, slow, fast)

	// The hedge's CLIENT span ended no earlier than the request span: when the body closed.
	assert.False(t, attempts[fast.Addr()].EndTime().Before(request.EndTime().Add(-time.Millisecond)))

	// The trace context reached each server, naming the attempt's own span as the parent.
	for _, b := range []*faultbackend.Backend{flaky, slow, fast} {
		reqs := b.Requests()
		require.Len(t, reqs, 1)
		sc := attempts[b.Addr()].SpanContext()
		assert.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", reqs[0].Header.Get("Traceparent"))
	}

	// The same facts in the metrics (less what the first request recorded).
	assertRetriedHedgedMetrics(t, msBefore, sdk.collect(t), flaky, slow, fast)
}

// scriptRetryThenHedge sends a first request through client, to learn where round robin goes
// next, and scripts the backends so that the next request's first attempt goes to flaky (503
// once), its retry to slow, and its hedge to fast. The backends' counts are reset.
func scriptRetryThenHedge(ctx context.Context, t *testing.T, client *http.Client, backends []*faultbackend.Backend) (flaky, slow, fast *faultbackend.Backend) {
	t.Helper()
	// Round robin takes the endpoints in turn from a random one: a first request says which
	// is next, and the script follows. The first attempt goes to flaky (503 once), the retry
	// to slow, the hedge to fast.
	warm, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/x", nil)
	wresp, err := client.Do(warm)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, wresp.Body)
	require.NoError(t, wresp.Body.Close())
	turn := slices.IndexFunc(backends, func(b *faultbackend.Backend) bool { return b.Attempts() == 1 })
	require.NotEqual(t, -1, turn)
	flaky, slow, fast = backends[(turn+1)%3], backends[(turn+2)%3], backends[turn]
	for _, b := range backends {
		b.Reset()
	}
	flaky.Set(faultbackend.OK("flaky"))
	flaky.FailNext(1, faultbackend.Status(http.StatusServiceUnavailable).WithBody("unavailable"))
	slow.Set(faultbackend.Slow(10 * time.Second))
	fast.Set(faultbackend.OK("fast"))
	return flaky, slow, fast
}

// assertRetriedHedgedRequestSpan checks the request span of a request answered by fast on its
// hedge (third attempt), a child of root, and returns it.
func assertRetriedHedgedRequestSpan(t *testing.T, sdk *otelSDK, root trace.Span, fast *faultbackend.Backend) sdktrace.ReadOnlySpan {
	t.Helper()
	internal := sdk.spansOf(trace.SpanKindInternal)
	require.Len(t, internal, 2, "the caller's span and the request span")
	var request sdktrace.ReadOnlySpan
	for _, sp := range internal {
		if sp.Name() == "GET svc" {
			request = sp
		}
	}
	require.NotNil(t, request)
	assert.Equal(t, root.SpanContext().TraceID(), request.SpanContext().TraceID())
	assert.Equal(t, root.SpanContext().SpanID(), request.Parent().SpanID(), "the request span is a child of the caller's")
	ra := attrs(request)
	assert.Equal(t, "svc", ra[tracing.KeyDestination])
	assert.Equal(t, "success", ra[tracing.KeyOutcome])
	assert.Equal(t, "3", ra[tracing.KeyAttempts])
	assert.Equal(t, fast.Addr(), ra[tracing.KeyEndpoint], "the request names the endpoint that answered")
	assert.Equal(t, "2", ra[tracing.KeyAttempt])
	assert.Equal(t, "200", ra["http.response.status_code"])
	assert.Equal(t, []string{"proxyless.retry", "proxyless.hedge"}, events(request))
	assert.Equal(t, codes.Unset, request.Status().Code)
	return request
}

// assertRetriedHedgedAttemptSpans checks the three CLIENT spans under request, in the trace
// traceID: the first attempt on flaky (503, discarded), the cancelled retry on slow, the
// winning hedge on fast. It returns them by endpoint address.
func assertRetriedHedgedAttemptSpans(t *testing.T, sdk *otelSDK, traceID trace.TraceID, request sdktrace.ReadOnlySpan, flaky, slow, fast *faultbackend.Backend) map[string]sdktrace.ReadOnlySpan {
	t.Helper()
	attempts := map[string]sdktrace.ReadOnlySpan{} // by endpoint
	for _, sp := range sdk.spansOf(trace.SpanKindClient) {
		a := attrs(sp)
		require.NotContains(t, attempts, endpointOf(sp), "one attempt per endpoint")
		attempts[endpointOf(sp)] = sp
		assert.Equal(t, traceID, sp.SpanContext().TraceID())
		assert.Equal(t, request.SpanContext().SpanID(), sp.Parent().SpanID(), "attempt %s is a child of the request", sp.Name())
		assert.NotContains(t, a, tracing.KeyDestination, "the destination is the parent's")
		assert.NotContains(t, a, tracing.KeyEndpoint, "the endpoint is server.address and server.port")
		assert.Equal(t, "closed", a[tracing.KeyBreakerState])
	}
	require.Len(t, attempts, 3, "one otelhttp client span per attempt, no rival spans")

	first := attrs(attempts[flaky.Addr()])
	assert.Equal(t, "first", first[tracing.KeyAttemptKind])
	assert.NotContains(t, first, tracing.KeyAttempt, "a first attempt is number 0: its kind says so")
	assert.Equal(t, "gateway_failure", first[tracing.KeyOutcome])
	assert.Equal(t, "503", first["http.response.status_code"])
	assert.Equal(t, "true", first[tracing.KeyDiscarded], "the retry threw the 503 away")
	assert.NotContains(t, first, tracing.KeyWinner)

	retry := attempts[slow.Addr()]
	ret := attrs(retry)
	assert.Equal(t, "retry", ret[tracing.KeyAttemptKind])
	assert.Equal(t, "1", ret[tracing.KeyAttempt])
	assert.NotContains(t, ret, tracing.KeyWinner)
	assert.Equal(t, codes.Error, retry.Status().Code, "the losing retry was cancelled")
	assert.Equal(t, "context canceled", retry.Status().Description)

	hedge := attrs(attempts[fast.Addr()])
	assert.Equal(t, "hedge", hedge[tracing.KeyAttemptKind])
	assert.Equal(t, "2", hedge[tracing.KeyAttempt])
	assert.NotContains(t, hedge, tracing.KeyOutcome, "a success is said by the status code alone")
	assert.Equal(t, "200", hedge["http.response.status_code"])
	assert.Equal(t, "true", hedge[tracing.KeyWinner])
	assert.NotContains(t, hedge, tracing.KeyDiscarded)
	return attempts
}

// assertRetriedHedgedMetrics checks that the metrics grew from msBefore to ms by one retried and
// hedged request: flaky's failed first attempt, slow's cancelled retry, fast's winning hedge.
func assertRetriedHedgedMetrics(t *testing.T, msBefore, ms map[string]metricdata.Aggregation, flaky, slow, fast *faultbackend.Backend) {
	t.Helper()
	delta := func(name string, want ...attribute.KeyValue) int64 {
		return counter(ms, name, want...) - counter(msBefore, name, want...)
	}
	dest := tracing.KeyDestination.String("svc")
	assert.EqualValues(t, 1, delta(tracing.MetricRetries, dest))
	assert.EqualValues(t, 1, delta(tracing.MetricHedges, dest))
	assert.EqualValues(t, 1, delta(tracing.MetricHedgeWins, dest))
	assert.EqualValues(t, 3, delta(tracing.MetricAttempts, dest))
	assert.EqualValues(t, 1, delta(tracing.MetricAttempts, tracing.KeyEndpoint.String(flaky.Addr()), tracing.KeyOutcome.String("gateway_failure"), tracing.KeyAttemptKind.String("first")))
	assert.EqualValues(t, 1, delta(tracing.MetricAttempts, tracing.KeyEndpoint.String(fast.Addr()), tracing.KeyOutcome.String("success"), tracing.KeyAttemptKind.String("hedge")))
	assert.EqualValues(t, 1, delta(tracing.MetricAttempts, tracing.KeyEndpoint.String(slow.Addr()), tracing.KeyOutcome.String("canceled"), tracing.KeyAttemptKind.String("retry")))
	assert.EqualValues(t, 1, histCount(ms, tracing.MetricRequestDuration, tracing.KeyEndpoint.String(fast.Addr()), tracing.KeyOutcome.String("success"))-
		histCount(msBefore, tracing.MetricRequestDuration, tracing.KeyEndpoint.String(fast.Addr()), tracing.KeyOutcome.String("success")))
}

// A retry throws away the 503 it follows: the first attempt's span is marked discarded and has
// ended by the time the caller has its answer, before the caller even closes that answer.
func TestSpanEndsWhenRetryDiscards(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sdk := newOtelSDK(t)
	// One endpoint: the retry goes back to it (an endpoint already tried is used when there
	// is no other).
	flaky := faultbackend.New(t)
	flaky.FailNext(1, faultbackend.Status(http.StatusBadGateway).WithBody(strings.Repeat("x", 4096)))
	client, _ := newMeshClient(t, staticOf("svc", flaky), append(sdk.options(),
		middleware.WithRetry(middleware.RetryPolicy{BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond}))...)

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	clients := sdk.spansOf(trace.SpanKindClient)
	require.Len(t, clients, 1, "only the discarded attempt has ended")
	a := attrs(clients[0])
	assert.Equal(t, flaky.Addr(), endpointOf(clients[0]))
	assert.Equal(t, "true", a[tracing.KeyDiscarded])
	assert.Equal(t, "gateway_failure", a[tracing.KeyOutcome])
	assert.Equal(t, []string{"GET svc", "HTTP GET"}, sortedNames(sdk.unended()), "the request and the retry are open until the body is closed")

	_, _ = io.Copy(io.Discard, resp.Body) // EOF ends them
	assert.Empty(t, sdk.unended())
	clients = sdk.spansOf(trace.SpanKindClient)
	require.Len(t, clients, 2)
	r := attrs(clients[1])
	assert.Equal(t, "retry", r[tracing.KeyAttemptKind])
	assert.Equal(t, "true", r[tracing.KeyWinner])
	assert.Equal(t, flaky.Addr(), endpointOf(clients[1]))
	assert.Equal(t, "1", r[tracing.KeyAttempt])
	assert.EqualValues(t, 2, flaky.Attempts())
	assert.NotEmpty(t, r[tracing.KeyBackoff])
}

func sortedNames(names []string) []string {
	slices.Sort(names)
	return names
}

// The caller gives up: while the attempts hang (one, or two with a hedge), while the body is
// being read. Every span ends, the request span with the outcome canceled.
func TestSpansEndOnCallerCancel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hedge bool
	}{{"sequential", false}, {"hedged", true}} {
		t.Run(tc.name+"/waiting", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sdk := newOtelSDK(t)
			b1, b2 := faultbackend.New(t), faultbackend.New(t)
			b1.Set(faultbackend.Hang())
			b2.Set(faultbackend.Hang())
			opts := append(sdk.options(), roundRobin)
			want := int64(1)
			if tc.hedge {
				opts = append(opts, middleware.WithHedge(middleware.HedgePolicy{Delay: 20 * time.Millisecond}))
				want = 2
			}
			client, _ := newMeshClient(t, staticOf("svc", b1, b2), opts...)

			cctx, ccancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "http://svc/", nil)
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			// Cancel once the attempts have reached the servers.
			for b1.Attempts()+b2.Attempts() < want {
				select {
				case <-ctx.Done():
					t.Fatal("the attempts never arrived")
				case <-time.After(2 * time.Millisecond):
				}
			}
			ccancel()
			select {
			case err := <-done:
				require.ErrorIs(t, err, context.Canceled)
			case <-ctx.Done():
				t.Fatal("the request did not return")
			}
			sdk.waitAllEnded(t, ctx)
			var request sdktrace.ReadOnlySpan
			for _, sp := range sdk.spansOf(trace.SpanKindInternal) {
				request = sp
			}
			require.NotNil(t, request)
			assert.Equal(t, "canceled", attrs(request)[tracing.KeyOutcome])
			assert.Equal(t, codes.Error, request.Status().Code)
			assert.Len(t, sdk.spansOf(trace.SpanKindClient), int(want))
			for _, sp := range sdk.spansOf(trace.SpanKindClient) {
				assert.Equal(t, codes.Error, sp.Status().Code, "attempt %s", endpointOf(sp))
			}
		})
	}

	// Headers arrive, then the server stalls in the body; the caller cancels while reading.
	// The read fails and that alone ends the spans, before the caller closes the body.
	t.Run("reading", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sdk := newOtelSDK(t)
		b := faultbackend.New(t)
		b.Set(faultbackend.Handler(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}))
		client, _ := newMeshClient(t, staticOf("svc", b), sdk.options()...)
		cctx, ccancel := context.WithCancel(ctx)
		defer ccancel()
		req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "http://svc/", nil)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		buf := make([]byte, 7)
		_, err = io.ReadFull(resp.Body, buf)
		require.NoError(t, err)
		assert.Equal(t, []string{"GET svc", "HTTP GET"}, sortedNames(sdk.unended()), "open while the body is being read")
		ccancel()
		_, err = io.ReadAll(resp.Body)
		require.ErrorIs(t, err, context.Canceled)
		// The failed read ends the request span at once. otelhttp's CLIENT span ends only at
		// EOF or Close (its wrapped body records the error but does not end the span), so
		// the caller's Close ends it.
		assert.Equal(t, []string{"HTTP GET"}, sdk.unended())
		var request sdktrace.ReadOnlySpan
		for _, sp := range sdk.spansOf(trace.SpanKindInternal) {
			request = sp
		}
		require.NotNil(t, request)
		assert.Equal(t, codes.Unset, request.Status().Code, "the response itself succeeded")
		assert.Contains(t, fmt.Sprint(request.Events()), "context canceled", "the read error is recorded")
		require.NoError(t, resp.Body.Close())
		assert.Empty(t, sdk.unended())
	})
}

// A scripted scenario: N requests over two real backends, k of them failing once with a 503
// and retried. The metrics say what the servers saw: attempts per endpoint, retries (the
// servers' attempts less the distinct requests they got) and outcomes (the statuses they
// answered).
func TestMetricsMatchServerCounts(t *testing.T) {
	const n = 20
	failing := map[int]bool{2: true, 5: true, 6: true, 11: true, 17: true}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sdk := newOtelSDK(t)
	a, b := faultbackend.New(t), faultbackend.New(t)
	backends := []*faultbackend.Backend{a, b}
	client, tr := newMeshClient(t, staticOf("svc", a, b), append(sdk.options(), roundRobin,
		middleware.WithRetry(middleware.RetryPolicy{BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond}))...)

	// Round robin over two endpoints alternates: the next attempt goes to the endpoint that
	// did not get the last one. Request 0 (which does not fail) tells where the turn is.
	next := -1
	for i := range n {
		if failing[i] {
			require.NotEqual(t, -1, next)
			backends[next].FailNext(1, faultbackend.Status(http.StatusServiceUnavailable))
		}
		before := [2]int64{a.Attempts(), b.Attempts()}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
		req.Header.Set("X-Request-Id", strconv.Itoa(i))
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode, "request %d", i)
		switch {
		case failing[i]:
			// The first attempt went to next and the retry to the other: next has the turn again.
		case b.Attempts() > before[1]:
			next = 0
		case a.Attempts() > before[0]:
			next = 1
		}
	}

	// The servers' view.
	var attempts, unavailable, ok int64
	ids := map[string]bool{}
	perEndpoint := map[string]int64{}
	perEndpoint503 := map[string]int64{}
	for _, be := range backends {
		attempts += be.Attempts()
		perEndpoint[be.Addr()] = be.Attempts()
		for _, r := range be.Requests() {
			ids[r.Header.Get("X-Request-Id")] = true
			switch r.Behavior {
			case faultbackend.Status(http.StatusServiceUnavailable).String():
				unavailable++
				perEndpoint503[be.Addr()]++
			case faultbackend.OK("").String():
				ok++
			default:
				t.Errorf("unexpected behaviour %q", r.Behavior)
			}
		}
	}
	retries := attempts - int64(len(ids))
	require.EqualValues(t, n+len(failing), attempts, "the script: every request once, the failing ones twice")
	require.EqualValues(t, len(failing), unavailable)
	require.EqualValues(t, n, ok)
	require.Len(t, ids, n)

	ms := sdk.collect(t)
	dest := tracing.KeyDestination.String("svc")
	assert.Equal(t, attempts, counter(ms, tracing.MetricAttempts, dest), "attempts")
	assert.Equal(t, retries, counter(ms, tracing.MetricRetries, dest), "retries")
	assert.Equal(t, retries, counter(ms, tracing.MetricAttempts, tracing.KeyAttemptKind.String("retry")), "attempts of kind retry")
	assert.Equal(t, unavailable, counter(ms, tracing.MetricAttempts, tracing.KeyOutcome.String("gateway_failure")), "failed attempts")
	assert.Equal(t, ok, counter(ms, tracing.MetricAttempts, tracing.KeyOutcome.String("success")), "successful attempts")
	for addr, want := range perEndpoint {
		ep := tracing.KeyEndpoint.String(addr)
		assert.Equal(t, want, counter(ms, tracing.MetricAttempts, ep), "attempts to %s", addr)
		assert.Equal(t, perEndpoint503[addr], counter(ms, tracing.MetricAttempts, ep, tracing.KeyOutcome.String("gateway_failure")), "503s from %s", addr)
	}
	assert.Zero(t, counter(ms, tracing.MetricHedges, dest))
	assert.Zero(t, counter(ms, tracing.MetricBudgetRefusals, dest))
	assert.EqualValues(t, len(ids), histCount(ms, tracing.MetricRequestDuration, tracing.KeyOutcome.String("success")), "logical requests")
	assert.EqualValues(t, len(ids), histCount(ms, tracing.MetricRequestDuration, dest))
	// otelhttp's semantic-convention metric counts attempts, with their status codes.
	assert.EqualValues(t, attempts, histCount(ms, "http.client.request.duration", dest))
	assert.EqualValues(t, unavailable, histCount(ms, "http.client.request.duration", attribute.Int("http.response.status_code", 503)))
	// Observable state: two endpoints known and healthy.
	assert.EqualValues(t, 2, gauge(ms, tracing.MetricEndpointsKnown, dest))
	assert.EqualValues(t, 2, gauge(ms, tracing.MetricEndpointsHealthy, dest))
	// And the transport's own counters.
	st := tr.Stats()
	assert.Equal(t, int64(len(ids)), st.Requests)
	assert.Equal(t, attempts, st.Attempts)
	assert.Equal(t, retries, st.Retries)
}

func gauge(ms map[string]metricdata.Aggregation, name string, want ...attribute.KeyValue) int64 {
	g, _ := ms[name].(metricdata.Gauge[int64])
	var n int64
	for _, p := range g.DataPoints {
		if has(p.Attributes, want...) {
			n += p.Value
		}
	}
	return n
}

// grpcTraceServer is a gRPC TestService that answers every unary call.
type grpcTraceServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (grpcTraceServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{}, nil
}

// Trace context crosses every hop: a proxyless client calls service A (NewHandler), whose
// handler calls service B, written with otelhttp alone, through a second proxyless
// Transport, and service C over gRPC (DialOptions to ServerOptions: a proxyless request span
// over otelgrpc's attempt span). All the spans share the caller's trace, each a child of the
// one that caused it.
func TestTraceContextCrossesHops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sdk := newOtelSDK(t)
	addrA, addrC := startThreeHops(t, sdk)

	client, _ := newMeshClient(t, discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"svc-a": {{Addr: addrA}}}), sdk.options()...)
	rctx, root := sdk.tp.Tracer("test").Start(ctx, "caller")
	req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://svc-a/", nil)
	resp, err := client.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	root.End()
	sdk.waitAllEnded(t, ctx) // server spans end after the response is written

	spans := sdk.rec.Ended()
	find := func(kind trace.SpanKind, match func(sdktrace.ReadOnlySpan) bool, what string) sdktrace.ReadOnlySpan {
		t.Helper()
		return findOneSpan(t, spans, kind, match, what)
	}
	reqA := find(trace.SpanKindInternal, spanNamed("GET svc-a"), "the client's request span")
	attA := find(trace.SpanKindClient, spanChildOf(reqA), "the client's attempt to A")
	// otelhttp names server spans after the method; the Host header is the service name.
	srvSpanA := find(trace.SpanKindServer, spanToHost("svc-a"), "A's server span (NewHandler)")
	reqB := find(trace.SpanKindInternal, spanNamed("GET svc-b"), "A's request span to B")
	attB := find(trace.SpanKindClient, spanChildOf(reqB), "A's attempt to B")
	srvSpanB := find(trace.SpanKindServer, spanToHost("svc-b"), "B's server span (otelhttp alone)")
	grpcReq := find(trace.SpanKindInternal, spanNamed("grpc.testing.TestService/UnaryCall"), "A's gRPC request span to C")
	grpcClient := find(trace.SpanKindClient, spanNamed("grpc.testing.TestService/UnaryCall"), "A's gRPC client span (otelgrpc)")
	grpcServer := find(trace.SpanKindServer, spanNamed("grpc.testing.TestService/UnaryCall"), "C's gRPC server span (otelgrpc)")

	for _, edge := range []struct {
		child, parent sdktrace.ReadOnlySpan
		what          string
	}{
		{reqA, nil, "client request ← caller"},
		{attA, reqA, "client attempt ← client request"},
		{srvSpanA, attA, "A server ← client attempt (HTTP hop)"},
		{reqB, srvSpanA, "A's request to B ← A server"},
		{attB, reqB, "A's attempt ← A's request"},
		{srvSpanB, attB, "B server (otelhttp alone) ← A's attempt (HTTP hop)"},
		{grpcReq, srvSpanA, "A's gRPC request ← A server"},
		{grpcClient, grpcReq, "A's gRPC attempt (otelgrpc) ← A's gRPC request"},
		{grpcServer, grpcClient, "C's gRPC server ← A's gRPC client (gRPC hop)"},
	} {
		want := root.SpanContext().SpanID()
		if edge.parent != nil {
			want = edge.parent.SpanContext().SpanID()
		}
		assert.Equal(t, root.SpanContext().TraceID(), edge.child.SpanContext().TraceID(), edge.what)
		assert.Equal(t, want, edge.child.Parent().SpanID(), edge.what)
	}
	for _, sp := range []sdktrace.ReadOnlySpan{srvSpanA, srvSpanB, grpcServer} {
		assert.True(t, sp.Parent().IsRemote(), "%s continues a remote parent", sp.Name())
	}
	for _, sp := range spans {
		assert.Equal(t, root.SpanContext().TraceID(), sp.SpanContext().TraceID(), "span %s (%v) is in the caller's trace", sp.Name(), sp.SpanKind())
	}
	assert.Equal(t, "svc-c", attrs(grpcReq)[tracing.KeyDestination])
	assert.Equal(t, addrC, endpointOf(grpcClient))
	assert.Equal(t, "first", attrs(grpcClient)[tracing.KeyAttemptKind], "proxyless annotates otelgrpc's span")
	assert.Len(t, spans, 10, "caller, 3 proxyless requests (2 HTTP, 1 gRPC), 2 HTTP attempts, 2 HTTP servers, gRPC client and server")
}

// startThreeHops starts, traced by sdk, service B (otelhttp alone), service C (gRPC with
// NewGRPCServer) and service A (NewHandler), which calls B over HTTP and C over gRPC, both
// through proxyless. It returns the addresses of A and C; all stop when the test ends.
func startThreeHops(t *testing.T, sdk *otelSDK) (addrA, addrC string) {
	t.Helper()
	// B: otelhttp alone, with the W3C propagator (otelhttp's default is the global one,
	// a no-op until an application sets it).
	srvB := httptest.NewServer(otelhttp.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "b")
	}), "service-b", otelhttp.WithTracerProvider(sdk.tp), otelhttp.WithMeterProvider(sdk.mp),
		otelhttp.WithPropagators(propagation.TraceContext{})))
	t.Cleanup(srvB.Close)

	// C: gRPC with NewGRPCServer.
	gsrv := grpc.NewServer(serverOptions(t, middleware.WithTracerProvider(sdk.tp), middleware.WithMeterProvider(sdk.mp))...)
	testgrpc.RegisterTestServiceServer(gsrv, grpcTraceServer{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gsrv.Serve(lis) }()
	t.Cleanup(gsrv.Stop)

	// A: NewHandler; calls B over HTTP and C over gRPC, both through proxyless.
	clientAB, _ := newMeshClient(t, discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"svc-b": {{Addr: strings.TrimPrefix(srvB.URL, "http://")}}}), sdk.options()...)
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc-c": {{Addr: lis.Addr().String()}}})
	conn, err := grpc.NewClient("proxyless:///svc-c", append(dialOptions(t, static, middleware.WithTracerProvider(sdk.tp), middleware.WithMeterProvider(sdk.mp)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	grpcC := testgrpc.NewTestServiceClient(conn)
	handlerA, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://svc-b/", nil)
		resp, err := clientAB.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if _, err := grpcC.UnaryCall(r.Context(), &testgrpc.SimpleRequest{}); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "a")
	}), middleware.WithTracerProvider(sdk.tp), middleware.WithMeterProvider(sdk.mp))
	require.NoError(t, err)
	srvA := httptest.NewServer(handlerA)
	t.Cleanup(srvA.Close)
	return strings.TrimPrefix(srvA.URL, "http://"), lis.Addr().String()
}

// findOneSpan returns the one span of spans of the kind that match accepts; what names it.
func findOneSpan(t *testing.T, spans []sdktrace.ReadOnlySpan, kind trace.SpanKind, match func(sdktrace.ReadOnlySpan) bool, what string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.SpanKind() == kind && match(sp) {
			found = append(found, sp)
		}
	}
	require.Len(t, found, 1, what)
	return found[0]
}

// spanNamed matches the spans called name.
func spanNamed(name string) func(sdktrace.ReadOnlySpan) bool {
	return func(sp sdktrace.ReadOnlySpan) bool { return sp.Name() == name }
}

// spanChildOf matches the children of parent.
func spanChildOf(parent sdktrace.ReadOnlySpan) func(sdktrace.ReadOnlySpan) bool {
	return func(sp sdktrace.ReadOnlySpan) bool { return sp.Parent().SpanID() == parent.SpanContext().SpanID() }
}

// spanToHost matches the spans whose server.address is h.
func spanToHost(h string) func(sdktrace.ReadOnlySpan) bool {
	return func(sp sdktrace.ReadOnlySpan) bool { return attrs(sp)["server.address"] == h }
}

// BenchmarkTelemetryCost measures, in one run over a no-op base transport, what telemetry
// costs the proxyless Transport. Run:
//
//		go test -run '^$' -bench BenchmarkTelemetryCost -benchmem -count 10 ./middleware/
//
//	  - bare: the no-op base alone, the floor of everything else;
//	  - off/explicit-noop: proxyless given the trace/noop and metric/noop providers, the
//	    cheapest way to turn telemetry off (one atomic load per request);
//	  - off/global-noop: proxyless with the default, the global providers while no SDK is
//	    installed (the case the 50 ns budget is about);
//	  - otelhttp/sdk: otelhttp alone over the base with the SDK, always sampling: the baseline
//	    of the enabled cost;
//	  - proxyless/sdk: proxyless with the same SDK: otelhttp's span per attempt plus the
//	    request span, attributes and proxyless.* metrics.
//
// The "telemetry compiled out" baseline is internal/telemetry's BenchmarkTelemetryOff/none vs /off,
// which times the exact calls the Transport makes while telemetry is off.
//
// What proxyless's telemetry adds with the SDK, beyond the otelhttp span it uses for each
// attempt, is (proxyless/sdk - off/global-noop) - (otelhttp/sdk - bare); the target is at
// most half of what otelhttp adds, (otelhttp/sdk - bare). scripts/telemetry-cost.sh runs the
// benchmark in rounds and prints that ratio per round and its median.
func BenchmarkTelemetryCost(b *testing.B) {
	sdkProviders := func(b *testing.B) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithSyncer(tracetest.NewNoopExporter()))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		return tp, mp
	}
	mesh := func(b *testing.B, opts ...middleware.TransportOption) http.RoundTripper {
		static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2"}, {Addr: "127.0.0.1:3"}}})
		tr, err := middleware.NewTransport(nopTransport{}, append([]middleware.TransportOption{middleware.WithResolver(static)}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	b.Run("bare", func(b *testing.B) {
		benchRoundTrip(b, nopTransport{}, "http://127.0.0.1:1/")
	})
	b.Run("off/explicit-noop", func(b *testing.B) {
		benchRoundTrip(b, mesh(b, middleware.WithTracerProvider(tracenoop.NewTracerProvider()),
			middleware.WithMeterProvider(metricnoop.NewMeterProvider())), "http://svc/")
	})
	b.Run("off/global-noop", func(b *testing.B) {
		benchRoundTrip(b, mesh(b), "http://svc/")
	})
	b.Run("otelhttp/sdk", func(b *testing.B) {
		tp, mp := sdkProviders(b)
		benchRoundTrip(b, otelhttp.NewTransport(nopTransport{}, otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp),
			otelhttp.WithPropagators(propagation.TraceContext{})), "http://127.0.0.1:1/")
	})
	b.Run("proxyless/sdk", func(b *testing.B) {
		tp, mp := sdkProviders(b)
		benchRoundTrip(b, mesh(b, middleware.WithTracerProvider(tp), middleware.WithMeterProvider(mp)), "http://svc/")
	})
}

// nopTransport answers every request at once with an empty 200: one allocation, the response.
type nopTransport struct{}

func (nopTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req, Header: http.Header{}}, nil
}

// benchRoundTrip calls rt directly (not through an http.Client, whose own cost would blur
// the comparison) and closes each body.
func benchRoundTrip(b *testing.B, rt http.RoundTripper, url string) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.Body.Close()
	}
}

// statusScenario is a Transport after a scripted failure: of four endpoints, one answers 503
// and is ejected as an outlier after two in a row; another answers 500, which ejection does
// not count but the breaker does, and its breaker opens after four calls.
type statusScenario struct {
	tr              *middleware.Transport
	good1, good2    *faultbackend.Backend
	ejected, broken *faultbackend.Backend
}

func newStatusScenario(t *testing.T, ctx context.Context) *statusScenario {
	t.Helper()
	s := &statusScenario{good1: faultbackend.New(t), good2: faultbackend.New(t), ejected: faultbackend.New(t), broken: faultbackend.New(t)}
	s.good1.Set(faultbackend.Slow(2 * time.Millisecond))
	s.good2.Set(faultbackend.Slow(4 * time.Millisecond))
	s.ejected.Set(faultbackend.Status(http.StatusServiceUnavailable))
	s.broken.Set(faultbackend.Status(http.StatusInternalServerError))
	v1, v2 := map[string]string{"version": "v1"}, map[string]string{"version": "v2"}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"payments": {
		{Addr: s.good1.Addr(), Zone: "eu-west-1a", Meta: v1}, {Addr: s.good2.Addr(), Zone: "eu-west-1b", Weight: 2, Meta: v2},
		{Addr: s.ejected.Addr(), Zone: "eu-west-1a", Meta: v1}, {Addr: s.broken.Addr(), Zone: "eu-west-1c", Meta: v1},
	}})
	// A route table for the page to show; the scenario's requests (/charge) match none of it.
	cfg, err := route.ParseConfig([]byte(statusScenarioRoutes))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	client, tr := newMeshClient(t, static, middleware.WithRoutes(router),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin,
			Outlier: balancer.OutlierConfig{ConsecutiveGatewayFailure: 2}}),
		middleware.WithBreaker(breaker.Config{MinimumVolume: 4, OpenDelay: time.Minute}),
		middleware.WithRetry(middleware.RetryPolicy{BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond}))
	s.tr = tr
	for i := 0; ; i++ {
		if s.endpoint(t).ejected && s.breakerOpen(t) {
			return s
		}
		require.Less(t, i, 200, "no ejection and open breaker after 200 requests: %+v", tr.Destinations())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://payments/charge", nil)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
	}
}

// statusScenarioRoutes is the status scenario's route table: a canary at 10 % and a route
// with overrides, for the page to show.
const statusScenarioRoutes = `
routes:
  - name: checkout-canary
    match: {hosts: [payments], path: {prefix: /v2/checkout}}
    canary:
      stable: {service: payments, subset: {meta: {version: v1}}}
      canary: {service: payments, subset: {meta: {version: v2}}}
      weight: 10
  - name: refunds
    match: {hosts: [payments], path: {prefix: /refunds/}, methods: [POST]}
    destination: {service: payments}
    timeout: 2s
    retry: {maxRetries: 1, statuses: [503]}
`

type endpointFacts struct{ ejected, open bool }

func (s *statusScenario) endpoint(t *testing.T) endpointFacts {
	var f endpointFacts
	for _, d := range s.tr.Destinations() {
		for _, e := range d.Endpoints {
			if e.Addr == s.ejected.Addr() {
				f.ejected = e.Ejected(time.Now())
			}
		}
	}
	return f
}

func (s *statusScenario) breakerOpen(t *testing.T) bool {
	for _, d := range s.tr.Destinations() {
		for _, e := range d.Endpoints {
			if e.Addr == s.broken.Addr() {
				return e.HasBreaker && e.Breaker.String() == "open"
			}
		}
	}
	return false
}

// The status page, fetched over loopback by a real client after the scripted failure,
// reports the ejected endpoint and the open breaker, in JSON and in HTML.
func TestStatusPageReportsEjectionAndOpenBreaker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newStatusScenario(t, ctx)
	srv := httptest.NewServer(middleware.StatusHandler(s.tr))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	var page struct {
		Transports []struct {
			Stats struct {
				Ejections    int64 `json:"ejections"`
				BreakerOpens int64 `json:"breakerOpens"`
			} `json:"stats"`
			Destinations []struct {
				Service   string `json:"service"`
				Known     int    `json:"endpointsKnown"`
				Healthy   int    `json:"endpointsHealthy"`
				Endpoints []struct {
					Addr         string     `json:"addr"`
					Zone         string     `json:"zone"`
					Ejected      bool       `json:"ejected"`
					EjectedUntil *time.Time `json:"ejectedUntil"`
					Breaker      string     `json:"breaker"`
					Failures     uint64     `json:"failures"`
				} `json:"endpoints"`
			} `json:"destinations"`
		} `json:"transports"`
	}
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.NoError(t, jsonDecode(resp.Body, &page))
	require.NoError(t, resp.Body.Close())
	require.Len(t, page.Transports, 1)
	tp := page.Transports[0]
	assert.EqualValues(t, 1, tp.Stats.Ejections)
	assert.EqualValues(t, 1, tp.Stats.BreakerOpens)
	require.Len(t, tp.Destinations, 1)
	d := tp.Destinations[0]
	assert.Equal(t, "payments", d.Service)
	assert.Equal(t, 4, d.Known)
	assert.Equal(t, 3, d.Healthy, "the ejected endpoint is not healthy; an open breaker alone does not eject")
	byAddr := map[string]int{}
	for i, e := range d.Endpoints {
		byAddr[e.Addr] = i
	}
	ej := d.Endpoints[byAddr[s.ejected.Addr()]]
	assert.True(t, ej.Ejected)
	require.NotNil(t, ej.EjectedUntil)
	assert.True(t, ej.EjectedUntil.After(time.Now()))
	assert.Equal(t, "closed", ej.Breaker, "two failures do not fill the breaker's window of four")
	assert.Equal(t, "eu-west-1a", ej.Zone)
	op := d.Endpoints[byAddr[s.broken.Addr()]]
	assert.Equal(t, "open", op.Breaker)
	assert.False(t, op.Ejected)
	assert.GreaterOrEqual(t, op.Failures, uint64(4))
	for _, g := range []*faultbackend.Backend{s.good1, s.good2} {
		e := d.Endpoints[byAddr[g.Addr()]]
		assert.Equal(t, "closed", e.Breaker)
		assert.False(t, e.Ejected)
	}

	// The HTML page says the same, in the cells a reader looks at.
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/", nil)
	hresp, err := client.Do(hreq)
	require.NoError(t, err)
	body, err := io.ReadAll(hresp.Body)
	require.NoError(t, err)
	require.NoError(t, hresp.Body.Close())
	assert.Equal(t, "text/html; charset=utf-8", hresp.Header.Get("Content-Type"))
	rows := htmlRows(t, string(body))
	require.Contains(t, rows, s.ejected.Addr())
	require.Contains(t, rows, s.broken.Addr())
	assert.Contains(t, rows[s.ejected.Addr()], `<td class="bad">ejected until`)
	assert.Contains(t, rows[s.broken.Addr()], `<td class="bad">open</td>`)
	assert.Contains(t, rows[s.broken.Addr()], `in rotation`)
	assert.Contains(t, string(body), "3/4 healthy")
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// htmlRows returns the markup of each table row of the page, by the endpoint address it
// starts with.
func htmlRows(t *testing.T, page string) map[string]string {
	t.Helper()
	rows := map[string]string{}
	for _, part := range strings.Split(page, "<tr>")[1:] {
		row, _, _ := strings.Cut(part, "</tr>")
		addr, ok := strings.CutPrefix(strings.TrimSpace(row), "<td>")
		if !ok {
			continue
		}
		addr, _, _ = strings.Cut(addr, "</td>")
		rows[addr] = row
	}
	return rows
}

// The status page renders in a real browser: headless Chromium (Debian's chromium package)
// loads it from a loopback server after the scripted failure, its DOM holds the table, and
// its screenshot shows the red cells of the ejection and the open breaker. The browser is the
// one in PROXYLESS_CHROMIUM_BIN, which make test installs and sets; without it the test
// skips, and under CI=true fails. Set PROXYLESS_STATUS_SCREENSHOT to a path to keep the
// screenshot, e.g. the one in docs/:
//
//	PROXYLESS_CHROMIUM_BIN=/usr/bin/chromium PROXYLESS_STATUS_SCREENSHOT=$PWD/docs/status-page.png \
//		go test -run TestStatusPageRendersInChromium ./middleware/
func TestStatusPageRendersInChromium(t *testing.T) {
	chromium, err := testenv.ChromiumBinary()
	if err != nil {
		testenv.Unavailable(t, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := newStatusScenario(t, ctx)
	srv := httptest.NewServer(middleware.StatusHandler(s.tr))
	defer srv.Close()
	url := srv.URL + "/" // http://127.0.0.1:PORT/

	run := func(args ...string) []byte {
		t.Helper()
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir(), "--window-size=1200,800"}, args...)
		cmd := exec.CommandContext(ctx, chromium, append(args, url)...)
		cmd.WaitDelay = 5 * time.Second
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "chromium: %s", stderr.String())
		return out
	}

	dom := string(run("--dump-dom"))
	rows := htmlRows(t, dom)
	require.Contains(t, rows, s.ejected.Addr(), "the DOM Chromium built holds the endpoint table:\n%s", dom)
	assert.Contains(t, rows[s.ejected.Addr()], "ejected until")
	assert.Contains(t, rows[s.broken.Addr()], `<td class="bad">open</td>`)
	require.Contains(t, rows, "checkout-canary", "the DOM holds the route table")
	assert.Contains(t, rows["checkout-canary"], "[meta=version=v2] 10%", "the canary's weight")

	shot := os.Getenv("PROXYLESS_STATUS_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "status-page.png")
	}
	run("--screenshot=" + shot)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Equal(t, image.Rect(0, 0, 1200, 800), img.Bounds())
	// The page's colours: .bad (#fdd) for the ejection and the open breaker, .ok (#dfd)
	// for closed breakers and healthy endpoints, black text.
	var bad, ok, dark int
	for y := 0; y < 800; y++ {
		for x := 0; x < 1200; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			r, g, b = r>>8, g>>8, b>>8
			switch {
			case r > 250 && g > 215 && g < 227 && b > 215 && b < 227:
				bad++
			case g > 250 && r > 215 && r < 227 && b > 215 && b < 227:
				ok++
			case r < 80 && g < 80 && b < 80:
				dark++
			}
		}
	}
	assert.Greater(t, bad, 500, "red cells are painted")
	assert.Greater(t, ok, 500, "green cells are painted")
	assert.Greater(t, dark, 500, "text is painted")
}
