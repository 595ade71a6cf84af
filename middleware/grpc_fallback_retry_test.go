package middleware_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// grpcCanaryRig is a GRPCClient whose route sends 30 % of the test service's calls and
// streams to a one-endpoint canary (subset version=v2 of "svc"), the rest to its stable side
// (version=v1), with the client's default breakers and retries.
type grpcCanaryRig struct {
	stable, canary *grpcBackend
	gc             *middleware.GRPCClient
	client         testgrpc.TestServiceClient
	mu             sync.Mutex
	events         []route.Event
}

func newGRPCCanaryRig(t *testing.T, analysis *route.Analysis, fallback ...bool) *grpcCanaryRig {
	t.Helper()
	r := &grpcCanaryRig{stable: newGRPCBackend(t, "stable"), canary: newGRPCBackend(t, "canary")}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {
		{Addr: r.stable.addr, Meta: map[string]string{"version": "v1"}},
		{Addr: r.canary.addr, Meta: map[string]string{"version": "v2"}},
	}})
	var fb *bool
	if len(fallback) > 0 {
		fb = &fallback[0]
	}
	router, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Name:     "canary",
		Fallback: fb,
		Match:    route.Match{GRPC: &route.GRPCMatch{Service: testService}},
		Canary: &route.Canary{
			Stable:   route.Destination{Service: "svc", Subset: route.Subset{Meta: map[string]string{"version": "v1"}}},
			Canary:   route.Destination{Service: "svc", Subset: route.Subset{Meta: map[string]string{"version": "v2"}}},
			Weight:   30,
			Analysis: analysis,
		},
	}}}, route.WithEvents(func(e route.Event) {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	}))
	require.NoError(t, err)
	r.gc = newGRPCClient(t, static, middleware.WithRoutes(router))
	conn, err := r.gc.NewClient("svc", grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	r.client = testgrpc.NewTestServiceClient(conn)
	return r
}

// unary makes one unary call and checks its answer.
func (r *grpcCanaryRig) unary() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err == nil && resp.GetUsername() == "" {
		err = fmt.Errorf("empty answer")
	}
	return err
}

// duplex opens a bidirectional stream, sends one message, reads its answer, which must echo
// it, and reads the stream to its end.
func (r *grpcCanaryRig) duplex() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := r.client.FullDuplexCall(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}); err != nil && err != io.EOF {
		return err
	}
	resp, err := st.Recv()
	if err != nil {
		return err
	}
	if !bytes.HasSuffix(resp.GetPayload().GetBody(), []byte(":ping")) {
		return fmt.Errorf("answer %q", resp.GetPayload().GetBody())
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	if _, err := st.Recv(); err != io.EOF {
		return fmt.Errorf("end of stream: %v", err)
	}
	return nil
}

// run makes n calls (streams when stream is set), one at a time, and returns how many
// succeeded; before call i, it calls before(i) when set.
func (r *grpcCanaryRig) run(t *testing.T, n int, stream bool, before func(i int)) int {
	t.Helper()
	ok := 0
	for i := range n {
		if before != nil {
			before(i)
		}
		call := r.unary
		if stream {
			call = r.duplex
		}
		if err := call(); err == nil {
			ok++
		} else if n-ok <= 3 {
			t.Log(err)
		}
	}
	return ok
}

// A broken one-endpoint canary at 30 %, which answers UNAVAILABLE or whose server stops, costs
// its callers nothing: each call or stream the canary fails is retried on the stable side (a
// retry has no other canary endpoint to go to), or sent there at once when the canary takes
// none (its breaker open, its server gone), before anything came back from the server.
// Every call counts once, and the servers saw exactly the attempts the client counted.
func TestGRPCBrokenCanaryRetriesFallBack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream bool
		stop   bool // stop the canary's server halfway, rather than have it answer UNAVAILABLE
	}{
		{"unary/unavailable", false, false},
		{"stream/unavailable", true, false},
		{"unary/stopped", false, true},
		{"stream/stopped", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newGRPCCanaryRig(t, nil)
			const n = 400
			before := func(int) {}
			if tc.stop {
				before = func(i int) {
					if i == n/2 {
						r.canary.srv.Stop()
					}
				}
			} else {
				r.canary.set(modeUnavailable)
			}
			ok := r.run(t, n, tc.stream, before)
			st := r.gc.Stats()
			t.Logf("ok %d/%d; stable %d/%d, canary %d/%d; %+v", ok, n,
				r.stable.handled.Load(), r.stable.calls.Load(), r.canary.handled.Load(), r.canary.calls.Load(), st)
			assert.GreaterOrEqual(t, ok, n*99/100)
			assert.EqualValues(t, n, st.Requests, "a fallen-back call is one call")
			assert.EqualValues(t, ok, r.stable.handled.Load()+r.canary.handled.Load(), "the servers answered every success")
			seen := r.stable.calls.Load() + r.canary.calls.Load()
			if tc.stop { // an attempt sent as the canary's server stopped never reached it, and was retried
				assert.LessOrEqual(t, st.Attempts-seen, st.Retries)
				assert.GreaterOrEqual(t, st.Attempts, seen)
			} else {
				assert.EqualValues(t, st.Attempts, seen, "the servers saw every attempt counted")
			}
			assert.Greater(t, st.Fallbacks, int64(n*30/100/4))
			assert.LessOrEqual(t, st.Fallbacks, r.stable.calls.Load(), "each fallback reached the stable side")
			if !tc.stop {
				assert.Zero(t, r.canary.handled.Load())
				assert.Positive(t, st.Retries, "the canary's failures were retried on the stable side")
			} else {
				assert.Positive(t, r.canary.handled.Load(), "the canary answered before it stopped")
			}
		})
	}
}

// The canary analysis counts a call or stream that fell back against the canary, once: it
// rolls a broken canary back although nearly every call succeeded for its caller.
func TestGRPCFallbackCountsAgainstCanary(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			r := newGRPCCanaryRig(t, &route.Analysis{Interval: route.Duration(time.Hour), MinRequests: 40, MaxErrorRateIncrease: 50})
			r.canary.set(modeUnavailable)
			const n = 400
			ok := r.run(t, n, stream, nil)
			r.mu.Lock()
			defer r.mu.Unlock()
			require.NotEmpty(t, r.events, "the analysis judged the canary")
			ev := r.events[0]
			t.Logf("ok %d/%d, stats %+v, event %+v", ok, n, r.gc.Stats(), ev)
			assert.GreaterOrEqual(t, ok, n*99/100)
			assert.Equal(t, route.EventRollback, ev.Kind)
			assert.GreaterOrEqual(t, ev.Canary.Failures, int64(20), "over half of 40 canary calls failed")
			assert.Greater(t, ev.Canary.Failures, int64(n-ok), "the fallbacks counted as canary failures")
			assert.LessOrEqual(t, ev.Canary.Requests, r.gc.Stats().Requests, "each call counted once")
			assert.Zero(t, ev.Stable.Failures, "a fallback is not the stable side's")
		})
	}
}

// With fallback: false, neither a unary call's retry nor a stream goes to the stable side:
// the broken canary's share fails, and nothing counts as a fallback.
func TestGRPCFallbackOff(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			r := newGRPCCanaryRig(t, nil, false)
			r.canary.set(modeUnavailable)
			const n = 200
			ok := r.run(t, n, stream, nil)
			st := r.gc.Stats()
			t.Logf("ok %d/%d; stable %d, canary %d; %+v", ok, n, r.stable.calls.Load(), r.canary.calls.Load(), st)
			assert.Less(t, ok, n*95/100, "the canary's share fails")
			assert.Zero(t, st.Fallbacks)
			assert.EqualValues(t, ok, r.stable.handled.Load())
		})
	}
}
