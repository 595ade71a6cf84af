package middleware_test

// The gRPC side of the telemetry proof: a call made through DialOptions gets a request span, and
// each of its attempts is otelgrpc's CLIENT span beneath it with proxyless's attributes
// (endpoint, attempt number and kind, breaker state, winner or discarded); the metrics count
// what the servers saw; refusals are recorded; every span started ends. Each test passes its
// own SDK providers and talks to real loopback gRPC servers.

import (
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/tracing"
)

// telScript is what the servers of a test do, shared among them so that a test can make the
// first call to arrive fail or hang, whichever server it reaches.
type telScript struct {
	failNext atomic.Int64 // while positive, a call (or stream) takes one and fails with UNAVAILABLE
	hangNext atomic.Int64 // while positive, a call takes one and blocks until it is cancelled
	fail     atomic.Bool  // every call fails with UNAVAILABLE
}

// take takes one from n if it is positive.
func take(n *atomic.Int64) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// telServer is a gRPC TestService on loopback, without telemetry of its own, that counts the
// calls it saw.
type telServer struct {
	testgrpc.UnimplementedTestServiceServer
	name      string
	addr      string
	script    *telScript
	calls     atomic.Int64 // unary calls and streams that arrived
	cancelled atomic.Int64 // calls that hung until cancelled
}

func (s *telServer) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.calls.Add(1)
	switch {
	case s.script.fail.Load() || take(&s.script.failNext):
		return nil, status.Error(grpccodes.Unavailable, s.name+" unavailable")
	case take(&s.script.hangNext):
		<-ctx.Done()
		s.cancelled.Add(1)
		return nil, ctx.Err()
	}
	return &testgrpc.SimpleResponse{Username: s.name}, nil
}

// StreamingOutputCall sends two messages, or fails before any when the script says so.
func (s *telServer) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, ss testgrpc.TestService_StreamingOutputCallServer) error {
	s.calls.Add(1)
	if take(&s.script.failNext) {
		return status.Error(grpccodes.Unavailable, s.name+" unavailable")
	}
	for range 2 {
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(s.name)}}); err != nil {
			return err
		}
	}
	return nil
}

// FullDuplexCall echoes every message until the client closes its side or goes away.
func (s *telServer) FullDuplexCall(ss testgrpc.TestService_FullDuplexCallServer) error {
	s.calls.Add(1)
	for {
		req, err := ss.Recv()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// telFixture is a proxyless gRPC client of the service "svc", with an SDK recording into
// memory, over n telServers that have each answered a warm-up call.
type telFixture struct {
	sdk     *otelSDK
	script  *telScript
	servers []*telServer
	client  testgrpc.TestServiceClient
}

func newTelFixture(t *testing.T, n int, opts ...middleware.GRPCClientOption) *telFixture {
	t.Helper()
	f := &telFixture{sdk: newOtelSDK(t), script: &telScript{}}
	eps := make([]discovery.Endpoint, n)
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		s := &telServer{name: "s" + strconv.Itoa(i), addr: lis.Addr().String(), script: f.script}
		srv := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(srv, s)
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(srv.Stop)
		f.servers = append(f.servers, s)
		eps[i] = discovery.Endpoint{Addr: s.addr}
	}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps})
	dopts := append(dialOptions(t, static, append([]middleware.GRPCClientOption{middleware.WithTracerProvider(f.sdk.tp), middleware.WithMeterProvider(f.sdk.mp)}, opts...)...),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient("proxyless:///svc", dopts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	f.client = testgrpc.NewTestServiceClient(conn)

	// The balancer picks only among READY endpoints: call until every server has answered.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for slices.ContainsFunc(f.servers, func(s *telServer) bool { return s.calls.Load() == 0 }) {
		conn.Connect()
		_, _ = f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		require.NoError(t, ctx.Err(), "the servers never all answered")
	}
	for _, s := range f.servers {
		s.calls.Store(0)
	}
	return f
}

// calls is how many calls and streams the servers saw.
func (f *telFixture) calls() int64 {
	var n int64
	for _, s := range f.servers {
		n += s.calls.Load()
	}
	return n
}

// server returns the server at addr.
func (f *telFixture) server(t *testing.T, addr string) *telServer {
	t.Helper()
	i := slices.IndexFunc(f.servers, func(s *telServer) bool { return s.addr == addr })
	require.NotEqual(t, -1, i, "no server at %q", addr)
	return f.servers[i]
}

// root starts the caller's span, under which a test makes its call.
func (f *telFixture) root(ctx context.Context) (context.Context, trace.Span) {
	return f.sdk.tp.Tracer("test").Start(ctx, "caller")
}

// tree returns, among the ended spans of root's trace, the request span (an INTERNAL child of
// root) and the attempt spans (CLIENT children of the request span) ordered by attempt
// number, and checks that the trace holds nothing else.
func (f *telFixture) tree(t *testing.T, root trace.Span) (sdktrace.ReadOnlySpan, []sdktrace.ReadOnlySpan) {
	t.Helper()
	var spans []sdktrace.ReadOnlySpan
	for _, sp := range f.sdk.rec.Ended() {
		if sp.SpanContext().TraceID() == root.SpanContext().TraceID() && sp.SpanContext().SpanID() != root.SpanContext().SpanID() {
			spans = append(spans, sp)
		}
	}
	var req sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.SpanKind() == trace.SpanKindInternal {
			require.Nil(t, req, "one request span")
			req = sp
		}
	}
	require.NotNil(t, req, "a request span")
	assert.Equal(t, root.SpanContext().SpanID(), req.Parent().SpanID(), "the request span is a child of the caller's")
	var atts []sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp == req {
			continue
		}
		assert.Equal(t, trace.SpanKindClient, sp.SpanKind(), "span %q", sp.Name())
		assert.Equal(t, req.SpanContext().SpanID(), sp.Parent().SpanID(), "attempt span %q is a child of the request span", sp.Name())
		atts = append(atts, sp)
	}
	slices.SortFunc(atts, func(a, b sdktrace.ReadOnlySpan) int {
		x, _ := strconv.Atoi(attrs(a)[tracing.KeyAttempt])
		y, _ := strconv.Atoi(attrs(b)[tracing.KeyAttempt])
		return x - y
	})
	return req, atts
}

// delta is counter(after) - counter(before).
func delta(before, after map[string]metricdata.Aggregation, name string, want ...attribute.KeyValue) int64 {
	return counter(after, name, want...) - counter(before, name, want...)
}

// countOf counts the elements of s equal to v.
func countOf(s []string, v string) int {
	n := 0
	for _, e := range s {
		if e == v {
			n++
		}
	}
	return n
}

// histDelta is histCount(after) - histCount(before).
func histDelta(before, after map[string]metricdata.Aggregation, name string, want ...attribute.KeyValue) int64 {
	return int64(histCount(after, name, want...)) - int64(histCount(before, name, want...))
}

var (
	destSvc         = tracing.KeyDestination.String("svc")
	unaryMethodName = "grpc.testing.TestService/UnaryCall"
)

// A unary call whose first attempt is answered UNAVAILABLE and retried on the other server:
// the caller's span, the call's request span beneath it, and beneath that otelgrpc's CLIENT
// span of each attempt with its endpoint, number, kind and breaker state; the first is marked
// discarded, the retry the winner. The metrics count the two attempts the servers saw.
func TestGRPCSpanTreeRetried(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f := newTelFixture(t, 2, rr, middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}))
	before := f.sdk.collect(t)
	f.script.failNext.Store(1)

	rctx, root := f.root(ctx)
	resp, err := f.client.UnaryCall(rctx, &testgrpc.SimpleRequest{})
	root.End()
	require.NoError(t, err)
	f.sdk.waitAllEnded(t, ctx)
	assert.EqualValues(t, 2, f.calls(), "the servers saw two attempts")
	winner := f.servers[slices.IndexFunc(f.servers, func(s *telServer) bool { return s.name == resp.GetUsername() })]
	loser := f.servers[slices.IndexFunc(f.servers, func(s *telServer) bool { return s != winner })]
	assert.EqualValues(t, 1, winner.calls.Load())
	assert.EqualValues(t, 1, loser.calls.Load())

	req, atts := f.tree(t, root)
	assert.Equal(t, unaryMethodName, req.Name())
	ra := attrs(req)
	assert.Equal(t, "svc", ra[tracing.KeyDestination])
	assert.Equal(t, unaryMethodName, ra["rpc.method"])
	assert.Equal(t, "success", ra[tracing.KeyOutcome])
	assert.Equal(t, "2", ra[tracing.KeyAttempts])
	assert.Equal(t, "1", ra[tracing.KeyAttempt], "the retry's answer was returned")
	assert.Equal(t, winner.addr, ra[tracing.KeyEndpoint])
	assert.Equal(t, "OK", ra["rpc.response.status_code"])
	assert.Equal(t, codes.Unset, req.Status().Code)
	assert.Contains(t, events(req), "proxyless.retry")

	require.Len(t, atts, 2, "one otelgrpc span per attempt")
	first, retry := attrs(atts[0]), attrs(atts[1])
	for _, a := range []sdktrace.ReadOnlySpan{atts[0], atts[1]} {
		assert.Equal(t, unaryMethodName, a.Name(), "otelgrpc's span")
		assert.NotContains(t, attrs(a), tracing.KeyDestination, "the destination is the request span's")
		assert.NotContains(t, attrs(a), tracing.KeyEndpoint, "the endpoint is otelgrpc's server.address and server.port")
		assert.Equal(t, "closed", attrs(a)[tracing.KeyBreakerState])
	}
	assert.Equal(t, loser.addr, endpointOf(atts[0]))
	assert.NotContains(t, first, tracing.KeyAttempt, "a first attempt's number is implied")
	assert.Equal(t, "first", first[tracing.KeyAttemptKind])
	assert.Equal(t, "gateway_failure", first[tracing.KeyOutcome])
	assert.Equal(t, "UNAVAILABLE", first["rpc.response.status_code"], "otelgrpc's own attribute")
	assert.Equal(t, "true", first[tracing.KeyDiscarded])
	assert.NotContains(t, first, tracing.KeyWinner)
	assert.Equal(t, codes.Error, atts[0].Status().Code)

	assert.Equal(t, winner.addr, endpointOf(atts[1]))
	assert.Equal(t, "1", retry[tracing.KeyAttempt])
	assert.Equal(t, "retry", retry[tracing.KeyAttemptKind])
	assert.Contains(t, retry, tracing.KeyBackoff)
	assert.Equal(t, "true", retry[tracing.KeyWinner])
	assert.NotContains(t, retry, tracing.KeyDiscarded)
	assert.NotContains(t, retry, tracing.KeyOutcome, "a success carries no outcome")

	// The first attempt's span ends when otelgrpc ended it, before the retry began, though
	// its verdict came later; the retry's ends within the request span.
	assert.False(t, atts[0].EndTime().After(atts[1].StartTime()), "the first attempt ended before the retry started")
	assert.False(t, atts[1].EndTime().After(req.EndTime()))

	after := f.sdk.collect(t)
	we, le := tracing.KeyEndpoint.String(winner.addr), tracing.KeyEndpoint.String(loser.addr)
	assert.EqualValues(t, f.calls(), delta(before, after, tracing.MetricAttempts, destSvc), "attempts counted = attempts the servers saw")
	assert.EqualValues(t, 1, delta(before, after, tracing.MetricAttempts, destSvc, le,
		tracing.KeyAttemptKind.String("first"), tracing.KeyOutcome.String("gateway_failure")))
	assert.EqualValues(t, 1, delta(before, after, tracing.MetricAttempts, destSvc, we,
		tracing.KeyAttemptKind.String("retry"), tracing.KeyOutcome.String("success")))
	assert.EqualValues(t, 1, histDelta(before, after, tracing.MetricRequestDuration, destSvc), "one logical call")
	assert.EqualValues(t, 1, histDelta(before, after, tracing.MetricRequestDuration, destSvc, we, tracing.KeyOutcome.String("success")))
	assert.EqualValues(t, 1, delta(before, after, tracing.MetricRetries, destSvc))
	assert.EqualValues(t, 2, histDelta(before, after, "rpc.client.call.duration", destSvc), "otelgrpc's metric carries the destination")
	assert.Empty(t, f.sdk.unended())
}

// A hedged call: the first attempt hangs, the hedge to the other server answers and wins, and
// the first is cancelled; its span, ended once the cancellation reaches it, is discarded.
func TestGRPCSpanTreeHedged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f := newTelFixture(t, 2, rr, middleware.WithHedge(middleware.HedgePolicy{Delay: 50 * time.Millisecond, MaxHedges: 1}))
	before := f.sdk.collect(t)
	f.script.hangNext.Store(1)

	rctx, root := f.root(ctx)
	resp, err := f.client.UnaryCall(rctx, &testgrpc.SimpleRequest{})
	root.End()
	require.NoError(t, err)
	f.sdk.waitAllEnded(t, ctx) // the loser ends in the background
	winner := f.servers[slices.IndexFunc(f.servers, func(s *telServer) bool { return s.name == resp.GetUsername() })]
	loser := f.servers[slices.IndexFunc(f.servers, func(s *telServer) bool { return s != winner })]
	eventually(t, func() bool { return loser.cancelled.Load() == 1 }, "the hung server saw the loser cancelled")

	req, atts := f.tree(t, root)
	ra := attrs(req)
	assert.Equal(t, "success", ra[tracing.KeyOutcome])
	assert.Equal(t, "2", ra[tracing.KeyAttempts])
	assert.Equal(t, "1", ra[tracing.KeyAttempt])
	assert.Equal(t, winner.addr, ra[tracing.KeyEndpoint])
	assert.Contains(t, events(req), "proxyless.hedge")

	require.Len(t, atts, 2)
	first, hedge := attrs(atts[0]), attrs(atts[1])
	assert.Equal(t, loser.addr, endpointOf(atts[0]))
	assert.Equal(t, "first", first[tracing.KeyAttemptKind])
	assert.Equal(t, "canceled", first[tracing.KeyOutcome])
	assert.Equal(t, "true", first[tracing.KeyDiscarded])
	assert.NotContains(t, first, tracing.KeyWinner)
	assert.Equal(t, winner.addr, endpointOf(atts[1]))
	assert.Equal(t, "1", hedge[tracing.KeyAttempt])
	assert.Equal(t, "hedge", hedge[tracing.KeyAttemptKind])
	assert.Equal(t, "closed", hedge[tracing.KeyBreakerState])
	assert.Equal(t, "true", hedge[tracing.KeyWinner])
	assert.NotContains(t, hedge, tracing.KeyDiscarded)

	// The loser's attempt is counted once its invoker returns, after the call has.
	var after map[string]metricdata.Aggregation
	eventually(t, func() bool {
		after = f.sdk.collect(t)
		return delta(before, after, tracing.MetricAttempts, destSvc) == 2
	}, "both attempts counted")
	assert.EqualValues(t, f.calls(), delta(before, after, tracing.MetricAttempts, destSvc))
	assert.EqualValues(t, 1, delta(before, after, tracing.MetricAttempts, tracing.KeyEndpoint.String(loser.addr),
		tracing.KeyAttemptKind.String("first"), tracing.KeyOutcome.String("canceled")))
	assert.EqualValues(t, 1, delta(before, after, tracing.MetricAttempts, tracing.KeyEndpoint.String(winner.addr),
		tracing.KeyAttemptKind.String("hedge"), tracing.KeyOutcome.String("success")))
	assert.EqualValues(t, 1, delta(before, after, tracing.MetricHedges, destSvc))
	assert.EqualValues(t, 1, delta(before, after, tracing.MetricHedgeWins, destSvc))
	assert.EqualValues(t, 1, histDelta(before, after, tracing.MetricRequestDuration, destSvc, tracing.KeyOutcome.String("success")))
	assert.Empty(t, f.sdk.unended())
}

// Streams get a request span that lasts as long as the stream, with one otelgrpc span per
// attempt beneath it: a server stream read to its end, one retried because its first attempt
// failed before any message, and a bidirectional stream the caller abandons by cancelling its
// context, whose span ends all the same.
func TestGRPCStreamSpans(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f := newTelFixture(t, 2, rr, middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}))
	before := f.sdk.collect(t)
	readAll := func(ctx context.Context) (int, error) {
		st, err := f.client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
		if err != nil {
			return 0, err
		}
		for n := 0; ; n++ {
			if _, err := st.Recv(); err != nil {
				if err == io.EOF {
					return n, nil
				}
				return n, err
			}
		}
	}
	const streamName = "grpc.testing.TestService/StreamingOutputCall"

	t.Run("read to its end", func(t *testing.T) {
		rctx, root := f.root(ctx)
		n, err := readAll(rctx)
		root.End()
		require.NoError(t, err)
		assert.Equal(t, 2, n)
		req, atts := f.tree(t, root)
		assert.Equal(t, streamName, req.Name())
		ra := attrs(req)
		assert.Equal(t, "success", ra[tracing.KeyOutcome])
		assert.Equal(t, "1", ra[tracing.KeyAttempts])
		require.Len(t, atts, 1)
		a := attrs(atts[0])
		assert.Equal(t, ra[tracing.KeyEndpoint], endpointOf(atts[0]))
		assert.Equal(t, "first", a[tracing.KeyAttemptKind])
		assert.Equal(t, "closed", a[tracing.KeyBreakerState])
	})

	t.Run("retried", func(t *testing.T) {
		f.script.failNext.Store(1)
		rctx, root := f.root(ctx)
		n, err := readAll(rctx)
		root.End()
		require.NoError(t, err)
		assert.Equal(t, 2, n)
		req, atts := f.tree(t, root)
		ra := attrs(req)
		assert.Equal(t, "success", ra[tracing.KeyOutcome])
		assert.Equal(t, "2", ra[tracing.KeyAttempts])
		assert.Equal(t, "1", ra[tracing.KeyAttempt])
		require.Len(t, atts, 2)
		assert.Equal(t, "first", attrs(atts[0])[tracing.KeyAttemptKind])
		assert.Equal(t, "gateway_failure", attrs(atts[0])[tracing.KeyOutcome])
		assert.Equal(t, "retry", attrs(atts[1])[tracing.KeyAttemptKind])
		assert.Equal(t, ra[tracing.KeyEndpoint], endpointOf(atts[1]))
		assert.NotEqual(t, endpointOf(atts[0]), endpointOf(atts[1]), "the retry went to the other server")
	})

	t.Run("abandoned", func(t *testing.T) {
		rctx, root := f.root(ctx)
		sctx, scancel := context.WithCancel(rctx)
		st, err := f.client.FullDuplexCall(sctx)
		require.NoError(t, err)
		require.NoError(t, st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("hi")}}))
		_, err = st.Recv()
		require.NoError(t, err)
		scancel() // and never read again
		root.End()
		f.sdk.waitAllEnded(t, ctx)
		req, atts := f.tree(t, root)
		assert.Equal(t, "grpc.testing.TestService/FullDuplexCall", req.Name())
		assert.Equal(t, "canceled", attrs(req)[tracing.KeyOutcome])
		assert.Equal(t, "CANCELLED", attrs(req)["rpc.response.status_code"])
		require.Len(t, atts, 1)
	})

	f.sdk.waitAllEnded(t, ctx)
	after := f.sdk.collect(t)
	assert.EqualValues(t, 3, histDelta(before, after, tracing.MetricRequestDuration, destSvc), "one per stream")
	assert.EqualValues(t, f.calls(), delta(before, after, tracing.MetricAttempts, destSvc), "attempts counted = streams the servers saw")
	assert.EqualValues(t, 1, delta(before, after, tracing.MetricRetries, destSvc))

	// A send the client itself refuses (a message over the size limit) ends the stream, as
	// gRPC's ClientStream contract says: its span ends though the caller neither reads it to
	// its end nor cancels it.
	t.Run("send refused", func(t *testing.T) {
		rctx, root := f.root(ctx)
		st, err := f.client.FullDuplexCall(rctx, grpc.MaxCallSendMsgSize(1))
		require.NoError(t, err)
		err = st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("too large")}})
		require.Equal(t, grpccodes.ResourceExhausted, status.Code(err), "%v", err)
		root.End()
		f.sdk.waitAllEnded(t, ctx)
		req, _ := f.tree(t, root)
		assert.Equal(t, "grpc.testing.TestService/FullDuplexCall", req.Name())
		assert.Equal(t, "RESOURCE_EXHAUSTED", attrs(req)["rpc.response.status_code"])
		// Whether the server saw the stream before the client gave up on it is a race, so
		// this stream is counted apart: one request recorded.
		assert.EqualValues(t, 1, histDelta(after, f.sdk.collect(t), tracing.MetricRequestDuration, destSvc))
	})
}

// A retry that the budget refuses, and an attempt that every breaker refuses, are recorded on
// the request span and counted; the refused attempt reached no server and counts as none.
func TestGRPCRefusalsRecorded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("retry budget", func(t *testing.T) {
		f := newTelFixture(t, 2, rr, middleware.WithoutBreaker(),
			middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: -1, MinRetriesPerSecond: -1}))
		before := f.sdk.collect(t)
		f.script.failNext.Store(1)
		rctx, root := f.root(ctx)
		_, err := f.client.UnaryCall(rctx, &testgrpc.SimpleRequest{})
		root.End()
		require.Equal(t, grpccodes.Unavailable, status.Code(err))
		req, atts := f.tree(t, root)
		assert.Contains(t, events(req), "proxyless.retry_budget.refused")
		assert.Equal(t, "gateway_failure", attrs(req)[tracing.KeyOutcome])
		assert.Equal(t, "UNAVAILABLE", attrs(req)["rpc.response.status_code"])
		assert.Equal(t, codes.Error, req.Status().Code)
		require.Len(t, atts, 1)
		a := attrs(atts[0])
		assert.NotContains(t, a, tracing.KeyWinner, "the only attempt: nothing to tell apart")
		assert.NotContains(t, a, tracing.KeyDiscarded)
		assert.NotContains(t, a, tracing.KeyBreakerState, "breakers are off")
		after := f.sdk.collect(t)
		assert.EqualValues(t, 1, delta(before, after, tracing.MetricBudgetRefusals, destSvc, tracing.KeyAttemptKind.String("retry")))
		assert.EqualValues(t, 1, delta(before, after, tracing.MetricAttempts, destSvc))
		assert.Empty(t, f.sdk.unended())
	})

	t.Run("breaker", func(t *testing.T) {
		f := newTelFixture(t, 1,
			middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}),
			middleware.WithBreaker(breaker.Config{MinimumVolume: 3, OpenDelay: time.Minute}),
			middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
		f.script.fail.Store(true)
		for range 3 {
			_, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			require.Equal(t, grpccodes.Unavailable, status.Code(err))
		}
		calls := f.calls()
		before := f.sdk.collect(t)
		rctx, root := f.root(ctx)
		_, err := f.client.UnaryCall(rctx, &testgrpc.SimpleRequest{})
		root.End()
		require.ErrorIs(t, err, breaker.ErrOpen)
		assert.Equal(t, calls, f.calls(), "refused locally")
		req, atts := f.tree(t, root)
		assert.Contains(t, events(req), "proxyless.breaker.refused")
		assert.Equal(t, "local_refusal", attrs(req)[tracing.KeyOutcome])
		require.Len(t, atts, 1, "otelgrpc began the attempt before the pick")
		a := attrs(atts[0])
		assert.Equal(t, "local_refusal", a[tracing.KeyOutcome])
		assert.NotContains(t, a, tracing.KeyEndpoint, "none was picked")
		after := f.sdk.collect(t)
		// The picker asks the core again after a refusal, up to balancer.MaxTried+1 times, and
		// with one endpoint gets the same one back: each refusal is an event on the span, the
		// refused attempt one count, as in the client's Stats.
		assert.Positive(t, countOf(events(req), "proxyless.breaker.refused"))
		assert.EqualValues(t, 1, delta(before, after, tracing.MetricBreakerRefusals, destSvc), "one refused attempt, counted once")
		assert.Zero(t, delta(before, after, tracing.MetricAttempts, destSvc), "no server saw it")
		assert.EqualValues(t, 1, histDelta(before, after, tracing.MetricRequestDuration, destSvc, tracing.KeyOutcome.String("local_refusal")))
		assert.Empty(t, f.sdk.unended())
	})
}
