package middleware_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// grpcMode is what a grpcBackend does with the calls it gets.
type grpcMode int

const (
	modeOK                      grpcMode = iota
	modeUnavailable                      // UNAVAILABLE at once (trailers only)
	modeSlow                             // answer after the backend's delay
	modeHang                             // block until the call is cancelled
	modeExhausted                        // RESOURCE_EXHAUSTED with the backend's pushback
	modeCode                             // the backend's code
	modeHeadersThenUnavailable           // send headers, then UNAVAILABLE
	modeStreamFailAfterFirstMsg          // streams: one message, then UNAVAILABLE
)

// grpcBackend is a real gRPC server on loopback whose behaviour the test switches while it
// runs. It counts what it saw, so that tests assert the server's view.
type grpcBackend struct {
	testgrpc.UnimplementedTestServiceServer
	name string
	addr string
	srv  *grpc.Server

	mode     atomic.Int64
	delay    atomic.Int64 // modeSlow
	pushback atomic.Int64 // modeExhausted and modeUnavailable, in ms; -2: none
	code     atomic.Int64 // modeCode

	calls      atomic.Int64 // unary calls and streams started
	handled    atomic.Int64 // calls whose handler completed with OK
	cancelled  atomic.Int64 // calls whose context ended while the handler waited
	mu         sync.Mutex
	deadlines  []time.Duration // time left at arrival, per call with a deadline
	noDeadline int
	arrivals   []time.Time
}

func newGRPCBackend(t testing.TB, name string, sopts ...grpc.ServerOption) *grpcBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &grpcBackend{name: name, addr: lis.Addr().String(), srv: grpc.NewServer(sopts...)}
	b.pushback.Store(-2)
	testgrpc.RegisterTestServiceServer(b.srv, b)
	go func() { _ = b.srv.Serve(lis) }()
	t.Cleanup(b.srv.Stop)
	return b
}

func (b *grpcBackend) set(m grpcMode) { b.mode.Store(int64(m)) }

func (b *grpcBackend) endpoint() discovery.Endpoint { return discovery.Endpoint{Addr: b.addr} }

func (b *grpcBackend) arrive(ctx context.Context) {
	b.calls.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.arrivals = append(b.arrivals, time.Now())
	if d, ok := ctx.Deadline(); ok {
		b.deadlines = append(b.deadlines, time.Until(d))
	} else {
		b.noDeadline++
	}
}

func (b *grpcBackend) lastDeadline() (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.deadlines) == 0 {
		return 0, false
	}
	return b.deadlines[len(b.deadlines)-1], true
}

func (b *grpcBackend) withPushback(ctx context.Context) {
	if ms := b.pushback.Load(); ms != -2 {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", strconv.FormatInt(ms, 10)))
	}
}

func (b *grpcBackend) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.arrive(ctx)
	switch grpcMode(b.mode.Load()) {
	case modeUnavailable:
		b.withPushback(ctx)
		return nil, status.Error(codes.Unavailable, b.name+" unavailable")
	case modeSlow:
		select {
		case <-time.After(time.Duration(b.delay.Load())):
		case <-ctx.Done():
			b.cancelled.Add(1)
			return nil, ctx.Err()
		}
	case modeHang:
		<-ctx.Done()
		b.cancelled.Add(1)
		return nil, ctx.Err()
	case modeExhausted:
		b.withPushback(ctx)
		return nil, status.Error(codes.ResourceExhausted, b.name+" exhausted")
	case modeCode:
		return nil, status.Error(codes.Code(b.code.Load()), b.name+" says no")
	case modeHeadersThenUnavailable:
		_ = grpc.SendHeader(ctx, metadata.Pairs("x-backend", b.name))
		return nil, status.Error(codes.Unavailable, b.name+" unavailable after headers")
	}
	b.handled.Add(1)
	return &testgrpc.SimpleResponse{Username: b.name}, nil
}

// FullDuplexCall answers each request message with one whose body is the backend's name, a
// colon and the request's body. modeUnavailable fails the stream after reading the first
// message (before answering it), modeHeadersThenUnavailable sends headers first, and
// modeStreamFailAfterFirstMsg answers the first message, then fails.
func (b *grpcBackend) FullDuplexCall(ss testgrpc.TestService_FullDuplexCallServer) error {
	b.arrive(ss.Context())
	mode := grpcMode(b.mode.Load())
	for n := 0; ; n++ {
		req, err := ss.Recv()
		if err == io.EOF {
			b.handled.Add(1)
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case mode == modeUnavailable:
			return status.Error(codes.Unavailable, b.name+" unavailable")
		case mode == modeHeadersThenUnavailable:
			_ = ss.SendHeader(metadata.Pairs("x-backend", b.name))
			return status.Error(codes.Unavailable, b.name+" unavailable after headers")
		case mode == modeStreamFailAfterFirstMsg && n > 0:
			return status.Error(codes.Unavailable, b.name+" failed mid-stream")
		}
		body := append([]byte(b.name+":"), req.GetPayload().GetBody()...)
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

func (b *grpcBackend) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, ss testgrpc.TestService_StreamingOutputCallServer) error {
	b.arrive(ss.Context())
	switch grpcMode(b.mode.Load()) {
	case modeUnavailable:
		return status.Error(codes.Unavailable, b.name+" unavailable")
	case modeStreamFailAfterFirstMsg:
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(b.name)}}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, b.name+" failed mid-stream")
	}
	for range max(1, len(req.GetResponseParameters())) {
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(b.name)}}); err != nil {
			return err
		}
	}
	b.handled.Add(1)
	return nil
}

// grpcFixture is a proxyless gRPC client of the service "svc" over backends.
type grpcFixture struct {
	static   *discovery.Static
	gc       *middleware.GRPCClient
	conn     *grpc.ClientConn
	client   testgrpc.TestServiceClient
	backends []*grpcBackend
	// warmups counts the calls waitReady made. Each went through the interceptors, so each
	// paid its share into the retry budget.
	warmups int
}

// serverOptions returns the server options of NewGRPCServer(opts...).
func serverOptions(t testing.TB, opts ...middleware.GRPCServerOption) []grpc.ServerOption {
	t.Helper()
	s, err := middleware.NewGRPCServer(opts...)
	require.NoError(t, err)
	return s.ServerOptions()
}

// newGRPCClient returns NewGRPCClient(r, opts...), closed when the test ends.
func newGRPCClient(t testing.TB, r discovery.Resolver, opts ...middleware.GRPCClientOption) *middleware.GRPCClient {
	t.Helper()
	c, err := middleware.NewGRPCClient(r, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	return c
}

// dialOptions returns the dial options of NewGRPCClient(r, opts...).
func dialOptions(t testing.TB, r discovery.Resolver, opts ...middleware.GRPCClientOption) []grpc.DialOption {
	t.Helper()
	return newGRPCClient(t, r, opts...).DialOptions()
}

func newGRPCFixture(t testing.TB, backends []*grpcBackend, opts ...middleware.GRPCClientOption) *grpcFixture {
	t.Helper()
	return newGRPCFixtureWith(t, backends, nil, opts...)
}

// newGRPCFixtureWith is newGRPCFixture with more dial options, added after the client's (so
// that an interceptor among them runs inside ours, once per attempt).
func newGRPCFixtureWith(t testing.TB, backends []*grpcBackend, extra []grpc.DialOption, opts ...middleware.GRPCClientOption) *grpcFixture {
	t.Helper()
	eps := make([]discovery.Endpoint, len(backends))
	for i, b := range backends {
		eps[i] = b.endpoint()
	}
	// "other" is known without endpoints, so that routes may name it (a route to a service
	// the resolver does not know is refused when the client is made).
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps, "other": nil})
	opts = append([]middleware.GRPCClientOption{middleware.WithGRPCStatsHandler(nil)}, opts...)
	f := &grpcFixture{static: static, backends: backends}
	f.gc = newGRPCClient(t, static, opts...)
	dopts := append(f.gc.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	dopts = append(dopts, extra...)
	conn, err := grpc.NewClient("proxyless:///svc", dopts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	f.conn, f.client = conn, testgrpc.NewTestServiceClient(conn)
	return f
}

func (f *grpcFixture) call(t testing.TB, timeout time.Duration) (*testgrpc.SimpleResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
}

// waitReady makes calls until every backend has answered one, so that the channel has a
// connection to each (the balancer picks only among READY endpoints).
func (f *grpcFixture) waitReady(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		f.conn.Connect()
		all := true
		for _, b := range f.backends {
			if b.calls.Load() == 0 {
				all = false
			}
		}
		if all {
			for _, b := range f.backends {
				b.reset()
			}
			return
		}
		_, _ = f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		f.warmups++
		require.NoError(t, ctx.Err(), "backends never all answered")
	}
}

func (b *grpcBackend) reset() {
	b.calls.Store(0)
	b.handled.Store(0)
	b.cancelled.Store(0)
	b.mu.Lock()
	b.deadlines, b.arrivals, b.noDeadline = nil, nil, 0
	b.mu.Unlock()
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// attemptLog is a unary client interceptor that runs inside DialOptions' interceptors, once
// per attempt, and records the endpoint the picker chose for each and how it ended.
type attemptLog struct {
	mu       sync.Mutex
	attempts []loggedAttempt
}

type loggedAttempt struct {
	endpoint string
	err      error
}

func (l *attemptLog) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	ep := ""
	if a := grpcbalancer.FromContext(ctx); a != nil {
		ep = a.Endpoint()
	}
	l.mu.Lock()
	l.attempts = append(l.attempts, loggedAttempt{endpoint: ep, err: err})
	l.mu.Unlock()
	return err
}

// mark returns the number of attempts logged so far.
func (l *attemptLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.attempts)
}

// since returns how many of the attempts logged after mark went to addr, and how many of
// those failed.
func (l *attemptLog) since(mark int, addr string) (picked, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.attempts[mark:] {
		if a.endpoint == addr {
			picked++
			if a.err != nil {
				failed++
			}
		}
	}
	return picked, failed
}
