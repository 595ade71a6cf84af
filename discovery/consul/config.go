package consul

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config says how to reach Consul and which instances to follow. The zero value follows
// passing instances through a local agent at 127.0.0.1:8500.
type Config struct {
	// Address of the agent: "host:port", "http://host:port" or "https://host:port".
	// Default "127.0.0.1:8500".
	Address string
	// Datacenter to query. Default: the agent's own.
	Datacenter string
	// Token is the ACL token sent with every request. Default: none.
	Token string
	// Tag keeps only instances that carry it. Default: all instances.
	Tag string
	// Near sorts instances by round-trip time from this node ("_agent" for the local agent).
	// Default: Consul's order.
	Near string
	// Filter is a Consul filter expression applied by the server, for example
	// `Service.Meta.version == "v2"`. Default: none.
	Filter string
	// AllowStale lets any server answer, not only the leader (Consul's "stale" consistency
	// mode): reads spread over the servers and go on during an election, at the price of
	// answers that may lag the leader. How far they lag is reported by
	// [Watcher.WatchStatus] (LastContact, KnownLeader). It matters for the queries a server
	// answers: a watch's first query, every query with Near, and those the agent forwards
	// when its streaming view is not ready; the blocking queries an agent answers from its
	// streaming view (Consul 1.10 and later, without Near) ride out elections anyway.
	// Default false: servers forward every query to the leader, and fail it while there is
	// none.
	AllowStale bool
	// Connect follows the instances that accept service-mesh traffic for a service
	// (/v1/health/connect/<name>: the sidecar proxies of its instances and its Connect-native
	// instances) instead of the service's own instances; mesh endpoints are dialled with mTLS
	// (see package connect). WatchChains then judges failovers by the mesh endpoints' health.
	// Default false.
	Connect bool
	// IncludeUnhealthy also returns instances whose checks are not passing. Default false:
	// passing instances only.
	IncludeUnhealthy bool
	// ZoneKey is the key looked up in the service's metadata, then the node's, for an
	// endpoint's zone. Default "zone".
	ZoneKey string
	// WaitTime is the longest a blocking query waits for a change. Default 5 minutes.
	WaitTime time.Duration
	// MaxQueryRate caps queries per second for each watched service (a token bucket with a
	// burst of 2), so that an agent answering at once cannot cause a busy loop. Default 5.
	MaxQueryRate float64
	// RetryMin and RetryMax bound the exponential backoff after an error: the n-th failure in
	// a row waits a delay drawn from [e/2, e], e = min(RetryMin·2^(n-1), RetryMax) (equal
	// jitter; see the Resolver's documentation for what it bounds). RetryMax is also how long
	// an update may wait, at most, after the agent comes back. Defaults 250 ms and 15 s.
	RetryMin, RetryMax time.Duration
	// EmptyAnswers is how many answers in a row, with distinct indexes, must say a service has
	// no instances before a watcher that had some believes it. Default 3.
	EmptyAnswers int
	// EmptyGrace is how long answers must keep saying a service is empty before a watcher that
	// had instances believes it, whatever their number. Default 30 s.
	EmptyGrace time.Duration
	// Logger receives rejected updates and query errors. Default: discard.
	Logger *slog.Logger
	// HTTPClient is used for every request, for example to set TLS. Default: a client with
	// pooled connections and no overall timeout (blocking queries are long).
	HTTPClient *http.Client
}

const (
	defaultAddress      = "127.0.0.1:8500"
	defaultZoneKey      = "zone"
	defaultWaitTime     = 5 * time.Minute
	defaultMaxQueryRate = 5
	defaultRetryMin     = 250 * time.Millisecond
	defaultRetryMax     = 15 * time.Second
	defaultEmptyAnswers = 3
	defaultEmptyGrace   = 30 * time.Second
	queryBurst          = 2
)

// normalize validates cfg and fills in defaults. It returns the scheme and host:port to use.
func (cfg *Config) normalize() (scheme, hostport string, err error) {
	scheme, hostport, err = parseAddress(cfg.Address)
	if err != nil {
		return "", "", err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"WaitTime", cfg.WaitTime}, {"RetryMin", cfg.RetryMin}, {"RetryMax", cfg.RetryMax}, {"EmptyGrace", cfg.EmptyGrace}} {
		if d.v < 0 {
			return "", "", fmt.Errorf("consul: Config.%s must not be negative, got %v", d.name, d.v)
		}
	}
	if cfg.MaxQueryRate < 0 {
		return "", "", fmt.Errorf("consul: Config.MaxQueryRate must not be negative, got %v", cfg.MaxQueryRate)
	}
	if cfg.EmptyAnswers < 0 {
		return "", "", fmt.Errorf("consul: Config.EmptyAnswers must not be negative, got %d", cfg.EmptyAnswers)
	}
	if cfg.ZoneKey == "" {
		cfg.ZoneKey = defaultZoneKey
	}
	if cfg.WaitTime == 0 {
		cfg.WaitTime = defaultWaitTime
	}
	if cfg.MaxQueryRate == 0 {
		cfg.MaxQueryRate = defaultMaxQueryRate
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = defaultRetryMin
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = defaultRetryMax
	}
	if cfg.RetryMax < cfg.RetryMin {
		return "", "", fmt.Errorf("consul: Config.RetryMax (%v) must not be below RetryMin (%v)", cfg.RetryMax, cfg.RetryMin)
	}
	if cfg.EmptyAnswers == 0 {
		cfg.EmptyAnswers = defaultEmptyAnswers
	}
	if cfg.EmptyGrace == 0 {
		cfg.EmptyGrace = defaultEmptyGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return scheme, hostport, nil
}

// parseAddress accepts "host:port" or "http(s)://host:port" and rejects anything else.
func parseAddress(addr string) (scheme, hostport string, err error) {
	if addr == "" {
		return "http", defaultAddress, nil
	}
	scheme, hostport = "http", addr
	if u, perr := url.Parse(addr); perr == nil && u.Scheme != "" && u.Host != "" {
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", "", fmt.Errorf("consul: Config.Address %q: unknown scheme %q (want http or https)", addr, u.Scheme)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return "", "", fmt.Errorf("consul: Config.Address %q: want scheme://host:port with no path, query or credentials", u.Redacted())
		}
		scheme, hostport = u.Scheme, u.Host
	} else if strings.Contains(addr, "://") {
		return "", "", fmt.Errorf("consul: Config.Address %q does not parse", addr)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", "", fmt.Errorf("consul: Config.Address %q: %v", addr, err)
	}
	if host == "" {
		return "", "", fmt.Errorf("consul: Config.Address %q: empty host", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", "", fmt.Errorf("consul: Config.Address %q: port out of range", addr)
	}
	return scheme, hostport, nil
}
