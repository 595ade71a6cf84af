// Command ratelimit shows one rate limit shared by several instances of a service.
//
// It starts two instances of an HTTP service on loopback, each wrapped by middleware.NewHandler
// with a per-client limit kept in Redis (ratelimit/redis, keyed by middleware.KeyByClientIP), so that
// the instances together admit at most -rate requests per second with bursts of -burst,
// whichever instance a request reaches. A client then sends -requests requests, alternating
// between the instances, faster than the limit allows. The program prints what each instance
// admitted and refused, the RateLimit-* and Retry-After headers the client saw, and whether
// the total stayed within the global bound. It exits by itself.
//
//	go run ./examples/ratelimit -redis 127.0.0.1:6379
//	PROXYLESS_REDIS_BIN=/usr/bin/redis-server go run ./examples/ratelimit   # starts its own Redis
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/proxyless/proxyless/internal/redistest"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/redis"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ratelimit:", err)
		os.Exit(1)
	}
}

type options struct {
	redis    string        // Redis address; "" starts one from PROXYLESS_REDIS_BIN
	rate     float64       // global requests per second
	burst    int           // global burst
	requests int           // requests the client sends
	interval time.Duration // pause between two requests
	timeout  time.Duration // bound on the whole run
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ratelimit", flag.ContinueOnError)
	fs.SetOutput(out)
	var o options
	fs.StringVar(&o.redis, "redis", "", "address of a Redis server (default: start one from $"+redistest.EnvBin+")")
	fs.Float64Var(&o.rate, "rate", 20, "global limit, requests per second over both instances")
	fs.IntVar(&o.burst, "burst", 5, "global burst")
	fs.IntVar(&o.requests, "requests", 100, "requests the client sends")
	fs.DurationVar(&o.interval, "interval", 5*time.Millisecond, "pause between two requests")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case !(o.rate > 0):
		return errors.New("-rate must be positive")
	case o.burst < 1:
		return errors.New("-burst must be at least 1")
	case o.requests < 1:
		return errors.New("-requests must be at least 1")
	case o.interval < 0:
		return errors.New("-interval must not be negative")
	case o.timeout <= 0:
		return errors.New("-timeout must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, err := example(ctx, o, out)
	return err
}

// instanceNames label the two instances, in the order they are started.
var instanceNames = [2]string{"A", "B"}

// summary is what a run saw, for the smoke test.
type summary struct {
	admitted, refused [2]int
	elapsed           time.Duration
	bound             float64     // burst + rate × elapsed
	firstAdmitted     http.Header // RateLimit-* headers of the first admitted response
	firstRefused      http.Header // and of the first refusal, with Retry-After
}

func example(ctx context.Context, o options, out io.Writer) (summary, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	addr, stopRedis, err := redisAddress(o, out)
	if err != nil {
		return summary{}, err
	}
	defer stopRedis()
	urls, stopInstances, err := startInstances(ctx, o, addr)
	if err != nil {
		return summary{}, err
	}
	defer stopInstances()
	fmt.Fprintf(out, "global limit %g/s, burst %d, shared by %d instances; %d requests, one every %v\n\n",
		o.rate, o.burst, len(urls), o.requests, o.interval)

	s, err := sendRequests(ctx, o, urls)
	if err != nil {
		return s, err
	}
	printSummary(out, o, s)
	return s, nil
}

// redisAddress returns the Redis address given by -redis, or starts a Redis from
// PROXYLESS_REDIS_BIN, prints which, and returns a func that stops what it started.
func redisAddress(o options, out io.Writer) (string, func(), error) {
	addr, origin, stop := o.redis, "given by -redis", func() {}
	if addr == "" {
		bin, err := redistest.Binary()
		if err != nil {
			return "", nil, fmt.Errorf("no -redis address, and no Redis to start: %w", err)
		}
		srv, err := redistest.Start(bin)
		if err != nil {
			return "", nil, err
		}
		addr, origin, stop = srv.Addr(), "started for this run", func() { _ = srv.Close() }
	}
	fmt.Fprintf(out, "redis %s (%s)\n", addr, origin)
	return addr, stop, nil
}

// startInstances starts one HTTP server per instance name, each limited through its own Redis
// client, and returns their URLs and a func that stops them all, the last started first.
func startInstances(ctx context.Context, o options, addr string) ([]string, func(), error) {
	// Every instance has its own Redis client, as separate processes would. A fresh key prefix
	// keeps this run's buckets apart from earlier runs' on a shared Redis.
	prefix := fmt.Sprintf("proxyless:example:%d:%d:", os.Getpid(), time.Now().UnixNano())
	urls := make([]string, len(instanceNames))
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	for i, name := range instanceNames {
		url, stop, err := startInstance(ctx, o, addr, prefix, name)
		if err != nil {
			stopAll()
			return nil, nil, err
		}
		stops = append(stops, stop)
		urls[i] = url
	}
	return urls, stopAll, nil
}

// startInstance starts the instance called name behind middleware.NewHandler with the shared
// per-client limit in Redis, and returns its URL and a func that stops it.
func startInstance(ctx context.Context, o options, addr, prefix, name string) (string, func(), error) {
	rc := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true})
	fail := func(err error) (string, func(), error) {
		_ = rc.Close()
		return "", nil, err
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	err := rc.Ping(pctx).Err()
	pcancel()
	if err != nil {
		return fail(fmt.Errorf("redis %s: %w", addr, err))
	}
	lim, err := redis.New(rc, redis.Config{
		Default: ratelimit.Quota{Rate: o.rate, Burst: o.burst},
		Prefix:  prefix,
		// While Redis is down each instance admits half the quota on its own.
		FallbackShare: 1.0 / float64(len(instanceNames)),
		// A loopback Redis on a busy machine can take longer than the 50 ms default; this
		// short run is about the shared limit, not about falling back to the local one.
		Timeout: time.Second,
	})
	if err != nil {
		return fail(err)
	}
	perClient, err := middleware.KeyByClientIP(ratelimit.ClientIPConfig{})
	if err != nil {
		return fail(err)
	}
	h, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from instance %s\n", name)
	}), middleware.WithServerRateLimit(lim, perClient))
	if err != nil {
		return fail(err)
	}
	srv := httptest.NewServer(h)
	return srv.URL + "/", func() {
		srv.Close()
		_ = rc.Close()
	}, nil
}

// sendRequests sends o.requests requests, alternating between the instances at urls, and
// counts what each admitted and refused, keeping the first admitted and refused headers.
func sendRequests(ctx context.Context, o options, urls []string) (summary, error) {
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: base, Timeout: 5 * time.Second}
	var s summary
	start := time.Now()
	for n := range o.requests {
		i := n % len(urls)
		if err := sendOne(ctx, client, urls[i], i, &s); err != nil {
			return s, err
		}
		if o.interval > 0 && n+1 < o.requests {
			select {
			case <-time.After(o.interval):
			case <-ctx.Done():
				return s, ctx.Err()
			}
		}
	}
	s.elapsed = time.Since(start)
	s.bound = float64(o.burst) + o.rate*s.elapsed.Seconds()
	return s, nil
}

// sendOne sends one request to instance i at url and records its answer in s.
func sendOne(ctx context.Context, client *http.Client, url string, i int, s *summary) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		s.admitted[i]++
		if s.firstAdmitted == nil {
			s.firstAdmitted = rateLimitHeaders(resp.Header)
		}
	case http.StatusTooManyRequests:
		s.refused[i]++
		if s.firstRefused == nil {
			s.firstRefused = rateLimitHeaders(resp.Header)
		}
	default:
		return fmt.Errorf("instance %s answered %s", instanceNames[i], resp.Status)
	}
	return nil
}

// printSummary prints what each instance admitted and refused, whether the total stayed
// within the global bound, and the first admitted and refused headers.
func printSummary(out io.Writer, o options, s summary) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "instance\tadmitted\trefused")
	for i, name := range instanceNames {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", name, s.admitted[i], s.refused[i])
	}
	total := s.admitted[0] + s.admitted[1]
	fmt.Fprintf(tw, "total\t%d\t%d\n", total, s.refused[0]+s.refused[1])
	_ = tw.Flush()
	within := "yes"
	if float64(total) > s.bound+1 {
		within = "NO"
	}
	fmt.Fprintf(out, "\nwithin the global bound %d + %g/s × %v = %.1f: %s\n\n",
		o.burst, o.rate, s.elapsed.Round(time.Millisecond), s.bound, within)
	fmt.Fprintf(out, "first admitted: %s\n", format(s.firstAdmitted))
	fmt.Fprintf(out, "first refused:  %s\n", format(s.firstRefused))
}

var shownHeaders = []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"}

func rateLimitHeaders(h http.Header) http.Header {
	out := http.Header{}
	for _, k := range shownHeaders {
		if v := h.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	return out
}

func format(h http.Header) string {
	if h == nil {
		return "(none)"
	}
	var parts []string
	for _, k := range shownHeaders {
		if v := h.Get(k); v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}
