package telemetry_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/tracing"
)

// The outcome of a gRPC call and of its attempt is the one the adapter classified, reported
// as is: the request span's attribute and, with the call's error, its status; the attempt
// counts only when it was sent.
func TestGRPCOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		kind   outcome.Kind
		picked bool
		want   string
	}{
		{"ok", nil, outcome.Success, true, "success"},
		{"unavailable", status.Error(codes.Unavailable, "x"), outcome.GatewayFailure, true, "gateway_failure"},
		{"resource exhausted", status.Error(codes.ResourceExhausted, "x"), outcome.Throttled, true, "throttled"},
		{"attempt timeout", status.Error(codes.DeadlineExceeded, "x"), outcome.LocalTimeout, true, "local_timeout"},
		{"cancelled", status.Error(codes.Canceled, "x"), outcome.Canceled, true, "canceled"},
		{"internal", status.Error(codes.Internal, "x"), outcome.Failure, true, "failure"},
		{"not found", status.Error(codes.NotFound, "x"), outcome.Success, true, "success"},
		{"tls", status.Error(codes.Unavailable, "x509"), outcome.TLSFailure, true, "tls_failure"},
		{"breaker open, nothing picked", &breaker.OpenError{}, outcome.LocalRefusal, false, "local_refusal"},
		{"cancelled before the pick", status.Error(codes.Canceled, "x"), outcome.Canceled, false, "canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSDK(t)
			tel := s.telemetry(t)
			ctx, r := tel.StartCall(context.Background(), tel.Destination("svc"), "/pkg.Svc/Do")
			require.NotNil(t, r)
			_, a := r.StartAttempt(ctx, telemetry.AttemptInfo{Kind: tracing.AttemptFirst})
			if tc.picked {
				a.Picked("127.0.0.1:1", false)
			}
			a.End(tc.kind)
			r.EndGRPC(a, tc.kind, tc.err)
			ended := s.rec.Ended()
			require.Len(t, ended, 1)
			sp := ended[0]
			assert.Equal(t, "pkg.Svc/Do", sp.Name())
			assert.Equal(t, trace.SpanKindInternal, sp.SpanKind())
			assert.Equal(t, tc.want, attrs(sp)[tracing.KeyOutcome].Emit())
			assert.Equal(t, "pkg.Svc/Do", attrs(sp)["rpc.method"].Emit())
			wantStatus := otelcodes.Unset
			if tc.err != nil || tc.kind.SpanError() {
				wantStatus = otelcodes.Error
			}
			assert.Equal(t, wantStatus, sp.Status().Code)
			ms := s.metrics(t)
			assert.Equal(t, int64(1), sum(t, ms, tracing.MetricRequestDuration, tracing.KeyOutcome.String(tc.want)))
			if tc.picked {
				assert.Equal(t, int64(1), sum(t, ms, tracing.MetricAttempts, tracing.KeyOutcome.String(tc.want)))
			} else {
				assert.Zero(t, sum(t, ms, tracing.MetricAttempts), "an attempt never sent is not counted")
			}
		})
	}
}

// recordingServer answers every unary call and keeps the traceparent each carried.
type recordingServer struct {
	testgrpc.UnimplementedTestServiceServer
	mu     sync.Mutex
	parent []string
}

func (s *recordingServer) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.mu.Lock()
	s.parent = append(s.parent, metadata.ValueFromIncomingContext(ctx, "traceparent")...)
	s.mu.Unlock()
	return &testgrpc.SimpleResponse{}, nil
}

func (s *recordingServer) parents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.parent...)
}

// grpcClient dials a loopback server with tel's client handler and interceptor, the one a
// test plays the middleware with.
func grpcClient(t *testing.T, tel *telemetry.Telemetry, interceptor grpc.UnaryClientInterceptor) (testgrpc.TestServiceClient, *recordingServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &recordingServer{}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(tel.ClientHandler()), grpc.WithUnaryInterceptor(interceptor))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return testgrpc.NewTestServiceClient(conn), srv, lis.Addr().String()
}

// The client handler is otelgrpc's: a CLIENT span per attempt, child of the request span,
// whose trace context reaches the server. Proxyless adds the attempt's attributes to it, and
// holds its end until the attempt's verdict is known, then ends it when otelgrpc did.
func TestGRPCClientHandlerAnnotatesAndHolds(t *testing.T) {
	s := newSDK(t)
	tel := s.telemetry(t)
	d := tel.Destination("svc")
	clientSpans := func() (n int) {
		for _, sp := range s.rec.Ended() {
			if sp.SpanKind() == trace.SpanKindClient {
				n++
			}
		}
		return n
	}
	var addr string
	var heldAfterInvoke, heldAfterDiscard, endedAfterOutcome int
	var firstReturned time.Time
	interceptor := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, r := tel.StartCall(ctx, d, method)
		a0ctx, a0 := r.StartAttempt(ctx, telemetry.AttemptInfo{N: 0, Kind: tracing.AttemptFirst})
		a0.Picked(addr, false) // what the picker does, through grpcbalancer.Attempt.Observer
		err := invoker(a0ctx, method, req, reply, cc, opts...)
		firstReturned = time.Now()
		heldAfterInvoke = clientSpans()
		a0.Discarded() // the verdict first, then the outcome: either order releases it
		heldAfterDiscard = clientSpans()
		a0.End(outcome.Throttled) // what the adapter would have said of RESOURCE_EXHAUSTED
		endedAfterOutcome = clientSpans()
		a1ctx, a1 := r.StartAttempt(ctx, telemetry.AttemptInfo{N: 1, Kind: tracing.AttemptRetry, Backoff: time.Millisecond})
		a1.Picked(addr, true)
		err = invoker(a1ctx, method, req, reply, cc, opts...)
		a1.End(outcome.Success)
		r.EndGRPC(a1, outcome.Success, err)
		return err
	}
	client, srv, a := grpcClient(t, tel, interceptor)
	addr = a
	_, err := client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
	require.NoError(t, err)

	assert.Equal(t, 0, heldAfterInvoke, "otelgrpc's span is held until the verdict and the outcome are known")
	assert.Equal(t, 0, heldAfterDiscard, "the outcome is still to come")
	assert.Equal(t, 1, endedAfterOutcome, "and ended once both are known")
	var req sdktrace.ReadOnlySpan
	var atts []sdktrace.ReadOnlySpan
	for _, sp := range s.rec.Ended() {
		switch sp.SpanKind() {
		case trace.SpanKindInternal:
			req = sp
		case trace.SpanKindClient:
			atts = append(atts, sp)
		}
	}
	require.NotNil(t, req)
	require.Len(t, atts, 2)
	assert.Len(t, s.rec.Started(), 3, "no other span")
	for _, sp := range atts {
		assert.Equal(t, req.SpanContext().SpanID(), sp.Parent().SpanID(), "attempt spans are children of the request span")
		assert.Equal(t, "grpc.testing.TestService/UnaryCall", sp.Name())
	}
	first, retry := attrs(atts[0]), attrs(atts[1])
	// The endpoint is otelgrpc's server.address and server.port, the destination the
	// request span's: neither is repeated, nor a first attempt's number.
	assert.Equal(t, map[attribute.Key]string{
		tracing.KeyAttemptKind: "first", tracing.KeyBreakerState: "closed", tracing.KeyDiscarded: "true", tracing.KeyOutcome: "throttled",
	}, pick(first, tracing.KeyDestination, tracing.KeyEndpoint, tracing.KeyAttempt, tracing.KeyAttemptKind,
		tracing.KeyBreakerState, tracing.KeyDiscarded, tracing.KeyWinner, tracing.KeyOutcome))
	assert.Equal(t, map[attribute.Key]string{
		tracing.KeyAttempt: "1", tracing.KeyAttemptKind: "retry", tracing.KeyBreakerState: "half-open", tracing.KeyWinner: "true",
	}, pick(retry, tracing.KeyDestination, tracing.KeyEndpoint, tracing.KeyAttempt, tracing.KeyAttemptKind,
		tracing.KeyBreakerState, tracing.KeyDiscarded, tracing.KeyWinner, tracing.KeyOutcome), "a success carries no outcome")
	for _, a := range []map[attribute.Key]attribute.Value{first, retry} {
		assert.Equal(t, addr, net.JoinHostPort(a["server.address"].Emit(), a["server.port"].Emit()))
	}
	assert.False(t, atts[0].EndTime().After(firstReturned), "the held span ends when otelgrpc ended it")
	assert.Equal(t, "2", attrs(req)[tracing.KeyAttempts].Emit())

	parents := srv.parents()
	require.Len(t, parents, 2, "otelgrpc injected the trace context")
	for i, sp := range atts {
		assert.Equal(t, "00-"+sp.SpanContext().TraceID().String()+"-"+sp.SpanContext().SpanID().String()+"-01", parents[i])
	}
	ms := s.metrics(t)
	assert.Equal(t, int64(2), sum(t, ms, "rpc.client.call.duration", tracing.KeyDestination.String("svc")),
		"otelgrpc's metric carries the destination")
	assert.Equal(t, int64(1), sum(t, ms, tracing.MetricRetries))
}

// While the providers are no-ops, StartCall gives nil and the handler does nothing: no span,
// no trace context on the wire.
func TestGRPCClientHandlerOff(t *testing.T) {
	tel, err := telemetry.New(telemetry.WithTracerProvider(tracenoop.NewTracerProvider()), telemetry.WithMeterProvider(metricnoop.NewMeterProvider()))
	require.NoError(t, err)
	defer tel.Close()
	d := tel.Destination("svc")
	interceptor := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		cctx, r := tel.StartCall(ctx, d, method)
		assert.Nil(t, r)
		assert.Equal(t, ctx, cctx)
		actx, a := r.StartAttempt(cctx, telemetry.AttemptInfo{})
		assert.Nil(t, a)
		a.Picked("x", false)
		err := invoker(actx, method, req, reply, cc, opts...)
		a.End(outcome.Success)
		a.Discarded()
		r.EndGRPC(a, outcome.Success, err)
		return err
	}
	client, srv, _ := grpcClient(t, tel, interceptor)
	_, err = client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
	require.NoError(t, err)
	assert.Empty(t, srv.parents())
}

// pick returns the string values of the keys of m that are present.
func pick(m map[attribute.Key]attribute.Value, keys ...attribute.Key) map[attribute.Key]string {
	out := map[attribute.Key]string{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v.Emit()
		}
	}
	return out
}
