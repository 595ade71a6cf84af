// Package loadgen is the sidecar comparison: a bounded, loopback-only, closed-loop HTTP load
// generator that measures latency percentiles, throughput and CPU per request for
//
//	bare       a bare http.Client straight to the backends, round robin in the client
//	proxyless  an http.Client with middleware.NewTransport straight to the same backends
//	haproxy    a bare http.Client through one HAProxy hop (the stand-in for a sidecar)
//
// The backends run in a child process (see package backend), so that the CPU this process
// uses (getrusage) is the client's alone; the backends' and HAProxy's come from
// /proc/<pid>/stat. Every run stops by itself at its duration or its request cap, whichever
// comes first, and setups take turns within each round so that drift hits all of them.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyless/proxyless/benchmarks/internal/backend"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// The setups.
const (
	Bare      = "bare"
	Proxyless = "proxyless"
	HAProxyS  = "haproxy"
)

// Config bounds and shapes a comparison. The zero value of each field means its default.
type Config struct {
	Setups      []string      // default: bare, proxyless, haproxy (bare always runs: it is the baseline)
	Concurrency []int         // closed-loop workers, one load level each; default 1 and 8
	Duration    time.Duration // measured time of one run; default 3 s, at most 1 min
	MaxRequests int           // measured requests of one run at most; default 300,000
	Warmup      time.Duration // unmeasured time before each run; default 200 ms
	Rounds      int           // how many times every (setup, concurrency) runs; default 3
	Backends    int           // backend servers; default 3
	HAProxy     string        // haproxy binary; default FindHAProxy()
	Log         io.Writer     // progress; default none
}

func (c *Config) normalize() error {
	if len(c.Setups) == 0 {
		c.Setups = []string{Bare, Proxyless, HAProxyS}
	}
	for _, s := range c.Setups {
		if s != Bare && s != Proxyless && s != HAProxyS {
			return fmt.Errorf("loadgen: unknown setup %q", s)
		}
	}
	if !slices.Contains(c.Setups, Bare) {
		c.Setups = append([]string{Bare}, c.Setups...)
	}
	if len(c.Concurrency) == 0 {
		c.Concurrency = []int{1, 8}
	}
	for _, n := range c.Concurrency {
		if n < 1 || n > 256 {
			return fmt.Errorf("loadgen: Concurrency %d is not in [1, 256]", n)
		}
	}
	if c.Duration == 0 {
		c.Duration = 3 * time.Second
	}
	if c.Duration < 0 || c.Duration > time.Minute {
		return fmt.Errorf("loadgen: Duration %v is not in (0, 1m]", c.Duration)
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = 300_000
	}
	if c.MaxRequests < 0 || c.MaxRequests > 10_000_000 {
		return fmt.Errorf("loadgen: MaxRequests %d is not in (0, 10,000,000]", c.MaxRequests)
	}
	if c.Warmup == 0 {
		c.Warmup = 200 * time.Millisecond
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Backends == 0 {
		c.Backends = 3
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if slices.Contains(c.Setups, HAProxyS) {
		if c.HAProxy == "" {
			c.HAProxy = FindHAProxy()
		}
		if c.HAProxy == "" {
			return errors.New("loadgen: haproxy is not installed (apt-get install -y haproxy)")
		}
	}
	return nil
}

// Run is one measured run of one setup at one concurrency.
type Run struct {
	Setup       string  `json:"setup"`
	Concurrency int     `json:"concurrency"`
	Round       int     `json:"round"`
	Requests    int64   `json:"requests"` // answered with 200
	Errors      int64   `json:"errors"`   // failed or not 200
	Seconds     float64 `json:"seconds"`
	RPS         float64 `json:"rps"`
	// Latency percentiles of the requests answered, in microseconds.
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	// CPU time per request, in microseconds: this (client) process, the sidecar (HAProxy, 0
	// without one), the backends' process.
	ClientCPU  float64 `json:"client_cpu_us"`
	SidecarCPU float64 `json:"sidecar_cpu_us"`
	BackendCPU float64 `json:"backend_cpu_us"`
}

// Stat is a value over the rounds: median and range.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func statOf(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// Summary is one (setup, concurrency) over the rounds. Add* are the latency the setup adds
// over bare at that percentile, taken within each round (so both saw the same machine state),
// in microseconds.
type Summary struct {
	Setup       string `json:"setup"`
	Concurrency int    `json:"concurrency"`
	Rounds      int    `json:"rounds"`
	Errors      int64  `json:"errors"`
	RPS         Stat   `json:"rps"`
	P50         Stat   `json:"p50_us"`
	P90         Stat   `json:"p90_us"`
	P99         Stat   `json:"p99_us"`
	P999        Stat   `json:"p999_us"`
	AddP50      Stat   `json:"add_p50_us"`
	AddP90      Stat   `json:"add_p90_us"`
	AddP99      Stat   `json:"add_p99_us"`
	AddP999     Stat   `json:"add_p999_us"`
	ClientCPU   Stat   `json:"client_cpu_us"`
	SidecarCPU  Stat   `json:"sidecar_cpu_us"`
	BackendCPU  Stat   `json:"backend_cpu_us"`
	// MeshCPU is client + sidecar: what the setup costs the caller's side.
	MeshCPU Stat `json:"mesh_cpu_us"`
}

// Report is the whole comparison.
type Report struct {
	Machine   Machine   `json:"machine"`
	Config    string    `json:"config"`
	Runs      []Run     `json:"runs"`
	Summaries []Summary `json:"summaries"`
}

// Compare runs the comparison that cfg describes.
func Compare(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	be, err := backend.Start(cfg.Backends)
	if err != nil {
		return nil, err
	}
	defer be.Close()
	rep := &Report{Machine: machine(), Config: fmt.Sprintf("setups=%s concurrency=%v duration=%v max_requests=%d warmup=%v rounds=%d backends=%d",
		strings.Join(cfg.Setups, ","), cfg.Concurrency, cfg.Duration, cfg.MaxRequests, cfg.Warmup, cfg.Rounds, cfg.Backends)}
	var hp *HAProxy
	if slices.Contains(cfg.Setups, HAProxyS) {
		if hp, err = StartHAProxy(cfg.HAProxy, be.Addrs); err != nil {
			return nil, err
		}
		defer hp.Close()
		rep.Machine.HAProxy = hp.Version
	}
	for round := range cfg.Rounds {
		for _, conc := range cfg.Concurrency {
			// Rotate the order each round, so that no setup always runs first or last.
			order := slices.Clone(cfg.Setups)
			k := round % len(order)
			order = append(order[k:], order[:k]...)
			for _, setup := range order {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				r, err := runOne(ctx, cfg, setup, conc, be, hp)
				if err != nil {
					return nil, fmt.Errorf("loadgen: %s, concurrency %d: %w", setup, conc, err)
				}
				r.Round = round
				rep.Runs = append(rep.Runs, r)
				fmt.Fprintf(cfg.Log, "round %d c=%-3d %-9s %8d req %9.0f req/s  p50 %7.1fµs p99 %7.1fµs p99.9 %7.1fµs  cpu/req client %5.1fµs sidecar %5.1fµs backend %5.1fµs  errors %d\n",
					round, conc, setup, r.Requests, r.RPS, r.P50, r.P99, r.P999, r.ClientCPU, r.SidecarCPU, r.BackendCPU, r.Errors)
			}
		}
	}
	rep.Summaries = summarize(cfg, rep.Runs)
	return rep, nil
}

func summarize(cfg Config, runs []Run) []Summary {
	find := func(setup string, conc, round int) *Run {
		for i := range runs {
			if r := &runs[i]; r.Setup == setup && r.Concurrency == conc && r.Round == round {
				return r
			}
		}
		return nil
	}
	var out []Summary
	for _, conc := range cfg.Concurrency {
		for _, setup := range cfg.Setups {
			s := Summary{Setup: setup, Concurrency: conc}
			var rps, p50, p90, p99, p999, a50, a90, a99, a999, cc, sc, bc, mc []float64
			for round := range cfg.Rounds {
				r, base := find(setup, conc, round), find(Bare, conc, round)
				if r == nil || base == nil {
					continue
				}
				s.Rounds++
				s.Errors += r.Errors
				rps = append(rps, r.RPS)
				p50, p90, p99, p999 = append(p50, r.P50), append(p90, r.P90), append(p99, r.P99), append(p999, r.P999)
				a50, a90 = append(a50, r.P50-base.P50), append(a90, r.P90-base.P90)
				a99, a999 = append(a99, r.P99-base.P99), append(a999, r.P999-base.P999)
				cc, sc, bc = append(cc, r.ClientCPU), append(sc, r.SidecarCPU), append(bc, r.BackendCPU)
				mc = append(mc, r.ClientCPU+r.SidecarCPU)
			}
			s.RPS, s.P50, s.P90, s.P99, s.P999 = statOf(rps), statOf(p50), statOf(p90), statOf(p99), statOf(p999)
			s.AddP50, s.AddP90, s.AddP99, s.AddP999 = statOf(a50), statOf(a90), statOf(a99), statOf(a999)
			s.ClientCPU, s.SidecarCPU, s.BackendCPU, s.MeshCPU = statOf(cc), statOf(sc), statOf(bc), statOf(mc)
			out = append(out, s)
		}
	}
	return out
}

// target is where one setup's requests go.
type target struct {
	client  *http.Client
	urls    []string // taken round robin
	sidecar int      // pid whose CPU counts as the sidecar's, 0 for none
	close   func()
}

func newTarget(setup string, conc int, be *backend.Process, hp *HAProxy) (*target, error) {
	// The same base transport for every setup: enough idle connections for every worker.
	base := &http.Transport{
		MaxIdleConns:        4 * conc * len(be.Addrs),
		MaxIdleConnsPerHost: 2 * conc,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	t := &target{client: &http.Client{Transport: base}, close: base.CloseIdleConnections}
	switch setup {
	case Bare:
		for _, a := range be.Addrs {
			t.urls = append(t.urls, "http://"+a+"/")
		}
	case Proxyless:
		eps := make([]discovery.Endpoint, len(be.Addrs))
		for i, a := range be.Addrs {
			eps[i] = discovery.Endpoint{Addr: a}
		}
		tr, err := middleware.NewTransport(base, middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"backends": eps})))
		if err != nil {
			return nil, err
		}
		t.client = &http.Client{Transport: tr}
		t.urls = []string{"http://backends/"}
		t.close = func() { _ = tr.Close(); base.CloseIdleConnections() }
	case HAProxyS:
		t.urls = []string{"http://" + hp.Addr + "/"}
		t.sidecar = hp.Pid()
	}
	return t, nil
}

func runOne(ctx context.Context, cfg Config, setup string, conc int, be *backend.Process, hp *HAProxy) (Run, error) {
	t, err := newTarget(setup, conc, be, hp)
	if err != nil {
		return Run{}, err
	}
	defer t.close()
	// Warm up: connections, the proxyless destination, the balancer's latency estimates.
	wctx, cancel := context.WithTimeout(ctx, cfg.Warmup)
	load(wctx, t, conc, cfg.MaxRequests, false)
	cancel()
	runtime.GC()

	cpu0, err := selfCPU()
	if err != nil {
		return Run{}, err
	}
	side0, back0, err := childCPU(t.sidecar, be.Pid())
	if err != nil {
		return Run{}, err
	}
	start := time.Now()
	mctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	lat, errs := load(mctx, t, conc, cfg.MaxRequests, true)
	cancel()
	elapsed := time.Since(start)
	cpu1, err := selfCPU()
	if err != nil {
		return Run{}, err
	}
	side1, back1, err := childCPU(t.sidecar, be.Pid())
	if err != nil {
		return Run{}, err
	}
	if len(lat) == 0 {
		return Run{}, fmt.Errorf("no request succeeded (%d errors)", errs)
	}
	n := float64(len(lat))
	slices.Sort(lat)
	us := func(q float64) float64 {
		i := int(q*n+0.999999) - 1
		return float64(lat[max(0, min(i, len(lat)-1))]) / 1e3
	}
	perReq := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	return Run{
		Setup: setup, Concurrency: conc,
		Requests: int64(len(lat)), Errors: errs,
		Seconds: elapsed.Seconds(), RPS: n / elapsed.Seconds(),
		P50: us(0.50), P90: us(0.90), P99: us(0.99), P999: us(0.999), Max: us(1),
		ClientCPU: perReq(cpu1 - cpu0), SidecarCPU: perReq(side1 - side0), BackendCPU: perReq(back1 - back0),
	}, nil
}

func childCPU(sidecar, backend int) (side, back time.Duration, err error) {
	if sidecar != 0 {
		if side, err = procCPU(sidecar); err != nil {
			return 0, 0, err
		}
	}
	back, err = procCPU(backend)
	return side, back, err
}

// load runs conc workers, each sending GETs one after another, until ctx is done or max
// requests have been sent. With record, it returns the latency of every request answered with
// 200, in nanoseconds, and the number of the others.
func load(ctx context.Context, t *target, conc, max int, record bool) ([]int64, int64) {
	var sent, rr atomic.Int64
	var errs atomic.Int64
	lats := make([][]int64, conc)
	var wg sync.WaitGroup
	for w := range conc {
		if record {
			lats[w] = make([]int64, 0, min(max/conc+1, 1<<20))
		}
		wg.Go(func() {
			for ctx.Err() == nil && sent.Add(1) <= int64(max) {
				url := t.urls[int(rr.Add(1)-1)%len(t.urls)]
				t0 := time.Now()
				ok := get(ctx, t.client, url)
				d := time.Since(t0)
				switch {
				case ok && record:
					lats[w] = append(lats[w], int64(d))
				case !ok && ctx.Err() == nil:
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	var all []int64
	for _, l := range lats {
		all = append(all, l...)
	}
	return all, errs.Load()
}

func get(ctx context.Context, c *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return err == nil && resp.StatusCode == http.StatusOK
}

// Machine describes where the numbers come from.
type Machine struct {
	CPUModel   string `json:"cpu_model"`
	NumCPU     int    `json:"nproc"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	Kernel     string `json:"kernel"`
	HAProxy    string `json:"haproxy,omitempty"`
}

func machine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
