// Command grpc shows proxyless on both sides of gRPC.
//
// It starts three gRPC servers of one service on loopback, each with
// middleware.NewGRPCServer (refusing work whose deadline has passed) and the standard gRPC
// health service, and names them in a discovery.Static. A channel made by a
// middleware.NewGRPCClient ("echo", that is "proxyless:///echo") sends a bounded load: round robin over the
// READY endpoints, outlier ejection, a breaker per endpoint, retries on another endpoint
// within a budget, gRPC health checking. Part of the way through, server "c" fails: by default
// it answers UNAVAILABLE to every call, which the client retries elsewhere until it ejects
// the server; with -fail stop the server stops outright (its listener and connections close,
// as when its process dies). The program prints what each server saw and the client's
// success rate and counters, and exits by itself.
//
//	go run ./examples/grpc
//	go run ./examples/grpc -calls 3000 -fail stop
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		os.Exit(1)
	}
}

type options struct {
	calls   int           // calls the client sends
	workers int           // concurrent callers
	failAt  int           // the call at which server c fails
	fail    string        // "unavailable" or "stop"
	work    time.Duration // time a server spends on a call
	timeout time.Duration // overall timeout of one call
}

func parse(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	fs.SetOutput(out)
	var o options
	fs.IntVar(&o.calls, "calls", 2000, "calls to send")
	fs.IntVar(&o.workers, "workers", 4, "concurrent callers")
	fs.IntVar(&o.failAt, "fail-at", 0, "call at which server c fails (default a third of -calls)")
	fs.StringVar(&o.fail, "fail", "unavailable", `how server c fails: "unavailable" (answers UNAVAILABLE) or "stop" (the server stops)`)
	fs.DurationVar(&o.work, "work", time.Millisecond, "time a server spends on each call")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "overall timeout of each call")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.failAt == 0 {
		o.failAt = o.calls / 3
	}
	switch {
	case o.calls <= 0:
		return o, fmt.Errorf("-calls must be positive, got %d", o.calls)
	case o.workers <= 0:
		return o, fmt.Errorf("-workers must be positive, got %d", o.workers)
	case o.failAt < 0 || o.failAt > o.calls:
		return o, fmt.Errorf("-fail-at must be within 0 and -calls, got %d", o.failAt)
	case o.fail != "unavailable" && o.fail != "stop":
		return o, fmt.Errorf(`-fail must be "unavailable" or "stop", got %q`, o.fail)
	case o.work < 0 || o.timeout <= 0:
		return o, errors.New("-work must not be negative and -timeout must be positive")
	}
	return o, nil
}

func run(args []string, out io.Writer) error {
	o, err := parse(args, out)
	if err != nil {
		return err
	}
	_, err = example(context.Background(), o, out)
	return err
}

// server is one of the three: a TestService whose UnaryCall answers with its name.
type server struct {
	testgrpc.UnimplementedTestServiceServer
	name   string
	addr   string
	srv    *grpc.Server
	health *health.Server
	work   time.Duration
	failed atomic.Bool

	served  atomic.Int64 // calls answered OK
	refused atomic.Int64 // calls answered UNAVAILABLE
	after   atomic.Int64 // calls that arrived after the server failed
}

func (s *server) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if s.failed.Load() {
		s.after.Add(1)
		s.refused.Add(1)
		return nil, status.Error(codes.Unavailable, s.name+" is failing")
	}
	if s.work > 0 {
		t := time.NewTimer(s.work)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	s.served.Add(1)
	return &testgrpc.SimpleResponse{Username: s.name}, nil
}

func startServer(name string, work time.Duration) (*server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// NewGRPCServer: refuse work whose deadline passed; load shedding and rate limits would
	// go here too (WithLoadShedding, WithServerRateLimit).
	gs, err := middleware.NewGRPCServer(middleware.WithGRPCStatsHandler(nil))
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	s := &server{name: name, addr: lis.Addr().String(), work: work, health: health.NewServer()}
	s.srv = grpc.NewServer(gs.ServerOptions()...)
	testgrpc.RegisterTestServiceServer(s.srv, s)
	healthpb.RegisterHealthServer(s.srv, s.health)
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// summary is what the run showed.
type summary struct {
	ok, failed int64
	servers    []*server
	stats      middleware.Stats // the client's counters
}

func (s *summary) successRate() float64 { return float64(s.ok) / float64(s.ok+s.failed) }

func example(ctx context.Context, o options, out io.Writer) (*summary, error) {
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.srv.Stop()
		}
	}()
	eps := make([]discovery.Endpoint, 0, 3)
	for _, name := range []string{"a", "b", "c"} {
		s, err := startServer(name, o.work)
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
		eps = append(eps, discovery.Endpoint{Addr: s.addr})
	}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"echo": eps})

	gc, err := middleware.NewGRPCClient(static,
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin}),
		middleware.WithTimeout(o.timeout),
		middleware.WithGRPCHealthCheck(""),
		middleware.WithGRPCStatsHandler(nil), // no tracing in the example
	)
	if err != nil {
		return nil, err
	}
	defer gc.Close()
	conn, err := gc.NewClient("echo", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	if err := waitReady(ctx, client); err != nil {
		return nil, err
	}
	for _, s := range servers {
		s.served.Store(0)
	}
	before := gc.Stats()

	fmt.Fprintf(out, "%d calls from %d callers over servers a, b, c; c fails (%s) at call %d\n", o.calls, o.workers, o.fail, o.failAt)
	sum := &summary{servers: servers}
	var firstErr string
	sum.ok, sum.failed, firstErr = sendCalls(ctx, o, servers, client)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sum.stats = statsSince(before, gc.Stats())
	printSummary(out, o, sum, firstErr)
	return sum, nil
}

// waitReady waits, at most 10 s, until the channel has a READY endpoint.
func waitReady(ctx context.Context, client testgrpc.TestServiceClient) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := client.UnaryCall(wctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
	cancel()
	if err != nil {
		return fmt.Errorf("no server became ready: %w", err)
	}
	return nil
}

// sendCalls makes o.calls calls from o.workers callers, failing server c (servers[2]) at call
// o.failAt, and returns how many calls succeeded and failed and the first failure's text.
func sendCalls(ctx context.Context, o options, servers []*server, client testgrpc.TestServiceClient) (ok, failed int64, firstErr string) {
	var next, nOK, nFailed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range o.workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(o.calls) {
					return
				}
				if i == int64(o.failAt) {
					c := servers[2]
					if o.fail == "stop" {
						c.srv.Stop() // the calls in flight on c fail with UNAVAILABLE: retried
					} else {
						c.failed.Store(true)
					}
				}
				if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
					nFailed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				nOK.Add(1)
			}
		})
	}
	wg.Wait()
	firstErr, _ = first.Load().(string)
	return nOK.Load(), nFailed.Load(), firstErr
}

// statsSince returns the client's counters in st that grew since before.
func statsSince(before, st middleware.Stats) middleware.Stats {
	return middleware.Stats{
		Requests: st.Requests - before.Requests, Attempts: st.Attempts - before.Attempts,
		Retries: st.Retries - before.Retries, BudgetRefusals: st.BudgetRefusals - before.BudgetRefusals,
		BreakerRefusals: st.BreakerRefusals - before.BreakerRefusals, BreakerOpens: st.BreakerOpens - before.BreakerOpens,
		Ejections: st.Ejections - before.Ejections,
	}
}

// printSummary prints what each server answered, the client's results and counters, the first
// failure if any, and with -fail unavailable how many calls reached c after it failed.
func printSummary(out io.Writer, o options, sum *summary, firstErr string) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tanswered OK\tanswered UNAVAILABLE\t")
	for _, s := range sum.servers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", s.name, s.served.Load(), s.refused.Load())
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "client: %d ok, %d failed, success rate %.2f %%\n", sum.ok, sum.failed, 100*sum.successRate())
	fmt.Fprintf(out, "client stats: %d calls, %d attempts, %d retries, %d budget refusals, %d breaker refusals, %d breaker opens, %d ejections\n",
		sum.stats.Requests, sum.stats.Attempts, sum.stats.Retries, sum.stats.BudgetRefusals, sum.stats.BreakerRefusals, sum.stats.BreakerOpens, sum.stats.Ejections)
	if firstErr != "" {
		fmt.Fprintf(out, "first failure: %s\n", firstErr)
	}
	if o.fail == "unavailable" {
		fmt.Fprintf(out, "calls that reached c after it failed: %d (each retried on a or b; then c was ejected)\n", sum.servers[2].after.Load())
	}
}
