// Command observability shows the spans and metrics a proxyless client produces, recorded
// by the OpenTelemetry SDK.
//
// It starts three loopback backends of one service, "shop"; the first of them answers 503
// to its first request, so that one request is retried on another backend. It gives a
// proxyless client (middleware.NewTransport) an SDK TracerProvider that keeps every span in
// memory and an SDK MeterProvider read by the Prometheus exporter, whose registry promhttp
// serves on a loopback port. It sends a few dozen requests, then prints:
//
//   - the span tree of the retried request: the INTERNAL request span, a CLIENT span per
//     attempt (the first answered 503 and was discarded, the retry was answered 200), and
//     under each the backend's SERVER span, joined to it by the trace context the client
//     sent; with the proxyless.* attributes and events of each;
//   - what one scrape of its own /metrics endpoint returns for proxyless_* and
//     http_client_* (histogram buckets left out).
//
// The providers are handed to the client and the backends explicitly: no global
// OpenTelemetry state is set. It listens on 127.0.0.1 only and exits by itself.
//
//	go run ./examples/observability
//	go run ./examples/observability -requests 100 -fail 3
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/tracing"
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "observability:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, cfg); err != nil {
		stop()
		fmt.Fprintln(os.Stderr, "observability:", err)
		os.Exit(1)
	}
}

// service is the name the client sends requests to: http://shop/...
const service = "shop"

// config is what the flags set.
type config struct {
	requests int           // requests to send, one after another
	duration time.Duration // the traffic stops after this long, sent or not
	backends int           // backends of the service
	fail     int           // 503s the first backend answers before it recovers
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("observability", flag.ContinueOnError)
	var c config
	fs.IntVar(&c.requests, "requests", 30, "requests to send")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "how long the traffic may take at most")
	fs.IntVar(&c.backends, "backends", 3, "backends of the service (at least 2, so that a retry has somewhere to go)")
	fs.IntVar(&c.fail, "fail", 1, "requests the first backend answers 503 before it recovers")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return c, c.validate()
}

func (c config) validate() error {
	switch {
	case c.requests <= 0:
		return errors.New("-requests must be positive")
	case c.duration <= 0:
		return errors.New("-duration must be positive")
	case c.backends < 2:
		return errors.New("-backends must be at least 2")
	case c.fail < 0:
		return errors.New("-fail must not be negative")
	}
	return nil
}

// run does the whole job and writes its report to w. It returns once everything it started
// has stopped.
func run(ctx context.Context, w io.Writer, cfg config) (err error) {
	if err := cfg.validate(); err != nil {
		return err
	}
	res := resource.NewSchemaless(attribute.String("service.name", "observability-example"))

	// Traces: every span sampled, and kept in memory as it ends (a syncer, not a batcher, so
	// that no span is still in flight when the tree is printed). To print spans as JSON as
	// they end, use go.opentelemetry.io/otel/exporters/stdout/stdouttrace instead.
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSyncer(spans),
		sdktrace.WithResource(res),
	)
	defer func() { err = errors.Join(err, shutdown(tp.Shutdown)) }()

	// Metrics: the Prometheus exporter is a reader of the MeterProvider, collected at each
	// scrape, into a registry of our own rather than prometheus.DefaultRegisterer.
	mp, metricsSrv, closeMetrics, err := startMetrics(res)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeMetrics()) }()

	// The backends. Their handlers are traced too (with the same provider, standing in for
	// the collector that the spans of every service would reach), so that the tree shows
	// where each attempt arrived.
	backends, eps, err := startBackends(cfg, tp)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeBackends(backends)) }()

	// The client: static discovery of the service's endpoints, the default balancer,
	// breakers and retries, and the two providers.
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr, err := middleware.NewTransport(base,
		middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{service: eps})),
		middleware.WithAttemptTimeout(time.Second),
		middleware.WithTracerProvider(tp),
		middleware.WithMeterProvider(mp),
	)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tr.Close()) }()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}

	fmt.Fprintf(w, "%d backends of %q on 127.0.0.1, %s answers 503 to its first %d request(s); metrics at http://%s/metrics\n",
		cfg.backends, service, backends[0].name, cfg.fail, metricsSrv.addr)
	ok, failed, elapsed := send(ctx, client, cfg)
	if err := ctx.Err(); err != nil {
		return err
	}
	printTraffic(w, ok, failed, elapsed, tr.Stats(), backends)

	// Stop the backends first: Shutdown waits for their handlers, so that every SERVER span
	// has ended. The client and the metrics endpoint stay up for the scrape: the observable
	// instruments (endpoints known, breaker states) read the transport when collected.
	for _, b := range backends {
		if err := b.srv.close(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	printRetried(w, spans.GetSpans())
	fmt.Fprintln(w)
	return scrape(ctx, w, "http://"+metricsSrv.addr+"/metrics")
}

// send sends cfg.requests GET requests to the service, one after another, until they are
// sent or cfg.duration has passed.
func send(ctx context.Context, client *http.Client, cfg config) (ok, failed int, elapsed time.Duration) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	for i := range cfg.requests {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/items/%d", service, i), nil)
		if err != nil {
			panic(err) // the URL is well-formed
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failed++
			continue
		}
		// Reading the body to its end and closing it ends the request's span.
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed, time.Since(start)
}

// startMetrics returns a MeterProvider whose Prometheus exporter is a reader collected at each
// scrape, into a registry of our own rather than prometheus.DefaultRegisterer, and a loopback
// server of that registry at /metrics; stop closes the server, then the provider.
func startMetrics(res *resource.Resource) (mp *sdkmetric.MeterProvider, srv *server, stop func() error, err error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, nil, err
	}
	mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))
	srv, err = listen(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if err != nil {
		return nil, nil, nil, errors.Join(err, shutdown(mp.Shutdown))
	}
	stop = func() error { return errors.Join(srv.close(), shutdown(mp.Shutdown)) }
	return mp, srv, stop, nil
}

// startBackends starts cfg.backends backends traced with tp, the first failing its first
// cfg.fail requests, and returns them and their endpoints.
func startBackends(cfg config, tp trace.TracerProvider) ([]*backend, []discovery.Endpoint, error) {
	backends := make([]*backend, 0, cfg.backends)
	eps := make([]discovery.Endpoint, cfg.backends)
	for i := range cfg.backends {
		fail := 0
		if i == 0 {
			fail = cfg.fail
		}
		b, err := startBackend(fmt.Sprintf("backend-%d", i), fail, tp)
		if err != nil {
			return nil, nil, errors.Join(err, closeBackends(backends))
		}
		backends = append(backends, b)
		eps[i] = discovery.Endpoint{Addr: b.srv.addr}
	}
	return backends, eps, nil
}

// closeBackends closes the backends' servers, the last started first.
func closeBackends(backends []*backend) error {
	var err error
	for i := len(backends) - 1; i >= 0; i-- {
		err = errors.Join(err, backends[i].srv.close())
	}
	return err
}

// printTraffic prints what the client sent and what each backend saw.
func printTraffic(w io.Writer, ok, failed int, elapsed time.Duration, st middleware.Stats, backends []*backend) {
	fmt.Fprintf(w, "traffic: %d requests in %v: %d answered 200, %d failed; attempts: %d, retries: %d\n",
		ok+failed, elapsed.Round(time.Millisecond), ok, failed, st.Attempts, st.Retries)
	fmt.Fprint(w, "backends saw:")
	for _, b := range backends {
		fmt.Fprintf(w, " %s %d", b.name, b.hits.Load())
	}
	fmt.Fprintln(w)
}

// backend is one loopback backend of the service. It answers 503 to its first fail
// requests, and 200 after that.
type backend struct {
	name string
	fail int64 // immutable
	hits atomic.Int64
	srv  *server
}

func startBackend(name string, fail int, tp trace.TracerProvider) (*backend, error) {
	b := &backend{name: name, fail: int64(fail)}
	// A server-side proxyless handler with only a tracer provider: a SERVER span per request,
	// continuing the client's trace. No meter provider: the scrape shows the client's metrics.
	h, err := middleware.NewHandler(http.HandlerFunc(b.serveHTTP), middleware.WithTracerProvider(tp))
	if err != nil {
		return nil, err
	}
	if b.srv, err = listen(h); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *backend) serveHTTP(w http.ResponseWriter, _ *http.Request) {
	if b.hits.Add(1) <= b.fail {
		http.Error(w, b.name+": warming up", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "hello from", b.name)
}

// server is an http.Server on a loopback port.
type server struct {
	addr string // immutable
	srv  *http.Server
	done chan struct{} // closed when Serve returns
	once sync.Once
	err  error // set by close
}

func listen(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{addr: ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // http.ErrServerClosed once close is called
	}()
	return s, nil
}

// close shuts the server down gracefully, within two seconds, and waits for it. It is
// idempotent.
func (s *server) close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if s.err = s.srv.Shutdown(ctx); s.err != nil {
			_ = s.srv.Close()
		}
		<-s.done
	})
	return s.err
}

// shutdown calls a provider's Shutdown with a bounded context.
func shutdown(fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return fn(ctx)
}

// printRetried prints the span tree of the first request that made more than one attempt.
func printRetried(w io.Writer, spans tracetest.SpanStubs) {
	var root *tracetest.SpanStub
	for i := range spans {
		s := &spans[i]
		if s.SpanKind != trace.SpanKindInternal || s.InstrumentationScope.Name != tracing.ScopeName {
			continue
		}
		if n, ok := intAttr(s.Attributes, tracing.KeyAttempts); ok && n > 1 &&
			(root == nil || s.StartTime.Before(root.StartTime)) {
			root = s
		}
	}
	if root == nil {
		fmt.Fprintln(w, "no request was retried: run with -fail 1 or more")
		return
	}
	children := map[trace.SpanID][]*tracetest.SpanStub{}
	for i := range spans {
		s := &spans[i]
		if s.SpanContext.TraceID() == root.SpanContext.TraceID() && s.Parent.IsValid() {
			children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		}
	}
	for _, c := range children {
		slices.SortFunc(c, func(a, b *tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	}
	fmt.Fprintf(w, "span tree of a retried request (trace %s):\n", root.SpanContext.TraceID())
	printSpan(w, root, children, "", "")
}

// printSpan prints s, its attributes and events, and its children. head is the prefix of
// its own line, tail that of the lines below it.
func printSpan(w io.Writer, s *tracetest.SpanStub, children map[trace.SpanID][]*tracetest.SpanStub, head, tail string) {
	line := fmt.Sprintf("%s [%s] %v", s.Name, s.SpanKind, s.EndTime.Sub(s.StartTime).Round(time.Microsecond))
	if s.Status.Code != 0 {
		line += fmt.Sprintf(" status=%s", s.Status.Code)
		if s.Status.Description != "" {
			line += fmt.Sprintf(" %q", s.Status.Description)
		}
	}
	fmt.Fprintln(w, head+line)
	kids := children[s.SpanContext.SpanID()]
	detail := tail + "    "
	if len(kids) > 0 {
		detail = tail + "│   "
	}
	if a := shownAttrs(s.Attributes); a != "" {
		fmt.Fprintln(w, detail+a)
	}
	for _, e := range s.Events {
		fmt.Fprintln(w, detail+"event "+e.Name+" "+shownAttrs(e.Attributes))
	}
	for i, c := range kids {
		if i == len(kids)-1 {
			printSpan(w, c, children, tail+"└── ", tail+"    ")
		} else {
			printSpan(w, c, children, tail+"├── ", tail+"│   ")
		}
	}
}

// shownAttrs formats the proxyless.* attributes and a few of the semantic conventions',
// sorted by key.
func shownAttrs(kvs []attribute.KeyValue) string {
	var shown []attribute.KeyValue
	for _, kv := range kvs {
		switch k := string(kv.Key); {
		case strings.HasPrefix(k, "proxyless."), k == "http.response.status_code", k == "error.type", k == "server.address", k == "server.port":
			shown = append(shown, kv)
		}
	}
	slices.SortFunc(shown, func(a, b attribute.KeyValue) int { return cmp.Compare(a.Key, b.Key) })
	parts := make([]string, len(shown))
	for i, kv := range shown {
		parts[i] = string(kv.Key) + "=" + kv.Value.Emit()
	}
	return strings.Join(parts, " ")
}

func intAttr(kvs []attribute.KeyValue, key attribute.Key) (int64, bool) {
	for _, kv := range kvs {
		if kv.Key == key && kv.Value.Type() == attribute.INT64 {
			return kv.Value.AsInt64(), true
		}
	}
	return 0, false
}

// scopeLabels matches the instrumentation scope labels the exporter adds to every sample.
var scopeLabels = regexp.MustCompile(`otel_scope_\w+="(?:[^"\\]|\\.)*",?`)

// scrape fetches url once, as Prometheus would, and prints the samples of proxyless_* and
// http_client_* metrics with their HELP and TYPE lines, leaving out histogram buckets and,
// for brevity, the otel_scope_* labels.
func scrape(ctx context.Context, w io.Writer, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: base}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	fmt.Fprintf(w, "one scrape of %s (proxyless_* and http_client_*; histogram buckets and otel_scope_* labels left out):\n", url)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		if !strings.HasPrefix(name, "proxyless_") && !strings.HasPrefix(name, "http_client_") {
			continue
		}
		if strings.Contains(strings.SplitN(name, "{", 2)[0], "_bucket") {
			continue
		}
		if !strings.HasPrefix(line, "#") {
			line = strings.Replace(scopeLabels.ReplaceAllString(line, ""), ",}", "}", 1)
			line = strings.Replace(line, "{}", "", 1)
		}
		fmt.Fprintln(w, line)
	}
	return sc.Err()
}
