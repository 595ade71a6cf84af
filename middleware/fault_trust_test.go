package middleware_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
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

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// The loopback callers of these tests are trusted by trustLoopback and by no one else.
var (
	trustLoopback  = route.TrustPrefixes(netip.MustParsePrefix("127.0.0.0/8"))
	trustElsewhere = route.TrustPrefixes(netip.MustParsePrefix("192.0.2.0/24"))
)

// faultServer is an HTTP server with WithServerFaults over a router of table, counting the
// requests that reach its handler.
type faultServer struct {
	router  *route.Router
	url     string
	handled atomic.Int64
	client  *http.Client
}

func newFaultServer(t *testing.T, table string, opts ...route.Option) *faultServer {
	t.Helper()
	cfg, err := route.ParseConfig([]byte(table))
	require.NoError(t, err)
	fs := &faultServer{}
	fs.router, err = route.NewRouter(cfg, opts...)
	require.NoError(t, err)
	h, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fs.handled.Add(1)
		_, _ = io.WriteString(w, "ok")
	}), middleware.WithServerFaults(fs.router))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	fs.url, fs.client = srv.URL, srv.Client()
	return fs
}

// get sends GET path with the host (if not empty) and header pairs; it returns the status
// and how long the answer took.
func (fs *faultServer) get(t *testing.T, host, path string, header ...string) (int, time.Duration) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, fs.url+path, nil)
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := fs.client.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

const callerFaults = `
routes:
  - name: by-header
    match: {headers: [{name: x-chaos, exact: abort}]}
    fault: {abort: {httpStatus: 503}}
  - name: by-cookie
    match: {headers: [{name: cookie, regex: ".*chaos=1.*"}]}
    fault: {abort: {httpStatus: 503}}
  - name: by-query
    match: {query: [{name: chaos, exact: "1"}]}
    fault: {abort: {httpStatus: 503}}
  - name: by-host
    match: {hosts: [chaos.test]}
    fault: {abort: {httpStatus: 503}}
  - name: slow-by-header
    match: {headers: [{name: x-chaos, exact: delay}]}
    fault: {delay: {fixed: 400ms}}
`

// hostileFaultRequests are the ways a caller asks for a caller-matched fault: an abort
// (host, path and header pairs for faultServer.get).
var hostileFaultRequests = []struct {
	name, host, path string
	header           []string
}{
	{"header", "", "/", []string{"X-Chaos", "abort"}},
	{"cookie", "", "/", []string{"Cookie", "a=b; chaos=1"}},
	{"query", "", "/?chaos=1", nil},
	{"host", "chaos.test", "/", nil},
}

func TestHostileCallerCannotTriggerServerFaults(t *testing.T) {
	fs := newFaultServer(t, callerFaults, route.WithTrust(trustElsewhere))
	const n = 5
	for _, hr := range hostileFaultRequests {
		for range n {
			code, _ := fs.get(t, hr.host, hr.path, hr.header...)
			assert.Equal(t, http.StatusOK, code, hr.name)
		}
	}
	assert.Equal(t, int64(n*len(hostileFaultRequests)), fs.handled.Load(), "every untrusted request reached the handler")
	for range n {
		code, took := fs.get(t, "", "/", "X-Chaos", "delay")
		assert.Equal(t, http.StatusOK, code)
		assert.Less(t, took, 400*time.Millisecond, "an untrusted caller is not delayed")
	}
	assert.Equal(t, int64(n*(len(hostileFaultRequests)+1)), fs.handled.Load())
}

func TestTrustedCallerTriggersServerFaults(t *testing.T) {
	fs := newFaultServer(t, callerFaults, route.WithTrust(trustLoopback))
	for _, hr := range hostileFaultRequests {
		code, _ := fs.get(t, hr.host, hr.path, hr.header...)
		assert.Equal(t, http.StatusServiceUnavailable, code, hr.name)
	}
	assert.Zero(t, fs.handled.Load(), "the trusted caller's aborted requests reached no handler")
	code, took := fs.get(t, "", "/", "X-Chaos", "delay")
	assert.Equal(t, http.StatusOK, code)
	assert.GreaterOrEqual(t, took, 400*time.Millisecond, "the trusted caller is delayed")
	code, _ = fs.get(t, "", "/")
	assert.Equal(t, http.StatusOK, code, "a request asking for no fault gets none")
	assert.Equal(t, int64(2), fs.handled.Load())
}

func TestFaultPercentZeroInjectsNothing(t *testing.T) {
	fs := newFaultServer(t, `
routes:
  - name: zero
    match: {path: {prefix: /zero}}
    fault: {abort: {percent: 0, httpStatus: 503}, delay: {percent: 0, fixed: 5s}}
  - name: all
    match: {path: {prefix: /all}}
    fault: {abort: {httpStatus: 503}}
`)
	const n = 50
	for range n {
		code, took := fs.get(t, "", "/zero")
		assert.Equal(t, http.StatusOK, code)
		require.Less(t, took, 5*time.Second, "percent 0: no request is delayed")
	}
	assert.Equal(t, int64(n), fs.handled.Load(), "percent 0: every request reached the handler")
	for range n {
		code, _ := fs.get(t, "", "/all")
		assert.Equal(t, http.StatusServiceUnavailable, code)
	}
	assert.Equal(t, int64(n), fs.handled.Load(), "an absent percent is 100: none of them reached it")
}

// concurrently runs n calls of fn at once and returns how long each took.
func concurrently(n int, fn func()) []time.Duration {
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			start := time.Now()
			fn()
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	return took
}

func countOver(took []time.Duration, d time.Duration) (n int) {
	for _, x := range took {
		if x >= d {
			n++
		}
	}
	return n
}

func TestServerFaultDelaysHeldAtOnceAreCapped(t *testing.T) {
	fs := newFaultServer(t, `
limits: {maxDelayedRequests: 2}
routes:
  - name: slow
    match: {path: {prefix: /slow}}
    fault: {delay: {fixed: 1500ms}}
`)
	took := concurrently(8, func() {
		code, _ := fs.get(t, "", "/slow")
		assert.Equal(t, http.StatusOK, code)
	})
	assert.Equal(t, 2, countOver(took, 1500*time.Millisecond), "only the cap's worth of requests was held: %v", took)
	st := fs.router.Table().FaultStats()
	assert.Equal(t, int64(6), st.Skipped, "the delays over the cap are counted")
	assert.Zero(t, st.Delayed, "no request is held any more")
	assert.Equal(t, int64(8), fs.handled.Load())
}

// countingServer counts the calls that reach its handlers.
type countingServer struct {
	testgrpc.UnimplementedTestServiceServer
	calls atomic.Int64
}

func (s *countingServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.calls.Add(1)
	return &testgrpc.SimpleResponse{}, nil
}

func (s *countingServer) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	s.calls.Add(1)
	return &testgrpc.Empty{}, nil
}

func startFaultGRPC(t *testing.T, table string, opts ...route.Option) (*countingServer, *route.Router, testgrpc.TestServiceClient) {
	t.Helper()
	cfg, err := route.ParseConfig([]byte(table))
	require.NoError(t, err)
	r, err := route.NewRouter(cfg, opts...)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(serverOptions(t, middleware.WithServerFaults(r))...)
	cs := &countingServer{}
	testgrpc.RegisterTestServiceServer(srv, cs)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return cs, r, dialGRPC(t, lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
}

const grpcCallerFaults = `
routes:
  - name: by-metadata
    match: {grpc: {service: grpc.testing.TestService, method: UnaryCall}, headers: [{name: x-chaos, exact: abort}]}
    fault: {abort: {grpcCode: 8}}
`

func TestHostileCallerCannotTriggerGRPCServerFaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trust   func(*route.Request) bool
		code    codes.Code
		reached int64
	}{
		{"untrusted", trustElsewhere, codes.OK, 5},
		{"trusted", trustLoopback, codes.ResourceExhausted, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, _, c := startFaultGRPC(t, grpcCallerFaults, route.WithTrust(tc.trust))
			for range 5 {
				ctx := metadata.AppendToOutgoingContext(ctxFor(t, 10*time.Second), "x-chaos", "abort")
				_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				assert.Equal(t, tc.code, status.Code(err))
			}
			assert.Equal(t, tc.reached, cs.calls.Load(), "calls that reached the server's handler")
		})
	}
}

func TestGRPCServerFaultDelaysHeldAtOnceAreCapped(t *testing.T) {
	cs, r, c := startFaultGRPC(t, `
limits: {maxDelayedRequests: 1}
routes:
  - name: slow
    match: {grpc: {service: grpc.testing.TestService, method: EmptyCall}}
    fault: {delay: {fixed: 1500ms}}
`)
	took := concurrently(4, func() {
		_, err := c.EmptyCall(ctxFor(t, 10*time.Second), &testgrpc.Empty{})
		assert.NoError(t, err)
	})
	assert.Equal(t, 1, countOver(took, 1500*time.Millisecond), "only the cap's worth of calls was held: %v", took)
	assert.Equal(t, int64(3), r.Table().FaultStats().Skipped)
	assert.Equal(t, int64(4), cs.calls.Load())
}
