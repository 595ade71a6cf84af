package middleware_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
)

// failingBackend answers 500 to failPer10 of every 10 requests it gets, 200 to the others.
func failingBackend(t *testing.T, failPer10 int64) *faultbackend.Backend {
	b := faultbackend.New(t)
	var n atomic.Int64
	b.SetHandler(func(w http.ResponseWriter, _ *http.Request) {
		if (n.Add(1)-1)%10 < failPer10 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return b
}

// sweepApp sends requests round robin over five real backends, the last failing failPer10 of
// every 10, with interval-based outlier detection configured by o, until the balancer has
// ejected something or wait has passed. It returns the transport and
// the backends.
func sweepApp(t *testing.T, failPer10 int64, wait time.Duration, o balancer.OutlierConfig) (*middleware.Transport, []*faultbackend.Backend) {
	t.Helper()
	bs := []*faultbackend.Backend{failingBackend(t, 0), failingBackend(t, 0), failingBackend(t, 0), failingBackend(t, 0), failingBackend(t, failPer10)}
	eps := make([]discovery.Endpoint, len(bs))
	for i, b := range bs {
		eps[i] = discovery.Endpoint{Addr: b.Addr()}
	}
	o.Interval = 300 * time.Millisecond
	app := newMetricsApp(t, discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps}),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: o}),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}), middleware.WithoutBreaker())
	deadline := time.Now().Add(wait)
	for app.tr.Stats().Ejections == 0 && time.Now().Before(deadline) {
		for range 50 {
			_, err := app.get(t, "http://svc/")
			require.NoError(t, err)
		}
	}
	return app.tr, bs
}

func ejectedNow(tr *middleware.Transport) []string {
	var out []string
	now := time.Now()
	for _, e := range tr.Endpoints("svc") {
		if e.Ejected(now) {
			out = append(out, e.Addr)
		}
	}
	return out
}

// Over real loopback backends, success-rate detection ejects the endpoint that fails 30 % of
// its requests (500s) among four that never fail, and only it.
func TestTransportSuccessRateEjection(t *testing.T) {
	tr, bs := sweepApp(t, 3, 10*time.Second, balancer.OutlierConfig{SuccessRate: &balancer.SuccessRateEjection{RequestVolume: 10}})
	assert.Equal(t, []string{bs[4].Addr()}, ejectedNow(tr))
	assert.EqualValues(t, 1, tr.Stats().Ejections)
}

// Five real backends that all fail 3 of every 10 requests: success-rate detection ejects none,
// over a dozen intervals, though the counts in each interval differ by a request or two.
func TestTransportSuccessRateAllAlike(t *testing.T) {
	bs := []*faultbackend.Backend{failingBackend(t, 3), failingBackend(t, 3), failingBackend(t, 3), failingBackend(t, 3), failingBackend(t, 3)}
	eps := make([]discovery.Endpoint, len(bs))
	for i, b := range bs {
		eps[i] = discovery.Endpoint{Addr: b.Addr()}
	}
	app := newMetricsApp(t, discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps}),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: balancer.OutlierConfig{
			Interval: 200 * time.Millisecond, SuccessRate: &balancer.SuccessRateEjection{RequestVolume: 10},
		}}),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}), middleware.WithoutBreaker())
	deadline := time.Now().Add(3 * time.Second)
	sent := 0
	for time.Now().Before(deadline) && sent < 20_000 {
		for range 25 {
			_, _ = app.get(t, "http://svc/")
			sent++
		}
	}
	t.Logf("%d requests over %d intervals", sent, 3*time.Second/(200*time.Millisecond))
	assert.Zero(t, app.tr.Stats().Ejections)
	assert.Empty(t, ejectedNow(app.tr))
}

// Failure-percentage detection ejects the endpoint failing 90 % (over the threshold of 85),
// and none failing 30 %.
func TestTransportFailurePercentageEjection(t *testing.T) {
	tr, bs := sweepApp(t, 9, 10*time.Second, balancer.OutlierConfig{FailurePercentage: &balancer.FailurePercentageEjection{RequestVolume: 10}})
	assert.Equal(t, []string{bs[4].Addr()}, ejectedNow(tr))

	// Over several intervals (each with the volume), the 30 % one is never ejected.
	tr, _ = sweepApp(t, 3, 2*time.Second, balancer.OutlierConfig{FailurePercentage: &balancer.FailurePercentageEjection{RequestVolume: 10}})
	assert.Empty(t, ejectedNow(tr))
	assert.Zero(t, tr.Stats().Ejections)
}

// A gRPC client runs the same detection in its channel's balancer: of five real gRPC
// backends, the one answering INTERNAL to 3 of every 10 calls is ejected, and only it.
func TestGRPCSuccessRateEjection(t *testing.T) {
	var n atomic.Int64
	flaky := grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if (n.Add(1)-1)%10 < 3 {
			return nil, status.Error(codes.Internal, "flaky")
		}
		return h(ctx, req)
	})
	backends := []*grpcBackend{newGRPCBackend(t, "a"), newGRPCBackend(t, "b"), newGRPCBackend(t, "c"), newGRPCBackend(t, "d"), newGRPCBackend(t, "e", flaky)}
	f := newGRPCFixture(t, backends, middleware.WithoutBreaker(), middleware.WithRetry(middleware.RetryPolicy{Disable: true}),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: balancer.OutlierConfig{
			Interval: 300 * time.Millisecond, SuccessRate: &balancer.SuccessRateEjection{RequestVolume: 10},
		}}))
	f.waitReady(t)
	deadline := time.Now().Add(10 * time.Second)
	for f.gc.Stats().Ejections == 0 && time.Now().Before(deadline) {
		for range 50 {
			_, _ = f.call(t, 5*time.Second)
		}
	}
	var ejected []string
	now := time.Now()
	for _, d := range f.gc.Destinations() {
		for _, e := range d.Endpoints {
			if e.Ejected(now) {
				ejected = append(ejected, e.Addr)
			}
		}
	}
	assert.Equal(t, []string{backends[4].addr}, ejected)
	assert.EqualValues(t, 1, f.gc.Stats().Ejections)
}
