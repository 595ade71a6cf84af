// Command demo shows what proxyless does for an http.Client.
//
// It starts four loopback backends of one service: one healthy, one that starts failing part
// of the way through, one slow, and one that flaps between healthy and failing. It then sends
// the same bounded load through a bare http.Client (round robin over the four addresses, the
// way a naive client would) and through a proxyless client (discovery, P2C over peak-EWMA,
// outlier ejection, per-endpoint breakers, retries within a budget, hedging), side by side,
// shows live progress, and prints a table of results. It exits by itself.
//
//	go run ./examples/demo                      # 20 s at 100 requests/s per client
//	go run ./examples/demo -duration 5s -rate 50
//	go run ./examples/demo -consul 127.0.0.1:8500   # register and discover through Consul
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type options struct {
	duration  time.Duration
	rate      int
	workers   int
	consul    string
	quiet     bool
	slow      time.Duration
	flapEvery time.Duration
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var o options
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long each client sends load")
	fs.IntVar(&o.rate, "rate", 100, "requests per second for each client")
	fs.IntVar(&o.workers, "workers", 32, "concurrent requests at most, per client")
	fs.StringVar(&o.consul, "consul", "", "address of a Consul agent to register and discover the backends through (default: static discovery)")
	fs.BoolVar(&o.quiet, "quiet", false, "no live progress")
	fs.DurationVar(&o.slow, "slow", 250*time.Millisecond, "latency of the slow backend")
	fs.DurationVar(&o.flapEvery, "flap", 2*time.Second, "how often the flapping backend changes state")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.duration <= 0:
		return errors.New("-duration must be positive")
	case o.rate <= 0:
		return errors.New("-rate must be positive")
	case o.workers <= 0:
		return errors.New("-workers must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, err := demo(ctx, o, out)
	return err
}

// summary is what a run measured, for the smoke test.
type summary struct {
	bareSuccess, meshSuccess float64 // shares of requests answered 200
	bareRequests, meshReqs   int64
	transport                middleware.Stats
}

func (s *stats) success() float64 {
	n := s.ok.Load() + s.fail.Load()
	if n == 0 {
		return 0
	}
	return float64(s.ok.Load()) / float64(n)
}

// backend names, in the order they are started.
var names = []string{"healthy", "fails-later", "slow", "flapping"}

func demo(ctx context.Context, o options, out io.Writer) (summary, error) {
	backends, byAddr, closeBackends, err := startBackends(o)
	if err != nil {
		return summary{}, err
	}
	defer closeBackends()

	resolver, cleanup, err := newResolver(ctx, o, backends)
	if err != nil {
		return summary{}, err
	}
	defer cleanup()

	base := &http.Transport{MaxIdleConnsPerHost: o.workers}
	defer base.CloseIdleConnections()
	tr, err := middleware.NewTransport(base,
		middleware.WithResolver(resolver),
		middleware.WithAttemptTimeout(time.Second),
		middleware.WithHedge(middleware.HedgePolicy{Delay: 20 * time.Millisecond, Quantile: 0.95}),
	)
	if err != nil {
		return summary{}, err
	}
	defer tr.Close()

	bareBase := &http.Transport{MaxIdleConnsPerHost: o.workers}
	defer bareBase.CloseIdleConnections()
	bare := &bareClient{client: &http.Client{Transport: bareBase, Timeout: 5 * time.Second}}
	for _, b := range backends {
		bare.addrs = append(bare.addrs, b.Addr())
	}
	mesh := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	fmt.Fprintf(out, "proxyless demo: 4 backends (%s), %d req/s per client for %v\n",
		strings.Join(names, ", "), o.rate, o.duration)
	bareStats, meshStats := runScenario(ctx, o, out, backends, byAddr, bare, mesh)

	ts := tr.Stats()
	report(out, bareStats, meshStats, ts)
	return summary{
		bareSuccess: bareStats.success(), meshSuccess: meshStats.success(),
		bareRequests: bareStats.ok.Load() + bareStats.fail.Load(), meshReqs: meshStats.ok.Load() + meshStats.fail.Load(),
		transport: ts,
	}, ctx.Err()
}

// startBackends starts one backend per name, the slow one o.slow slow, and returns them, the
// index of each by address, and a func that closes them, the last started first.
func startBackends(o options) ([]*faultbackend.Backend, map[string]int, func(), error) {
	backends := make([]*faultbackend.Backend, 0, len(names))
	byAddr := map[string]int{}
	closeAll := func() {
		for i := len(backends) - 1; i >= 0; i-- {
			_ = backends[i].Close()
		}
	}
	for i := range names {
		b, err := faultbackend.Start()
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		backends = append(backends, b)
		byAddr[b.Addr()] = i
	}
	backends[2].Set(faultbackend.Slow(o.slow))
	return backends, byAddr, closeAll, nil
}

// runScenario plays the scenario on the backends while sending the same load through the bare
// client and the proxyless one for o.duration, with live progress unless o.quiet, and returns
// what each client saw.
func runScenario(ctx context.Context, o options, out io.Writer, backends []*faultbackend.Backend, byAddr map[string]int,
	bare *bareClient, mesh *http.Client) (bareStats, meshStats *stats) {
	// The scenario: part-way through, one backend starts failing; another flaps all along.
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		scenario(runCtx, o, backends)
	}()

	bareStats = newStats(len(names))
	meshStats = newStats(len(names))
	wg.Add(2)
	go func() {
		defer wg.Done()
		load(runCtx, o, bareStats, byAddr, func(ctx context.Context) (*http.Response, error) { return bare.get(ctx) })
	}()
	go func() {
		defer wg.Done()
		load(runCtx, o, meshStats, byAddr, func(ctx context.Context) (*http.Response, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://demo/", nil)
			return mesh.Do(req)
		})
	}()
	if !o.quiet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progress(runCtx, out, bareStats, meshStats)
		}()
	}
	wg.Wait()
	return bareStats, meshStats
}

// newResolver returns static discovery, or registers the backends in Consul and follows them
// there when -consul is set.
func newResolver(ctx context.Context, o options, backends []*faultbackend.Backend) (discovery.Resolver, func(), error) {
	eps := make([]discovery.Endpoint, len(backends))
	for i, b := range backends {
		eps[i] = discovery.Endpoint{Addr: b.Addr()}
	}
	if o.consul == "" {
		static, err := discovery.NewStatic(map[string][]discovery.Endpoint{"demo": eps})
		return static, func() {}, err
	}
	cfg := consul.Config{Address: o.consul}
	var deregs []func(context.Context) error
	cleanup := func() {
		for _, d := range deregs {
			_ = d(context.Background())
		}
	}
	for i, b := range backends {
		host, port, err := splitAddr(b.Addr())
		if err != nil {
			return nil, cleanup, err
		}
		d, err := consul.Register(ctx, cfg, consul.Registration{ID: "demo-" + names[i], Name: "demo", Address: host, Port: port})
		if err != nil {
			cleanup()
			return nil, func() {}, err
		}
		deregs = append(deregs, d)
	}
	r, err := consul.New(cfg)
	if err != nil {
		cleanup()
		return nil, func() {}, err
	}
	return r, cleanup, nil
}

func splitAddr(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	var port int
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	return addr[:i], port, nil
}

// scenario switches the failing and flapping backends until ctx ends.
func scenario(ctx context.Context, o options, backends []*faultbackend.Backend) {
	failAt := time.After(o.duration / 3)
	flap := time.NewTicker(o.flapEvery)
	defer flap.Stop()
	up := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-failAt:
			backends[1].Set(faultbackend.ResetBeforeHeaders())
		case <-flap.C:
			up = !up
			if up {
				backends[3].Set(faultbackend.OK(""))
			} else {
				backends[3].Set(faultbackend.Status(http.StatusServiceUnavailable))
			}
		}
	}
}

// bareClient is what a client without a mesh does: round robin over the addresses it knows.
type bareClient struct {
	client *http.Client
	addrs  []string
	next   atomic.Uint64
}

func (c *bareClient) get(ctx context.Context) (*http.Response, error) {
	addr := c.addrs[c.next.Add(1)%uint64(len(c.addrs))]
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	return c.client.Do(req)
}

// stats collects one client's results.
type stats struct {
	mu        sync.Mutex
	latencies []time.Duration // guarded by mu
	ok, fail  atomic.Int64
	perBack   []atomic.Int64 // successful answers per backend
}

func newStats(n int) *stats { return &stats{perBack: make([]atomic.Int64, n)} }

func (s *stats) record(d time.Duration, ok bool, backend int) {
	if ok {
		s.ok.Add(1)
		if backend >= 0 {
			s.perBack[backend].Add(1)
		}
	} else {
		s.fail.Add(1)
	}
	s.mu.Lock()
	s.latencies = append(s.latencies, d)
	s.mu.Unlock()
}

// load sends o.rate requests a second through do, at most o.workers at once, until ctx ends.
// It waits for the requests in flight.
func load(ctx context.Context, o options, s *stats, byAddr map[string]int, do func(context.Context) (*http.Response, error)) {
	sem := make(chan struct{}, o.workers)
	tick := time.NewTicker(time.Second / time.Duration(o.rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Requests in flight when the run ends may finish: they count.
			start := time.Now()
			resp, err := do(context.WithoutCancel(ctx))
			backend := -1
			ok := false
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				ok = resp.StatusCode == http.StatusOK
				if resp.Request != nil && resp.Request.URL != nil {
					if i, found := byAddr[resp.Request.URL.Host]; found {
						backend = i
					}
				}
			}
			s.record(time.Since(start), ok, backend)
		}()
	}
}

func progress(ctx context.Context, out io.Writer, bare, mesh *stats) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out)
			return
		case <-t.C:
			fmt.Fprintf(out, "\r%3.0fs  bare: %6d ok %5d failed   proxyless: %6d ok %5d failed",
				time.Since(start).Seconds(), bare.ok.Load(), bare.fail.Load(), mesh.ok.Load(), mesh.fail.Load())
		}
	}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

func report(out io.Writer, bare, mesh *stats, ts middleware.Stats) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "\t bare client\t proxyless\t")
	row := func(name string, f func(*stats) string) {
		fmt.Fprintf(w, "%s\t %s\t %s\t\n", name, f(bare), f(mesh))
	}
	sorted := func(s *stats) []time.Duration {
		s.mu.Lock()
		defer s.mu.Unlock()
		l := append([]time.Duration(nil), s.latencies...)
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		return l
	}
	row("requests", func(s *stats) string { return fmt.Sprint(s.ok.Load() + s.fail.Load()) })
	row("success rate", func(s *stats) string {
		n := s.ok.Load() + s.fail.Load()
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f %%", 100*float64(s.ok.Load())/float64(n))
	})
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}, {"p999", 0.999}} {
		row(q.name+" latency", func(s *stats) string { return quantile(sorted(s), q.q).Round(100 * time.Microsecond).String() })
	}
	for i, n := range names {
		row("share "+n, func(s *stats) string {
			total := s.ok.Load()
			if total == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f %%", 100*float64(s.perBack[i].Load())/float64(total))
		})
	}
	fmt.Fprintf(w, "retries\t -\t %d\t\n", ts.Retries)
	fmt.Fprintf(w, "hedges (won)\t -\t %d (%d)\t\n", ts.Hedges, ts.HedgeWins)
	fmt.Fprintf(w, "ejections\t -\t %d\t\n", ts.Ejections)
	fmt.Fprintf(w, "breaker openings\t -\t %d\t\n", ts.BreakerOpens)
	fmt.Fprintf(w, "retry budget refusals\t -\t %d\t\n", ts.BudgetRefusals)
	_ = w.Flush()
}
