package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/internal/feed"
)

// Config says which DNS server to ask and how often. The zero value asks the system's
// resolver every 30 seconds.
type Config struct {
	// NameTemplate maps a service name to the SRV name looked up for it: every other character is
	// kept, and "{service}" (which must appear exactly once) stands for the service name, so
	// that a mesh client can address http://payments/ and have "payments" looked up as, for
	// example:
	//
	//	"{service}.service.consul."               Consul's DNS interface
	//	"_http._tcp.{service}.example.internal."  an RFC 2782 name under a zone of yours
	//
	// The result must be a valid DNS name (a trailing dot makes it absolute, so the system's
	// search domains are not tried). Default "{service}": the service name is the SRV name
	// itself.
	NameTemplate string
	// Server is the host:port of the DNS server to ask, over UDP with TCP fallback.
	// Default: the system's resolver (/etc/resolv.conf).
	Server string
	// Interval between lookups. Default 30 s.
	Interval time.Duration
	// Timeout of one lookup round (SRV plus the targets' addresses). Default 5 s.
	Timeout time.Duration
	// RetryMin bounds the first retry after a failed lookup; retries back off with jitter up to
	// Interval. Default 1 s (or Interval, if shorter).
	RetryMin time.Duration
	// EmptyAnswers is how many lookups in a row must find no records before a watcher that had
	// some believes it. Default 3.
	EmptyAnswers int
	// EmptyGrace is how long lookups must keep finding nothing before that is believed,
	// whatever their number. Default 2 × Interval.
	EmptyGrace time.Duration
	// Logger receives failed lookups. Default: discard.
	Logger *slog.Logger
}

// Resolver follows services through DNS SRV records. Create it with [New]; the zero value is
// not usable. It is safe for concurrent use and holds no goroutine of its own; each Watcher it
// returns runs one until closed.
type Resolver struct {
	cfg            Config // immutable after New
	prefix, suffix string // Config.NameTemplate around "{service}"; immutable
	net            *net.Resolver
}

var _ discovery.Resolver = (*Resolver)(nil)

// New validates cfg and returns a resolver. It does not touch the network.
func New(cfg Config) (*Resolver, error) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Interval", cfg.Interval}, {"Timeout", cfg.Timeout}, {"RetryMin", cfg.RetryMin}, {"EmptyGrace", cfg.EmptyGrace}} {
		if d.v < 0 {
			return nil, fmt.Errorf("dns: Config.%s must not be negative, got %v", d.name, d.v)
		}
	}
	if cfg.EmptyAnswers < 0 {
		return nil, fmt.Errorf("dns: Config.EmptyAnswers must not be negative, got %d", cfg.EmptyAnswers)
	}
	prefix, suffix, err := ParseNameTemplate(cfg.NameTemplate)
	if err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = min(time.Second, cfg.Interval)
	}
	if cfg.EmptyAnswers == 0 {
		cfg.EmptyAnswers = 3
	}
	if cfg.EmptyGrace == 0 {
		cfg.EmptyGrace = 2 * cfg.Interval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Resolver{cfg: cfg, prefix: prefix, suffix: suffix, net: net.DefaultResolver}
	if cfg.Server != "" {
		host, port, err := net.SplitHostPort(cfg.Server)
		if err != nil {
			return nil, fmt.Errorf("dns: Config.Server %q: %v", cfg.Server, err)
		}
		if net.ParseIP(host) == nil {
			return nil, fmt.Errorf("dns: Config.Server %q: host must be an IP address", cfg.Server)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("dns: Config.Server %q: port out of range", cfg.Server)
		}
		var d net.Dialer
		server := cfg.Server
		r.net = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, server)
			},
		}
	}
	return r, nil
}

// SRVName returns the SRV name looked up for service: Config.NameTemplate with service in place of
// "{service}". It fails when service is empty or the name is not a valid DNS name.
func (r *Resolver) SRVName(service string) (string, error) {
	name, err := r.srvName(service)
	if err != nil {
		return "", errors.New("dns: " + err.Error())
	}
	return name, nil
}

func (r *Resolver) srvName(service string) (string, error) {
	if service == "" {
		return "", errors.New("service name is empty")
	}
	name := r.prefix + service + r.suffix
	if err := discovery.ValidateHost(trimDot(name)); err != nil {
		return "", fmt.Errorf("service %q: SRV name %q: %s", truncate(service), truncate(name), strings.TrimPrefix(err.Error(), "discovery: "))
	}
	return name, nil
}

// Watch starts following service, through the SRV name Config.NameTemplate maps it to (see
// [Resolver.SRVName]), and returns at once; the first call to Next waits for the first
// lookup.
func (r *Resolver) Watch(_ context.Context, service string) (discovery.Watcher, error) {
	name, err := r.srvName(service)
	if err != nil {
		return nil, fmt.Errorf("dns: Watch: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{
		r:       r,
		service: name,
		feed:    feed.New(r.cfg.EmptyAnswers, r.cfg.EmptyGrace),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go w.run(ctx)
	return w, nil
}

func trimDot(s string) string {
	if len(s) > 1 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

type watcher struct {
	r       *Resolver
	service string
	feed    *feed.Feed
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
	seen    uint64 // only Next touches it
}

func (w *watcher) Next(ctx context.Context) ([]discovery.Endpoint, error) {
	return w.feed.Next(ctx, &w.seen, w.done)
}

func (w *watcher) Status() discovery.Status { return w.feed.Status() }

func (w *watcher) Close() error {
	w.once.Do(w.cancel)
	<-w.done
	return nil
}

func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	cfg := &w.r.cfg
	var lookups uint64
	failures := 0
	for {
		lookups++
		eps, err := w.r.lookup(ctx, w.service)
		wait := cfg.Interval
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			w.feed.Fail(fmt.Errorf("dns: lookup %q: %w", w.service, err), time.Now())
			cfg.Logger.Warn("dns: lookup failed", "service", w.service, "error", err, "failures", failures)
			wait = backoff.HalfJitter(cfg.RetryMin, cfg.Interval, failures)
		default:
			failures = 0
			w.feed.Publish(eps, lookups, time.Now())
		}
		if d := w.feed.EmptyGraceLeft(time.Now()); d > 0 && d < wait {
			wait = d
		}
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

// lookup resolves the SRV name and each target's addresses. A name with no records yields an
// empty set, not an error. Every SRV priority is kept; an endpoint's priority is in
// Meta["priority"] (lower is preferred) and its SRV weight in Weight.
func (r *Resolver) lookup(ctx context.Context, name string) ([]discovery.Endpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	_, srvs, err := r.net.LookupSRV(ctx, "", "", name)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return []discovery.Endpoint{}, nil
		}
		return nil, err
	}
	var eps []discovery.Endpoint
	for _, srv := range srvs {
		if srv.Port == 0 {
			continue // "service not available at this target"
		}
		ips, err := r.net.LookupIPAddr(ctx, srv.Target)
		if err != nil {
			return nil, fmt.Errorf("resolving target %q: %w", srv.Target, err)
		}
		for _, ip := range ips {
			eps = append(eps, discovery.Endpoint{
				Addr:   net.JoinHostPort(ip.IP.String(), strconv.Itoa(int(srv.Port))),
				Weight: uint32(srv.Weight),
				Meta:   map[string]string{"priority": strconv.Itoa(int(srv.Priority))},
			})
		}
	}
	// DNS servers rotate records; sort so that a rotation is not a change.
	slices.SortFunc(eps, func(a, b discovery.Endpoint) int { return cmp.Compare(a.Addr, b.Addr) })
	eps = slices.CompactFunc(eps, func(a, b discovery.Endpoint) bool { return a.Addr == b.Addr })
	if eps == nil {
		eps = []discovery.Endpoint{}
	}
	return eps, nil
}
