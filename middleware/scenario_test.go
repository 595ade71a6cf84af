package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
)

// scenarioSide is one adapter of the client engine (HTTP or gRPC) over three real loopback
// backends whose behaviour a scenario switches.
type scenarioSide interface {
	name() string
	// start builds the client with opts over the side's backends.
	start(t *testing.T, opts ...middleware.ClientOption)
	call(ctx context.Context) error
	hang(i int)
	fail(i int) // 503 / UNAVAILABLE
	slow(i int, d time.Duration)
	crash(i int) // the backend goes away: its port refuses connections
	calls(i int) int64
	cancelled(i int) int64
	warmups() int // calls made before the scenario's, which paid into the retry budget
	// retryAttemptTimeouts makes start configure the client to retry attempts cut by their
	// own timeout (HTTP: retried anyway; gRPC: DEADLINE_EXCEEDED among the retry codes).
	retryAttemptTimeouts()
}

type httpSide struct {
	backends []*faultbackend.Backend
	client   *http.Client
}

func (s *httpSide) name() string { return "http" }
func (s *httpSide) start(t *testing.T, opts ...middleware.ClientOption) {
	eps := make([]discovery.Endpoint, 3)
	for i := range eps {
		b := faultbackend.New(t)
		s.backends = append(s.backends, b)
		eps[i] = discovery.Endpoint{Addr: b.Addr()}
	}
	base := &http.Transport{MaxIdleConnsPerHost: 16}
	topts := []middleware.TransportOption{middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps}))}
	for _, o := range opts {
		topts = append(topts, o)
	}
	tr, err := middleware.NewTransport(base, topts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()); base.CloseIdleConnections() })
	s.client = &http.Client{Transport: tr}
}
func (s *httpSide) call(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
func (s *httpSide) hang(i int)                  { s.backends[i].Set(faultbackend.Hang()) }
func (s *httpSide) fail(i int)                  { s.backends[i].Set(faultbackend.Status(503)) }
func (s *httpSide) slow(i int, d time.Duration) { s.backends[i].Set(faultbackend.Slow(d)) }
func (s *httpSide) crash(i int)                 { _ = s.backends[i].Close() }
func (s *httpSide) calls(i int) int64           { return s.backends[i].Attempts() }
func (s *httpSide) cancelled(i int) int64       { return s.backends[i].Cancellations() }
func (s *httpSide) warmups() int                { return 0 }
func (s *httpSide) retryAttemptTimeouts()       {}

type grpcSide struct {
	f              *grpcFixture
	retryDeadlines bool
}

func (s *grpcSide) name() string { return "grpc" }
func (s *grpcSide) start(t *testing.T, opts ...middleware.ClientOption) {
	bs := []*grpcBackend{newGRPCBackend(t, "b0"), newGRPCBackend(t, "b1"), newGRPCBackend(t, "b2")}
	var gopts []middleware.GRPCClientOption
	for _, o := range opts {
		gopts = append(gopts, o)
	}
	if s.retryDeadlines {
		gopts = append(gopts, middleware.WithGRPCRetryCodes(codes.Unavailable, codes.DeadlineExceeded))
	}
	s.f = newGRPCFixture(t, bs, gopts...)
	s.f.waitReady(t)
}
func (s *grpcSide) call(ctx context.Context) error {
	_, err := s.f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	return err
}
func (s *grpcSide) hang(i int) { s.f.backends[i].set(modeHang) }
func (s *grpcSide) fail(i int) { s.f.backends[i].set(modeUnavailable) }
func (s *grpcSide) slow(i int, d time.Duration) {
	s.f.backends[i].delay.Store(int64(d))
	s.f.backends[i].set(modeSlow)
}
func (s *grpcSide) crash(i int)           { s.f.backends[i].srv.Stop() }
func (s *grpcSide) calls(i int) int64     { return s.f.backends[i].calls.Load() }
func (s *grpcSide) cancelled(i int) int64 { return s.f.backends[i].cancelled.Load() }
func (s *grpcSide) warmups() int          { return s.f.warmups }
func (s *grpcSide) retryAttemptTimeouts() { s.retryDeadlines = true }

// runCalls makes n calls from workers goroutines, each with its own timeout, and returns how
// many failed. before, when set, runs before call k (from the worker that makes it).
func runCalls(s scenarioSide, n, workers int, timeout time.Duration, before func(k int)) (failed int64) {
	var next, fails atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for k := int(next.Add(1)) - 1; k < n; k = int(next.Add(1)) - 1 {
				if before != nil {
					before(k)
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				if err := s.call(ctx); err != nil {
					fails.Add(1)
					if testing.Verbose() {
						fmt.Printf("%s: call %d: %v\n", s.name(), k, err)
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	return fails.Load()
}

// TestScenarios runs the same fault scenarios against the HTTP and the gRPC adapter of the
// client engine, over real loopback servers.
func TestScenarios(t *testing.T) {
	sides := []func() scenarioSide{func() scenarioSide { return &httpSide{} }, func() scenarioSide { return &grpcSide{} }}
	fast := middleware.WithRetry(middleware.RetryPolicy{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	scenarios := []struct {
		name string
		run  func(t *testing.T, s scenarioSide)
	}{
		{"crash 1 of 3 mid-load", func(t *testing.T, s scenarioSide) {
			s.start(t, fast)
			var once sync.Once
			failed := runCalls(s, 300, 4, 5*time.Second, func(k int) {
				if k == 100 {
					once.Do(func() { s.crash(2) })
				}
			})
			assert.Zero(t, failed, "calls failed although two backends stayed up")
		}},
		{"hang, attempt timeout", func(t *testing.T, s scenarioSide) {
			s.retryAttemptTimeouts()
			s.start(t, fast, middleware.WithAttemptTimeout(100*time.Millisecond))
			s.hang(2)
			assert.Zero(t, runCalls(s, 30, 1, 5*time.Second, nil), "every call retried past the hung backend")
		}},
		{"hang, overall timeout", func(t *testing.T, s scenarioSide) {
			// 500 ms: long enough that a loaded machine's slow answer from a healthy backend
			// is not a timeout too; the hung backend never answers, whatever the bound.
			s.start(t, fast, middleware.WithTimeout(500*time.Millisecond))
			s.hang(2)
			failed := runCalls(s, 40, 1, 5*time.Second, nil)
			assert.LessOrEqual(t, failed, int64(2), "almost every call succeeds: the hung backend is learnt from its first timeout")
		}},
		{"hang, caller deadline", func(t *testing.T, s scenarioSide) {
			s.start(t, fast)
			s.hang(2)
			failed := runCalls(s, 40, 1, 500*time.Millisecond, nil)
			assert.LessOrEqual(t, failed, int64(2), "almost every call succeeds: a cut attempt is a floor of its endpoint's latency")
		}},
		{"total outage within the budget", func(t *testing.T, s scenarioSide) {
			s.start(t, middleware.WithRetry(middleware.RetryPolicy{
				BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, BudgetRatio: 0.2, MinRetriesPerSecond: -1,
			}), middleware.WithBalancer(balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}), middleware.WithoutBreaker())
			for i := range 3 {
				s.fail(i)
			}
			const n = 100
			failed := runCalls(s, n, 2, 5*time.Second, nil)
			assert.Equal(t, int64(n), failed)
			total := s.calls(0) + s.calls(1) + s.calls(2)
			assert.GreaterOrEqual(t, total, int64(n))
			paid := int64(n + s.warmups())
			assert.LessOrEqual(t, total, int64(n)+paid/5+1, "retries stay within 20 %% of calls")
		}},
		{"hedge winner and loser cancelled", func(t *testing.T, s scenarioSide) {
			s.start(t, fast, middleware.WithHedge(middleware.HedgePolicy{Delay: 20 * time.Millisecond}),
				middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: 1, MinRetriesPerSecond: 1000}),
				middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin}))
			s.slow(0, 2*time.Second)
			start := time.Now()
			assert.Zero(t, runCalls(s, 12, 1, 5*time.Second, nil))
			assert.Less(t, time.Since(start), 2*time.Second, "no call waited for the slow backend")
			require.Positive(t, s.calls(0), "the slow backend got first attempts")
			require.Eventually(t, func() bool { return s.cancelled(0) == s.calls(0) }, 5*time.Second, 5*time.Millisecond,
				"every attempt on the slow backend was cancelled when its hedge won (%d of %d)", s.cancelled(0), s.calls(0))
		}},
		{"retry to a different endpoint", func(t *testing.T, s scenarioSide) {
			// One retry only: a retry sent to the failing backend again would fail the call.
			s.start(t, middleware.WithRetry(middleware.RetryPolicy{MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}),
				middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: balancer.OutlierConfig{Disabled: true}}),
				middleware.WithoutBreaker())
			s.fail(0)
			const n = 30
			assert.Zero(t, runCalls(s, n, 1, 5*time.Second, nil), "every call that met the failing backend was retried on a live one")
			assert.Positive(t, s.calls(0), "round robin sent first attempts to the failing backend")
			assert.Equal(t, int64(n), s.calls(1)+s.calls(2), "each call answered once by a live backend")
		}},
	}
	for _, sc := range scenarios {
		for _, side := range sides {
			s := side()
			t.Run(sc.name+"/"+s.name(), func(t *testing.T) { sc.run(t, s) })
		}
	}
}
