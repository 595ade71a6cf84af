package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
)

// This file runs grpc-go's own interoperability cases (package interop) against a proxyless
// client and a proxyless server, and tests what gRPC promises about one call however many
// attempts proxyless makes of it. The two functions below are the only calls into
// middleware's constructors: adapt them, and nothing else, when those change.

// proxylessDialOptions returns the dial options of a proxyless gRPC client of the services r
// knows. Transport credentials are the caller's to add.
func proxylessDialOptions(t testing.TB, r discovery.Resolver, opts ...middleware.GRPCClientOption) []grpc.DialOption {
	t.Helper()
	return newGRPCClient(t, r, opts...).DialOptions()
}

// proxylessServerOptions returns the server options of a proxyless gRPC server.
func proxylessServerOptions(t testing.TB, opts ...middleware.GRPCServerOption) []grpc.ServerOption {
	t.Helper()
	s, err := middleware.NewGRPCServer(opts...)
	require.NoError(t, err)
	return s.ServerOptions()
}

// The interop cases report a failure with grpclog's Fatal, which ends the process. The logger
// installed here (before any test runs, so that no gRPC goroutine reads the logger while it is
// replaced) panics with an interopFatal instead, which runInteropCase turns into a failure of
// the case's subtest. Everything else goes where gRPC's default logger sends it.
type interopFatal struct{ msg string }

type interopLogger struct{ grpclog.LoggerV2 }

func (interopLogger) Fatal(args ...any)   { panic(interopFatal{fmt.Sprint(args...)}) }
func (interopLogger) Fatalln(args ...any) { panic(interopFatal{fmt.Sprintln(args...)}) }
func (interopLogger) Fatalf(format string, args ...any) {
	panic(interopFatal{fmt.Sprintf(format, args...)})
}

func init() {
	info, warning := io.Discard, io.Discard
	switch os.Getenv("GRPC_GO_LOG_SEVERITY_LEVEL") {
	case "info", "INFO":
		info, warning = os.Stderr, os.Stderr
	case "warning", "WARNING":
		warning = os.Stderr
	}
	grpclog.SetLoggerV2(interopLogger{grpclog.NewLoggerV2(info, warning, os.Stderr)})
}

// runInteropCase runs one interop case on the test's goroutine, returning the message it
// failed with, if it did.
func runInteropCase(do func()) (failure string, failed bool) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(interopFatal)
			if !ok {
				panic(r)
			}
			failure, failed = f.msg, true
		}
	}()
	do()
	return "", false
}

// interopBackend is a real gRPC server on loopback serving interop.NewTestServer, which
// counts the unary calls and streams that reach its interceptors (the counting ones are
// chained first). Calls to a service or method it does not serve reach none.
type interopBackend struct {
	addr    string
	unary   atomic.Int64
	streams atomic.Int64
}

func startInteropBackend(t testing.TB, sopts ...grpc.ServerOption) *interopBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &interopBackend{addr: lis.Addr().String()}
	sopts = append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			b.unary.Add(1)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			b.streams.Add(1)
			return h(srv, ss)
		}),
	}, sopts...)
	srv := grpc.NewServer(sopts...)
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return b
}

// interopClient is a channel to the interop backends, and the means to open more like it.
type interopClient struct {
	t        testing.TB
	target   string
	dopts    func() []grpc.DialOption // a fresh set for each channel
	conn     *grpc.ClientConn
	attempts atomic.Int64 // unary attempts, counted by an interceptor inside proxyless's
}

func newInteropClient(t testing.TB, target string, dopts func() []grpc.DialOption) *interopClient {
	t.Helper()
	c := &interopClient{t: t, target: target, dopts: dopts}
	conn, err := c.dial()
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c.conn = conn
	return c
}

func (c *interopClient) dial() (*grpc.ClientConn, error) {
	dopts := append(c.dopts(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Chained after proxyless's interceptors: it runs once per attempt.
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.attempts.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	return grpc.NewClient(c.target, dopts...)
}

// freshChannel is a SoakTestConfig.ChannelForTest that dials a new channel each time.
func (c *interopClient) freshChannel() (*grpc.ClientConn, func()) {
	conn, err := c.dial()
	if err != nil {
		c.t.Errorf("dial %s: %v", c.target, err)
		return c.conn, func() {}
	}
	return conn, func() { _ = conn.Close() }
}

// dialProxylessInterop returns a proxyless client of the service "interop" served by
// backends, found through a discovery.Static.
func dialProxylessInterop(t testing.TB, backends []*interopBackend, opts ...middleware.GRPCClientOption) *interopClient {
	t.Helper()
	eps := make([]discovery.Endpoint, len(backends))
	for i, b := range backends {
		eps[i] = discovery.Endpoint{Addr: b.addr}
	}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"interop": eps})
	return newInteropClient(t, "proxyless:///interop", func() []grpc.DialOption {
		return proxylessDialOptions(t, static, opts...)
	})
}

// interopCounts is what the attempt counter and the backends saw.
type interopCounts struct{ attempts, unary, streams int64 }

func (c *interopClient) counts(backends []*interopBackend) interopCounts {
	n := interopCounts{attempts: c.attempts.Load()}
	for _, b := range backends {
		n.unary += b.unary.Load()
		n.streams += b.streams.Load()
	}
	return n
}

func (n interopCounts) sub(m interopCounts) interopCounts {
	return interopCounts{n.attempts - m.attempts, n.unary - m.unary, n.streams - m.streams}
}

// interopCase is one of grpc-go's interop cases; calls is how many unary calls it makes.
type interopCase struct {
	name  string
	calls int64
	run   func(ctx context.Context, c *interopClient)
	// grpcRace, when set, is the failure message of a race that gRPC itself loses at times,
	// whatever the interceptors: the case is then run again, twice at most.
	grpcRace string
}

// cancelAfterBeginRace: DoCancelAfterBegin cancels a client stream, then half-closes it and
// expects CANCELED. When the server's answer to the half-close reaches the client before the
// client has acted on the cancellation, gRPC returns that answer, OK. Measured here under
// -race, a call every 10 ms: a plain grpc-go client with grpc.WithDisableRetry (as proxyless
// must run it: its interceptors retry) loses 2 in 600, a proxyless client without a stats
// handler 1 in 600, with its default stats handler 7 in 600; grpc-go with its own retries
// on, 0 in 600.
const cancelAfterBeginRace = "got error code 0, want 1"

// Soak cases are bounded: soakIterations small RPCs over two workers, within 10 s.
const soakIterations = 20

func soak(ctx context.Context, c *interopClient, channel func() (*grpc.ClientConn, func())) {
	interop.DoSoakTest(ctx, interop.SoakTestConfig{
		RequestSize:                      2 << 10,
		ResponseSize:                     4 << 10,
		PerIterationMaxAcceptableLatency: 2 * time.Second,
		OverallTimeout:                   10 * time.Second,
		ServerAddr:                       c.target,
		NumWorkers:                       2,
		Iterations:                       soakIterations,
		MaxFailures:                      0,
		ChannelForTest:                   channel,
	})
}

var interopCases = []interopCase{
	{"EmptyUnary", 1, func(ctx context.Context, c *interopClient) {
		interop.DoEmptyUnaryCall(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"LargeUnary", 1, func(ctx context.Context, c *interopClient) {
		interop.DoLargeUnaryCall(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"ClientStreaming", 0, func(ctx context.Context, c *interopClient) {
		interop.DoClientStreaming(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"ServerStreaming", 0, func(ctx context.Context, c *interopClient) {
		interop.DoServerStreaming(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"PingPong", 0, func(ctx context.Context, c *interopClient) {
		interop.DoPingPong(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"EmptyStream", 0, func(ctx context.Context, c *interopClient) {
		interop.DoEmptyStream(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"TimeoutOnSleepingServer", 0, func(ctx context.Context, c *interopClient) {
		interop.DoTimeoutOnSleepingServer(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"CancelAfterBegin", 0, func(ctx context.Context, c *interopClient) {
		interop.DoCancelAfterBegin(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, cancelAfterBeginRace},
	{"CancelAfterFirstResponse", 0, func(ctx context.Context, c *interopClient) {
		interop.DoCancelAfterFirstResponse(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"CustomMetadata", 1, func(ctx context.Context, c *interopClient) {
		interop.DoCustomMetadata(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"StatusCodeAndMessage", 1, func(ctx context.Context, c *interopClient) {
		interop.DoStatusCodeAndMessage(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"SpecialStatusMessage", 1, func(ctx context.Context, c *interopClient) {
		interop.DoSpecialStatusMessage(ctx, testgrpc.NewTestServiceClient(c.conn))
	}, ""},
	{"UnimplementedService", 1, func(ctx context.Context, c *interopClient) {
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(c.conn))
	}, ""},
	{"UnimplementedMethod", 1, func(ctx context.Context, c *interopClient) {
		interop.DoUnimplementedMethod(ctx, c.conn)
	}, ""},
	{"RPCSoak", soakIterations, func(ctx context.Context, c *interopClient) {
		soak(ctx, c, func() (*grpc.ClientConn, func()) { return c.conn, func() {} })
	}, ""},
	{"ChannelSoak", soakIterations, func(ctx context.Context, c *interopClient) {
		soak(ctx, c, c.freshChannel)
	}, ""},
}

// runInteropCases runs every case on c, one subtest each, calling check (when not nil) with
// what each case's calls caused. It returns the totals.
func runInteropCases(t *testing.T, c *interopClient, backends []*interopBackend, check func(t *testing.T, ic interopCase, d interopCounts)) (calls int64, total interopCounts) {
	t.Helper()
	start := c.counts(backends)
	for _, ic := range interopCases {
		calls += ic.calls
		t.Run(ic.name, func(t *testing.T) {
			before := c.counts(backends)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for try := 1; ; try++ {
				msg, failed := runInteropCase(func() { ic.run(ctx, c) })
				if !failed {
					break
				}
				if ic.grpcRace == "" || !strings.Contains(msg, ic.grpcRace) || try == 3 {
					t.Fatalf("interop case failed: %s", msg)
				}
				t.Logf("try %d lost a race of gRPC's own: %s", try, msg)
			}
			// Attempts that outlive their call (the losers of hedged calls) end within this
			// pause: what they do is then reported in the case's subtest.
			time.Sleep(20 * time.Millisecond)
			d := c.counts(backends).sub(before)
			t.Logf("%d unary calls: %d attempts; at the backends %d unary calls, %d streams", ic.calls, d.attempts, d.unary, d.streams)
			if check != nil {
				check(t, ic, d)
			}
		})
	}
	return calls, c.counts(backends).sub(start)
}

// interopRetryCodes are the retry codes of the "retries" configuration: UNKNOWN too, the
// code StatusCodeAndMessage and SpecialStatusMessage ask for, so that those cases are
// retried (on every backend) and must still end with the server's status and message.
var interopRetryCodes = middleware.WithGRPCRetryCodes(codes.Unavailable, codes.Unknown)

// interopRetried says which cases the "retries" configuration retries: each of their calls
// is made 1 + MaxRetries (2 by default) times, on the three backends.
func interopRetried(name string) bool {
	return name == "StatusCodeAndMessage" || name == "SpecialStatusMessage"
}

// TestInteropProxylessClient runs grpc-go's interop cases with a proxyless client, in three
// configurations, against three real gRPC servers found through a discovery.Static.
func TestInteropProxylessClient(t *testing.T) {
	backends := []*interopBackend{startInteropBackend(t), startInteropBackend(t), startInteropBackend(t)}

	t.Run("defaults", func(t *testing.T) {
		c := dialProxylessInterop(t, backends)
		runInteropCases(t, c, backends, func(t *testing.T, ic interopCase, d interopCounts) {
			assert.Equal(t, ic.calls, d.attempts, "one attempt per call")
		})
	})

	t.Run("retries", func(t *testing.T) {
		c := dialProxylessInterop(t, backends,
			middleware.WithRetry(middleware.RetryPolicy{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, BudgetRatio: 1, MinRetriesPerSecond: 1000}),
			interopRetryCodes)
		runInteropCases(t, c, backends, func(t *testing.T, ic interopCase, d interopCounts) {
			if !interopRetried(ic.name) {
				assert.Equal(t, ic.calls, d.attempts, "one attempt per call")
				return
			}
			assert.Equal(t, 3*ic.calls, d.attempts, "each call retried twice")
			assert.Equal(t, 3*ic.calls, d.unary, "each attempt reached a backend")
			if ic.name == "StatusCodeAndMessage" {
				assert.EqualValues(t, 3, d.streams, "the stream retried twice, replaying what it sent")
			}
		})
	})

	t.Run("hedging", func(t *testing.T) {
		// A delay far below a round trip: every call is hedged, to three backends.
		c := dialProxylessInterop(t, backends,
			middleware.WithHedge(middleware.HedgePolicy{Delay: time.Microsecond, MaxHedges: 2}),
			middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: 1, MinRetriesPerSecond: 1e6}))
		calls, total := runInteropCases(t, c, backends, func(t *testing.T, ic interopCase, d interopCounts) {
			if ic.calls >= soakIterations {
				assert.Greater(t, d.attempts, ic.calls, "hedges were sent")
			}
		})
		assert.Greater(t, total.attempts, calls, "hedges were sent")
		assert.Greater(t, total.unary, calls, "hedges reached the backends")
	})
}

// TestInteropProxylessServer runs grpc-go's interop cases against gRPC servers built with
// proxyless's server options: with a plain gRPC client, with the defaults and with limits that
// admit everything; and with a proxyless client that hedges every call.
func TestInteropProxylessServer(t *testing.T) {
	plain := func(t *testing.T, b *interopBackend) *interopClient {
		return newInteropClient(t, "passthrough:///"+b.addr, func() []grpc.DialOption { return nil })
	}

	t.Run("defaults", func(t *testing.T) {
		b := startInteropBackend(t, proxylessServerOptions(t)...)
		c := plain(t, b)
		runInteropCases(t, c, []*interopBackend{b}, nil)
	})

	t.Run("limits", func(t *testing.T) {
		lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: ratelimit.Quota{Rate: 1e4, Burst: 1e4}})
		require.NoError(t, err)
		bh, err := overload.NewBulkhead(64, time.Second)
		require.NoError(t, err)
		byIP, err := middleware.KeyByClientIP(ratelimit.ClientIPConfig{})
		require.NoError(t, err)
		b := startInteropBackend(t, proxylessServerOptions(t,
			middleware.WithServerRateLimit(lim, byIP),
			middleware.WithLoadShedding(bh))...)
		c := plain(t, b)
		runInteropCases(t, c, []*interopBackend{b}, nil)
	})

	t.Run("proxyless client hedging", func(t *testing.T) {
		var backends []*interopBackend
		for range 3 {
			backends = append(backends, startInteropBackend(t, proxylessServerOptions(t)...))
		}
		c := dialProxylessInterop(t, backends,
			middleware.WithHedge(middleware.HedgePolicy{Delay: time.Microsecond, MaxHedges: 2}),
			middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: 1, MinRetriesPerSecond: 1e6}))
		calls, total := runInteropCases(t, c, backends, nil)
		assert.Greater(t, total.attempts, calls, "hedges were sent")
	})
}

// The tests below check, each for one kind of attempt (retry, hedge), what gRPC promises about
// a call however many attempts proxyless makes of it.

// probeMode is what a probeBackend does with a call.
type probeMode int32

const (
	probeOK          probeMode = iota // answer at once
	probeSlow                         // answer after the backend's delay
	probeHang                         // wait for the call to be cancelled
	probeUnavailable                  // UNAVAILABLE before the handler, with the pushback if set
)

// probeLog records, in arrival order across the backends of a fixture, the
// grpc-previous-rpc-attempts metadata of each call ("" when absent).
type probeLog struct {
	mu       sync.Mutex
	previous []string
}

func (l *probeLog) add(ctx context.Context) {
	v := ""
	if vs := metadata.ValueFromIncomingContext(ctx, "grpc-previous-rpc-attempts"); len(vs) > 0 {
		v = vs[0]
	}
	l.mu.Lock()
	l.previous = append(l.previous, v)
	l.mu.Unlock()
}

func (l *probeLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.previous)
}

// probeBackend is a gRPC server whose answers carry its name in a header, a trailer and the
// response, and whose behaviour the test sets.
type probeBackend struct {
	testgrpc.UnimplementedTestServiceServer
	name, addr string
	log        *probeLog
	mode       atomic.Int32
	delay      atomic.Int64 // probeSlow
	pushbackMS atomic.Int64 // probeUnavailable; 0: none
	arrivals   atomic.Int64 // calls and streams
	warmups    atomic.Int64 // calls marked probeWarmup
	cancelled  atomic.Int64 // calls that ended with their context while the handler waited
}

func startProbeBackend(t testing.TB, name string, log *probeLog) *probeBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &probeBackend{name: name, addr: lis.Addr().String(), log: log}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := b.arrive(ctx, func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) }); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := b.arrive(ss.Context(), ss.SetTrailer); err != nil {
				return err
			}
			return h(srv, ss)
		}))
	testgrpc.RegisterTestServiceServer(srv, b)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return b
}

func (b *probeBackend) set(m probeMode) { b.mode.Store(int32(m)) }

// probeWarmup marks the calls a probeFixture makes to connect to every backend: backends
// neither count nor log them, nor their hedges, which may arrive after the fixture is ready.
const probeWarmup = "x-probe-warmup"

func (b *probeBackend) arrive(ctx context.Context, setTrailer func(metadata.MD)) error {
	if len(metadata.ValueFromIncomingContext(ctx, probeWarmup)) > 0 {
		b.warmups.Add(1)
		return nil
	}
	b.arrivals.Add(1)
	b.log.add(ctx)
	if probeMode(b.mode.Load()) != probeUnavailable {
		return nil
	}
	if ms := b.pushbackMS.Load(); ms != 0 {
		setTrailer(metadata.Pairs("grpc-retry-pushback-ms", strconv.FormatInt(ms, 10)))
	}
	return status.Error(codes.Unavailable, b.name+" unavailable")
}

// wait holds a call as the backend's mode says, and reports whether it may be answered.
func (b *probeBackend) wait(ctx context.Context) error {
	var d <-chan time.Time
	switch probeMode(b.mode.Load()) {
	case probeSlow:
		tm := time.NewTimer(time.Duration(b.delay.Load()))
		defer tm.Stop()
		d = tm.C
	case probeHang:
	default:
		return nil
	}
	select {
	case <-d:
		return nil
	case <-ctx.Done():
		b.cancelled.Add(1)
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (b *probeBackend) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	_ = grpc.SendHeader(ctx, metadata.Pairs("x-backend", b.name))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-backend", b.name))
	if err := b.wait(ctx); err != nil {
		return nil, err
	}
	return &testgrpc.SimpleResponse{Username: b.name}, nil
}

// FullDuplexCall answers each message with the backend's name.
func (b *probeBackend) FullDuplexCall(ss testgrpc.TestService_FullDuplexCallServer) error {
	if err := b.wait(ss.Context()); err != nil {
		return err
	}
	for {
		if _, err := ss.Recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(b.name)}}); err != nil {
			return err
		}
	}
}

// probeFixture is a proxyless client, balancing round robin without breakers or ejection,
// of probe backends named "b0", "b1"...
type probeFixture struct {
	backends []*probeBackend
	log      *probeLog
	client   testgrpc.TestServiceClient
}

// probeRetry retries at once, within a budget that never runs dry.
var probeRetry = middleware.WithRetry(middleware.RetryPolicy{BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond, BudgetRatio: 1, MinRetriesPerSecond: 1e6})

func newProbeFixture(t *testing.T, n int, opts ...middleware.GRPCClientOption) *probeFixture {
	t.Helper()
	f := &probeFixture{log: &probeLog{}}
	eps := make([]discovery.Endpoint, n)
	for i := range n {
		b := startProbeBackend(t, "b"+strconv.Itoa(i), f.log)
		f.backends = append(f.backends, b)
		eps[i] = discovery.Endpoint{Addr: b.addr}
	}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"probe": eps})
	opts = append([]middleware.GRPCClientOption{
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: balancer.OutlierConfig{Disabled: true}}),
		middleware.WithoutBreaker(),
	}, opts...)
	dopts := append(proxylessDialOptions(t, static, opts...), grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient("proxyless:///probe", dopts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	f.client = testgrpc.NewTestServiceClient(conn)

	// Call until every backend has answered, so that the channel is connected to each.
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), probeWarmup, "1"), 10*time.Second)
	defer cancel()
	for !f.allWarm() {
		_, _ = f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		require.NoError(t, ctx.Err(), "the backends never all answered")
	}
	return f
}

func (f *probeFixture) allWarm() bool {
	for _, b := range f.backends {
		if b.warmups.Load() == 0 {
			return false
		}
	}
	return true
}

func (f *probeFixture) arrivals() (n int64) {
	for _, b := range f.backends {
		n += b.arrivals.Load()
	}
	return n
}

// duplex opens a bidirectional stream, sends one message, closes its side and reads to the
// end, returning the stream's error (nil at io.EOF).
func (f *probeFixture) duplex(ctx context.Context, opts ...grpc.CallOption) error {
	s, err := f.client.FullDuplexCall(ctx, opts...)
	if err != nil {
		return err
	}
	if err := s.Send(&testgrpc.StreamingOutputCallRequest{}); err != nil && err != io.EOF {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		if _, err := s.Recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// waitFor polls cond until it holds, failing t after 5 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestGRPCCallOptionsWrittenOnce checks that the call options a caller reads after the call
// (grpc.Header, grpc.Trailer, grpc.Peer) hold the answer's and are not written after the call
// returned, and that grpc.OnFinish runs once per call ("only called once by gRPC"), however
// many attempts the call took.
func TestGRPCCallOptionsWrittenOnce(t *testing.T) {
	// settle is longer than a cancelled attempt takes to end on loopback: what is still
	// written after it would be written by an attempt that ended after its call.
	const settle = 100 * time.Millisecond

	t.Run("hedged unary: Header, Trailer, Peer, OnFinish", func(t *testing.T) {
		f := newProbeFixture(t, 2, middleware.WithHedge(middleware.HedgePolicy{Delay: time.Millisecond, MaxHedges: 1}), probeRetry)
		slow, fast := f.backends[0], f.backends[1]
		slow.delay.Store(int64(300 * time.Millisecond))
		slow.set(probeSlow)
		type options struct {
			header, trailer metadata.MD
			peer            peer.Peer
			finished        atomic.Int32
		}
		check := func(i int, o *options) {
			t.Helper()
			assert.Equal(t, []string{fast.name}, o.header.Get("x-backend"), "call %d: grpc.Header holds the winner's", i)
			assert.Equal(t, []string{fast.name}, o.trailer.Get("x-backend"), "call %d: grpc.Trailer holds the winner's", i)
			if assert.NotNil(t, o.peer.Addr, "call %d: grpc.Peer was set", i) {
				assert.Equal(t, fast.addr, o.peer.Addr.String(), "call %d: grpc.Peer is the winner's", i)
			}
		}
		const n = 6
		calls := make([]*options, n)
		for i := range calls {
			o := &options{}
			calls[i] = o
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{},
				grpc.Header(&o.header), grpc.Trailer(&o.trailer), grpc.Peer(&o.peer),
				grpc.OnFinish(func(error) { o.finished.Add(1) }))
			cancel()
			require.NoError(t, err)
			require.Equal(t, fast.name, resp.GetUsername(), "the fast backend won")
			check(i, o) // as a caller reads them: at once
		}
		assert.Positive(t, slow.arrivals.Load(), "some calls went first to the slow backend, and were hedged")
		time.Sleep(settle)
		for i, o := range calls {
			check(i, o)
			assert.EqualValues(t, 1, o.finished.Load(), "call %d: grpc.OnFinish ran once", i)
		}
	})

	t.Run("retried unary: OnFinish", func(t *testing.T) {
		f := newProbeFixture(t, 2, probeRetry)
		f.backends[0].set(probeUnavailable)
		const n = 4
		finished := make([]atomic.Int32, n)
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.OnFinish(func(error) { finished[i].Add(1) }))
			cancel()
			require.NoError(t, err)
		}
		assert.Positive(t, f.backends[0].arrivals.Load(), "some calls were retried")
		time.Sleep(settle)
		for i := range finished {
			assert.EqualValues(t, 1, finished[i].Load(), "call %d: grpc.OnFinish ran once", i)
		}
	})

	t.Run("retried stream: OnFinish", func(t *testing.T) {
		f := newProbeFixture(t, 2, probeRetry)
		f.backends[0].set(probeUnavailable)
		const n = 4
		finished := make([]atomic.Int32, n)
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := f.duplex(ctx, grpc.OnFinish(func(error) { finished[i].Add(1) }))
			cancel()
			require.NoError(t, err)
		}
		assert.Positive(t, f.backends[0].arrivals.Load(), "some streams were retried")
		time.Sleep(settle)
		for i := range finished {
			assert.EqualValues(t, 1, finished[i].Load(), "stream %d: grpc.OnFinish ran once", i)
		}
	})
}

// TestGRPCCancelReturnsCanceled cancels calls in each phase of their life and expects
// CANCELED, as gRPC's own retries return (they end their backoff with the context's status).
func TestGRPCCancelReturnsCanceled(t *testing.T) {
	// cancelWhen runs call, cancels its context once reached holds (and the client had a
	// moment to act on it), and returns the call's error.
	cancelWhen := func(t *testing.T, call func(ctx context.Context) error, reached func() bool) error {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- call(ctx) }()
		waitFor(t, reached, "the call reached the phase")
		time.Sleep(50 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("the call did not end when cancelled")
			return nil
		}
	}
	unary := func(f *probeFixture) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			return err
		}
	}
	hedge := middleware.WithHedge(middleware.HedgePolicy{Delay: time.Millisecond, MaxHedges: 1})
	// unavailable makes b refuse every call, asking for a retry after 1 s.
	unavailable := func(b *probeBackend) {
		b.pushbackMS.Store(1000)
		b.set(probeUnavailable)
	}

	t.Run("unary before the call", func(t *testing.T) {
		f := newProbeFixture(t, 2, probeRetry)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.Equal(t, codes.Canceled, status.Code(unary(f)(ctx)))
		assert.Zero(t, f.arrivals())
	})

	t.Run("unary in flight", func(t *testing.T) {
		f := newProbeFixture(t, 2, probeRetry)
		for _, b := range f.backends {
			b.set(probeHang)
		}
		err := cancelWhen(t, unary(f), func() bool { return f.arrivals() == 1 })
		assert.Equal(t, codes.Canceled, status.Code(err), "got %v", err)
	})

	t.Run("unary in retry backoff", func(t *testing.T) {
		f := newProbeFixture(t, 2, probeRetry)
		for _, b := range f.backends {
			unavailable(b)
		}
		err := cancelWhen(t, unary(f), func() bool { return f.arrivals() == 1 })
		assert.Equal(t, codes.Canceled, status.Code(err), "got %v", err)
		assert.EqualValues(t, 1, f.arrivals(), "cancelled before the retry")
	})

	t.Run("hedged unary in flight", func(t *testing.T) {
		f := newProbeFixture(t, 2, hedge, probeRetry)
		for _, b := range f.backends {
			b.set(probeHang)
		}
		err := cancelWhen(t, unary(f), func() bool { return f.arrivals() == 2 })
		assert.Equal(t, codes.Canceled, status.Code(err), "got %v", err)
	})

	t.Run("hedged unary after a failed attempt", func(t *testing.T) {
		f := newProbeFixture(t, 2, hedge, probeRetry)
		unavailable(f.backends[0])
		f.backends[1].set(probeHang)
		err := cancelWhen(t, unary(f), func() bool { return f.backends[0].arrivals.Load() == 1 })
		assert.Equal(t, codes.Canceled, status.Code(err), "got %v", err)
	})

	t.Run("stream before the call", func(t *testing.T) {
		f := newProbeFixture(t, 2, probeRetry)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.Equal(t, codes.Canceled, status.Code(f.duplex(ctx)))
		assert.Zero(t, f.arrivals())
	})

	t.Run("stream in flight", func(t *testing.T) {
		f := newProbeFixture(t, 2, probeRetry)
		for _, b := range f.backends {
			b.set(probeHang)
		}
		err := cancelWhen(t, func(ctx context.Context) error { return f.duplex(ctx) }, func() bool { return f.arrivals() == 1 })
		assert.Equal(t, codes.Canceled, status.Code(err), "got %v", err)
	})

	t.Run("stream in retry backoff", func(t *testing.T) {
		f := newProbeFixture(t, 2, probeRetry)
		for _, b := range f.backends {
			unavailable(b)
		}
		err := cancelWhen(t, func(ctx context.Context) error { return f.duplex(ctx) }, func() bool { return f.arrivals() == 1 })
		assert.Equal(t, codes.Canceled, status.Code(err), "got %v", err)
		assert.EqualValues(t, 1, f.arrivals(), "cancelled before the retry")
	})
}

// TestGRPCPreviousRPCAttempts checks that retries and hedges carry the
// grpc-previous-rpc-attempts metadata of gRFC A6 (the number of attempts before this one),
// and first attempts none.
func TestGRPCPreviousRPCAttempts(t *testing.T) {
	want := []string{"", "1", "2"}

	t.Run("unary retries", func(t *testing.T) {
		f := newProbeFixture(t, 3, probeRetry)
		for _, b := range f.backends {
			b.set(probeUnavailable)
		}
		_, err := f.client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Equal(t, want, f.log.get(), "grpc-previous-rpc-attempts of each attempt")
	})

	t.Run("stream retries", func(t *testing.T) {
		f := newProbeFixture(t, 3, probeRetry)
		for _, b := range f.backends {
			b.set(probeUnavailable)
		}
		err := f.duplex(context.Background())
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Equal(t, want, f.log.get(), "grpc-previous-rpc-attempts of each attempt")
	})

	t.Run("hedged unary", func(t *testing.T) {
		f := newProbeFixture(t, 3, middleware.WithHedge(middleware.HedgePolicy{Delay: 5 * time.Millisecond, MaxHedges: 2}), probeRetry)
		for _, b := range f.backends {
			b.delay.Store(int64(100 * time.Millisecond))
			b.set(probeSlow)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		require.NoError(t, err)
		got := f.log.get()
		slices.Sort(got)
		assert.Equal(t, want, got, "grpc-previous-rpc-attempts of each attempt")
	})
}
