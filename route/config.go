package route

import (
	"encoding/json"
	"errors"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/internal/conf"
)

// Config is a whole route table as users write it in YAML or JSON. It is a plain value; the
// zero value is an empty table that matches nothing, so every request passes through.
//
// Routes are tried in order and the first whose Match matches wins; when none does, Default
// (if set) applies. Build a [Table] with [Compile] or publish it through a [Router].
type Config struct {
	// Routes are tried in order; the first match wins.
	Routes []RouteConfig `json:"routes,omitempty" yaml:"routes,omitempty"`
	// Default applies when no route matches. Its Match must be empty. Default nil: a request
	// no route matches is not routed (Lookup reports false) and passes through unchanged.
	Default *RouteConfig `json:"default,omitempty" yaml:"default,omitempty"`
	// Limits bound what the document may ask of the process. Default: the zero Limits, whose
	// fields all take their defaults.
	Limits Limits `json:"limits,omitempty" yaml:"limits,omitempty"`
}

// Limits bound what a route table may ask of the process that runs it. A zero field takes its
// default; a negative one is a configuration error.
type Limits struct {
	// MaxFaultDelay is the longest delay a fault may inject: a fixed delay, a mean or a max
	// above it is a configuration error, and an exponential delay without its own max is
	// capped at it. Default 10s.
	MaxFaultDelay Duration `json:"maxFaultDelay,omitempty" yaml:"maxFaultDelay,omitempty"`
	// MaxDelayedRequests caps the requests held in injected delays at once, over every route
	// of the table (and the tables a Router reloads to). A request drawn for a delay while the
	// cap is reached is not delayed (its abort, if drawn, still applies); [Table.FaultStats]
	// counts it. Default 1000.
	MaxDelayedRequests int `json:"maxDelayedRequests,omitempty" yaml:"maxDelayedRequests,omitempty"`
	// MaxRegexProgramSize caps the size of every compiled regular expression, counted in
	// instructions of the compiled program (as Envoy bounds its RE2 programs); a larger one is
	// a configuration error. Default 100.
	MaxRegexProgramSize int `json:"maxRegexProgramSize,omitempty" yaml:"maxRegexProgramSize,omitempty"`
}

// Defaults of [Limits].
const (
	DefaultMaxFaultDelay       = 10 * time.Second
	DefaultMaxDelayedRequests  = 1000
	DefaultMaxRegexProgramSize = 100
)

// RouteConfig is one rule: a Match and what to do with a request it matches. At most one of
// Destination, Split and Canary may be set; with none, the request keeps the service named by
// its own host, and the route only adds its overrides, rewrites, shadowing and faults.
type RouteConfig struct {
	// Name labels the route in events, errors and telemetry. Default "routes[i]" (or "default").
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Match says which requests the route takes. The zero value matches every request.
	Match Match `json:"match,omitempty" yaml:"match,omitempty"`

	// Destination sends every matched request to one service (and subset).
	Destination *Destination `json:"destination,omitempty" yaml:"destination,omitempty"`
	// Split spreads matched requests across destinations by relative weight.
	Split []WeightedDestination `json:"split,omitempty" yaml:"split,omitempty"`
	// Canary splits between a stable and a canary destination by percentage, with pinning
	// overrides for trusted callers and optional automated analysis.
	Canary *Canary `json:"canary,omitempty" yaml:"canary,omitempty"`
	// Sticky makes the Split or Canary choice a function of a request key instead of chance,
	// so one user stays on one side. Default nil: each request is drawn at random.
	Sticky *Sticky `json:"sticky,omitempty" yaml:"sticky,omitempty"`
	// Fallback sends the attempts of a request that its chosen split arm or canary side cannot
	// take to the stable destination instead: the canary's Stable, or the split's heaviest arm
	// (the first of the heaviest). An arm cannot take an attempt when it has no endpoint, when
	// every endpoint's breaker is open, or, for a retry, when it has no endpoint the
	// request did not use already (a one-endpoint canary that failed: the retry goes to
	// stable). Such a request counts as a failure of the canary in its analysis, whatever
	// stable answered. A request a trusted caller pinned to a side does not fall back. Only
	// for a route with a Split or a Canary. A gRPC client falls back alike for unary calls
	// and for streams, while the stream's server has sent nothing (no header, no message); an
	// arm with no endpoint READY cannot take an attempt either. Default nil: on; false lets the
	// request fail with the refusal.
	Fallback *bool `json:"fallback,omitempty" yaml:"fallback,omitempty"`

	// Timeout overrides the transport's overall timeout for matched requests. Default 0: the
	// transport's own.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// AttemptTimeout overrides the transport's per-attempt timeout. Default 0: the transport's.
	AttemptTimeout Duration `json:"attemptTimeout,omitempty" yaml:"attemptTimeout,omitempty"`
	// DisableAttemptTimeout turns the transport's per-attempt timeout off for matched
	// requests (with an HTTP client, the attempt timeout bounds only the wait for the response
	// headers; a slow-to-start stream may need it off). It cannot be set with AttemptTimeout.
	// Default false.
	DisableAttemptTimeout bool `json:"disableAttemptTimeout,omitempty" yaml:"disableAttemptTimeout,omitempty"`
	// IdleTimeout overrides the HTTP transport's stream idle timeout: a response body whose
	// read waits this long without a byte is cut (server-sent events, long downloads). gRPC
	// clients ignore it. Default 0: the transport's.
	IdleTimeout Duration `json:"idleTimeout,omitempty" yaml:"idleTimeout,omitempty"`
	// DisableIdleTimeout turns the transport's stream idle timeout off for matched requests.
	// It cannot be set with IdleTimeout. Default false.
	DisableIdleTimeout bool `json:"disableIdleTimeout,omitempty" yaml:"disableIdleTimeout,omitempty"`
	// Retry overrides the transport's retry policy. Default nil: the transport's.
	Retry *RetryOverride `json:"retry,omitempty" yaml:"retry,omitempty"`
	// Hedge overrides the transport's hedging policy. Default nil: the transport's.
	Hedge *HedgeOverride `json:"hedge,omitempty" yaml:"hedge,omitempty"`
	// HashPolicy replaces, for matched requests, the hash policies of the destination's
	// balancer (balancer.Config.HashPolicy): how the request's hash key is made, for the
	// consistent-hashing balancer policies (maglev, ring_hash; others read no key), with
	// the semantics of [balancer.HashPolicy]. It chooses an endpoint within the destination
	// the route chose, never the destination, and counts for every caller. At most
	// balancer.MaxHashPolicies. Default empty: the destination's own.
	HashPolicy []balancer.HashPolicy `json:"hashPolicy,omitempty" yaml:"hashPolicy,omitempty"`

	// RequestHeaders changes the headers of matched requests. Default: unchanged.
	RequestHeaders HeaderRewrite `json:"requestHeaders,omitempty" yaml:"requestHeaders,omitempty"`
	// ResponseHeaders changes the headers of their responses. Default: unchanged.
	ResponseHeaders HeaderRewrite `json:"responseHeaders,omitempty" yaml:"responseHeaders,omitempty"`
	// Rewrite changes the request path. Default nil: unchanged.
	Rewrite *Rewrite `json:"rewrite,omitempty" yaml:"rewrite,omitempty"`

	// Shadow mirrors a sample of matched requests to another destination. Default nil: none.
	Shadow *Shadow `json:"shadow,omitempty" yaml:"shadow,omitempty"`
	// Fault injects delays and aborts into matched requests. Default nil: none.
	Fault *Fault `json:"fault,omitempty" yaml:"fault,omitempty"`
	// Edge is what an edge server does to matched requests before its handler sees them (a
	// body limit, header transforms): see [Edge]. Default nil: nothing.
	Edge *Edge `json:"edge,omitempty" yaml:"edge,omitempty"`
}

// Match selects requests. Every condition that is set must hold; an empty Match matches
// every request.
type Match struct {
	// Hosts lists accepted hosts, compared without the port and ignoring case; "*.example.com"
	// matches any subdomain of example.com. Default empty: any host.
	Hosts []string `json:"hosts,omitempty" yaml:"hosts,omitempty"`
	// Path matches the URL path. Default nil: any path.
	Path *StringMatch `json:"path,omitempty" yaml:"path,omitempty"`
	// Methods lists accepted HTTP methods (upper case). Default empty: any method.
	Methods []string `json:"methods,omitempty" yaml:"methods,omitempty"`
	// Headers must all match (for gRPC, metadata). Default empty: no condition.
	Headers []HeaderMatch `json:"headers,omitempty" yaml:"headers,omitempty"`
	// Query must all match the URL's query parameters. Default empty: no condition.
	Query []QueryMatch `json:"query,omitempty" yaml:"query,omitempty"`
	// GRPC matches the gRPC full method name. Default nil: no condition.
	GRPC *GRPCMatch `json:"grpc,omitempty" yaml:"grpc,omitempty"`
}

// StringMatch matches a string; exactly one field must be set.
type StringMatch struct {
	Exact  string `json:"exact,omitempty" yaml:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	// Regex is an RE2 expression that must match the whole string (it is anchored).
	Regex string `json:"regex,omitempty" yaml:"regex,omitempty"`
}

// HeaderMatch matches one header by name. Exactly one of Exact, Prefix, Regex, Present and
// Absent must be set. A header with several values matches when any value does.
type HeaderMatch struct {
	// Name is the header name, in any case. Required.
	Name   string `json:"name" yaml:"name"`
	Exact  string `json:"exact,omitempty" yaml:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	// Regex is an RE2 expression that must match the whole value (it is anchored).
	Regex string `json:"regex,omitempty" yaml:"regex,omitempty"`
	// Present matches when the header is there, whatever its value.
	Present bool `json:"present,omitempty" yaml:"present,omitempty"`
	// Absent matches when the header is not there.
	Absent bool `json:"absent,omitempty" yaml:"absent,omitempty"`
}

// QueryMatch matches one URL query parameter by name (case-sensitive), with the same rules
// as [HeaderMatch].
type QueryMatch struct {
	Name    string `json:"name" yaml:"name"`
	Exact   string `json:"exact,omitempty" yaml:"exact,omitempty"`
	Prefix  string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	Regex   string `json:"regex,omitempty" yaml:"regex,omitempty"`
	Present bool   `json:"present,omitempty" yaml:"present,omitempty"`
	Absent  bool   `json:"absent,omitempty" yaml:"absent,omitempty"`
}

// GRPCMatch matches a gRPC full method name, "/package.Service/Method".
type GRPCMatch struct {
	// Service is the fully qualified service, e.g. "helloworld.Greeter". Required.
	Service string `json:"service" yaml:"service"`
	// Method is the method name, e.g. "SayHello". Default empty: any method of Service.
	Method string `json:"method,omitempty" yaml:"method,omitempty"`
}

// Destination names where a request goes: a service and, optionally, a subset of its
// endpoints.
type Destination struct {
	// Service is the service name the resolver knows (a host name, optionally with a port).
	// Required.
	Service string `json:"service,omitempty" yaml:"service,omitempty"`
	// Subset narrows the service's endpoints. Default: all of them.
	Subset Subset `json:"subset,omitempty" yaml:"subset,omitempty"`

	key string // Service + subset key, set by Compile
}

// WeightedDestination is one arm of a Split.
type WeightedDestination struct {
	Destination `yaml:",inline"`
	// Weight is the arm's relative share, a whole number. 0 (the default) sends the arm no
	// traffic; a split whose arms all weigh 0 is a configuration error.
	Weight uint32 `json:"weight,omitempty" yaml:"weight,omitempty"`
}

// Canary splits traffic between a stable and a canary destination.
type Canary struct {
	// Stable receives what the canary does not. Required.
	Stable Destination `json:"stable" yaml:"stable"`
	// Canary is the new version. Required.
	Canary Destination `json:"canary" yaml:"canary"`
	// Weight is the percentage (0 to 100) of requests sent to the canary. Default 0. With
	// Analysis set it is the starting weight.
	Weight float64 `json:"weight,omitempty" yaml:"weight,omitempty"`
	// Override lets trusted callers pin a request to a side. Default nil: no pinning.
	Override *CanaryOverride `json:"override,omitempty" yaml:"override,omitempty"`
	// Analysis steps Weight up while the canary is healthy and rolls it back to 0 when it is
	// not. Default nil: the weight is fixed.
	Analysis *Analysis `json:"analysis,omitempty" yaml:"analysis,omitempty"`
}

// CanaryOverride pins a request to a side by a header or cookie value. It is honoured only
// for callers the table's trust predicate accepts (see [WithTrust]); others are split
// normally.
type CanaryOverride struct {
	// Header whose value picks the side. At least one of Header and Cookie is required.
	Header string `json:"header,omitempty" yaml:"header,omitempty"`
	// Cookie whose value picks the side; the header wins when both are there.
	Cookie string `json:"cookie,omitempty" yaml:"cookie,omitempty"`
	// CanaryValue pins to the canary. Default "canary".
	CanaryValue string `json:"canaryValue,omitempty" yaml:"canaryValue,omitempty"`
	// StableValue pins to the stable side. Default "stable".
	StableValue string `json:"stableValue,omitempty" yaml:"stableValue,omitempty"`
}

// Sticky names the request key hashed to choose an arm. The first that is non-empty on a
// request wins, in this order: Key, Header, Cookie; a request with none is drawn at random.
// Exactly one source must be configured, or Key together with a Header or Cookie fallback.
type Sticky struct {
	// Key uses [Request].Key, which the application sets (for example to the verified JWT
	// subject).
	Key bool `json:"key,omitempty" yaml:"key,omitempty"`
	// Header hashes this header's first value. The caller writes it, so it counts only for
	// callers the trust predicate admits (see [WithTrust]); others are split at random, so
	// that no one chooses its arm (the canary's, say) by choosing the value.
	Header string `json:"header,omitempty" yaml:"header,omitempty"`
	// Cookie hashes this cookie's value, for trusted callers only, as Header.
	Cookie string `json:"cookie,omitempty" yaml:"cookie,omitempty"`
}

// Analysis configures automated canary analysis; see [Analyzer].
type Analysis struct {
	// Interval is how often the canary is judged and, if healthy, stepped up. Default 1m.
	Interval Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	// Step is how many percentage points each healthy interval adds. Default 10.
	Step float64 `json:"step,omitempty" yaml:"step,omitempty"`
	// MaxWeight is where stepping stops (promotion). Default 100.
	MaxWeight float64 `json:"maxWeight,omitempty" yaml:"maxWeight,omitempty"`
	// MinRequests is how many canary requests an interval needs before it is judged; an
	// interval with fewer is extended. Default 50.
	MinRequests int `json:"minRequests,omitempty" yaml:"minRequests,omitempty"`
	// MaxErrorRateIncrease is how many percentage points the canary's error rate may exceed
	// the stable side's. Default 1.
	MaxErrorRateIncrease float64 `json:"maxErrorRateIncrease,omitempty" yaml:"maxErrorRateIncrease,omitempty"`
	// MaxLatencyRatio is how many times the stable p99 latency the canary's p99 may reach
	// (plus LatencySlack). Default 1.5.
	MaxLatencyRatio float64 `json:"maxLatencyRatio,omitempty" yaml:"maxLatencyRatio,omitempty"`
	// LatencySlack is added to the latency bound so that tiny latencies do not trip it.
	// Default 5ms.
	LatencySlack Duration `json:"latencySlack,omitempty" yaml:"latencySlack,omitempty"`
}

// RetryOverride replaces parts of the transport's retry policy for one route. Zero fields
// keep the transport's values.
type RetryOverride struct {
	// Disable turns retries off for the route.
	Disable bool `json:"disable,omitempty" yaml:"disable,omitempty"`
	// MaxRetries replaces the retry count. Default 0: the transport's.
	MaxRetries int `json:"maxRetries,omitempty" yaml:"maxRetries,omitempty"`
	// Statuses replaces the retried response codes. Default empty: the transport's.
	Statuses []int `json:"statuses,omitempty" yaml:"statuses,omitempty"`
	// RetryNonIdempotent also retries non-idempotent methods. Default false: the transport's.
	RetryNonIdempotent bool `json:"retryNonIdempotent,omitempty" yaml:"retryNonIdempotent,omitempty"`
	// BackoffBase and BackoffMax replace the backoff bounds. Default 0: the transport's.
	BackoffBase Duration `json:"backoffBase,omitempty" yaml:"backoffBase,omitempty"`
	BackoffMax  Duration `json:"backoffMax,omitempty" yaml:"backoffMax,omitempty"`
}

// HedgeOverride replaces the transport's hedging policy for one route.
type HedgeOverride struct {
	// Disable turns hedging off for the route.
	Disable bool `json:"disable,omitempty" yaml:"disable,omitempty"`
	// Delay before each hedge. Required unless Disable.
	Delay Duration `json:"delay,omitempty" yaml:"delay,omitempty"`
	// MaxHedges is how many extra attempts a request may send. Default 1.
	MaxHedges int `json:"maxHedges,omitempty" yaml:"maxHedges,omitempty"`
}

// HeaderRewrite changes headers: Remove first, then Set (replacing), then Add (appending).
type HeaderRewrite struct {
	Set    map[string]string `json:"set,omitempty" yaml:"set,omitempty"`
	Add    map[string]string `json:"add,omitempty" yaml:"add,omitempty"`
	Remove []string          `json:"remove,omitempty" yaml:"remove,omitempty"`
}

// Rewrite changes the request path. Exactly one of Prefix and Regex must be set.
type Rewrite struct {
	// Prefix replaces the prefix the route matched; the route's Match.Path must be a Prefix.
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	// Regex finds what to replace by Substitution (which may use $1 and ${name}).
	Regex        string `json:"regex,omitempty" yaml:"regex,omitempty"`
	Substitution string `json:"substitution,omitempty" yaml:"substitution,omitempty"`
}

// Shadow mirrors matched requests to a shadow destination; see [Shadower].
type Shadow struct {
	// Destination receives the copies: its service is required (a config without
	// shadow.destination.service is refused), and its subset, when given, narrows the
	// endpoints copies may reach. Copies carry the "-shadow" host suffix and marker header.
	Destination Destination `json:"destination,omitempty" yaml:"destination,omitempty"`
	// Percent of matched requests mirrored, 0 to 100. Default 0 means 100.
	Percent float64 `json:"percent,omitempty" yaml:"percent,omitempty"`
	// AllowNonIdempotent also mirrors POST and PATCH. Default false.
	AllowNonIdempotent bool `json:"allowNonIdempotent,omitempty" yaml:"allowNonIdempotent,omitempty"`
	// MaxConcurrency caps this route's shadow requests in flight; more are dropped. Default 16.
	MaxConcurrency int `json:"maxConcurrency,omitempty" yaml:"maxConcurrency,omitempty"`
	// MaxBodyBytes caps the body copied; a larger request is not mirrored. Default 64 KiB.
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty" yaml:"maxBodyBytes,omitempty"`
	// Timeout bounds one shadow request. Default 5s.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// CompareBody also compares a hash of the response bodies. Default false: status only.
	CompareBody bool `json:"compareBody,omitempty" yaml:"compareBody,omitempty"`
}

// Fault injects a delay, an abort, or both (delay first) into matched requests.
//
// Who triggers it: a fault on a route whose match reads input the caller controls (a header
// or gRPC metadata condition, which includes the Cookie header, a query parameter condition,
// or a host condition) is injected only into requests whose caller the table's trust predicate
// admits (see [WithTrust]; by default none is). For any other caller the route still matches
// and does everything else it says (destination, rewrites, overrides), but injects nothing. A
// fault on a route matched only by path, method or gRPC method, or by nothing, applies to every
// request. Set AllCallers to inject a caller-matched fault into every caller's requests.
type Fault struct {
	Delay *DelayFault `json:"delay,omitempty" yaml:"delay,omitempty"`
	Abort *AbortFault `json:"abort,omitempty" yaml:"abort,omitempty"`
	// AllCallers injects the fault into the requests of untrusted callers too, even when the
	// route matches on caller-controlled input (for example a client's fault on calls to one
	// host, which that client's own requests carry). Default false.
	AllCallers bool `json:"allCallers,omitempty" yaml:"allCallers,omitempty"`
}

// DelayFault delays a percentage of requests. Exactly one of Fixed, Mean (exponential
// distribution, capped at Max) and Max (uniform between Min and Max) says how long.
type DelayFault struct {
	// Percent of requests delayed, 0 to 100; an explicit 0 delays none. Default (nil, the
	// field absent): 100.
	Percent *float64 `json:"percent,omitempty" yaml:"percent,omitempty"`
	// Fixed delays by exactly this much.
	Fixed Duration `json:"fixed,omitempty" yaml:"fixed,omitempty"`
	// Mean draws from an exponential distribution with this mean, capped at Max (default
	// 10×Mean).
	Mean Duration `json:"mean,omitempty" yaml:"mean,omitempty"`
	// Min and Max bound a uniform distribution (without Mean), or cap the exponential one.
	Min Duration `json:"min,omitempty" yaml:"min,omitempty"`
	Max Duration `json:"max,omitempty" yaml:"max,omitempty"`
}

// AbortFault fails a percentage of requests without sending them.
type AbortFault struct {
	// Percent of requests aborted, 0 to 100; an explicit 0 aborts none. Default (nil, the
	// field absent): 100.
	Percent *float64 `json:"percent,omitempty" yaml:"percent,omitempty"`
	// HTTPStatus answered to HTTP requests. Default 503.
	HTTPStatus int `json:"httpStatus,omitempty" yaml:"httpStatus,omitempty"`
	// GRPCCode returned to gRPC calls (a google.golang.org/grpc/codes value, 1 to 16).
	// Default 14 (Unavailable).
	GRPCCode int `json:"grpcCode,omitempty" yaml:"grpcCode,omitempty"`
}

// Percent returns a pointer to p, for the Percent fields of [DelayFault] and [AbortFault].
func Percent(p float64) *float64 { return &p }

// Duration is a time.Duration that reads and writes as a Go duration string ("250ms", "1m")
// in JSON and YAML.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "1.5s"; a bare number is refused.
func (d *Duration) UnmarshalJSON(b []byte) error {
	return nullOK(conf.UnmarshalJSON(b, (*time.Duration)(d)))
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string such as "1.5s"; a bare number is refused.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	return nullOK(conf.UnmarshalYAML(n, (*time.Duration)(d)))
}

// nullOK reads a null (the decoder's ErrEmpty) as "leave the zero value".
func nullOK(err error) error {
	if errors.Is(err, conf.ErrEmpty) {
		return nil
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ConfigError is a configuration problem at a path in the document, such as
// "routes[2].match.path.regex". Its message reads "route: <path>: <problem>".
type ConfigError struct {
	Path string // the field's path, in the document's own (json/yaml) names
	// Line and Column locate the problem in the document, 1-based; 0 when it is not a
	// problem of the document's syntax or shape (a check Compile makes).
	Line, Column int
	Err          error // the problem
}

func (e *ConfigError) Error() string {
	msg := "route: " + e.Err.Error()
	if e.Path != "" {
		msg = "route: " + e.Path + ": " + e.Err.Error()
	}
	if loc := conf.Location(e.Line, e.Column); loc != "" {
		msg += " (" + loc + ")"
	}
	return msg
}

// Unwrap returns the problem.
func (e *ConfigError) Unwrap() error { return e.Err }

// ErrInvalidConfig is matched (with errors.Is) by every error ParseConfig and Compile return
// for a bad document.
var ErrInvalidConfig = errors.New("route: invalid config")

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// ParseConfig reads a route table from YAML or JSON (a document whose first non-blank
// character is '{' is read as JSON), refusing unknown and repeated fields, and validates it as
// [Compile] would. Keys are camelCase and durations strings such as "250ms". Every error is a
// *[ConfigError] naming the field's path and, for a problem of the document's syntax or
// shape, its line and column.
func ParseConfig(data []byte) (Config, error) {
	cfg, err := decode(data)
	if err != nil {
		return Config{}, err
	}
	if _, err := compile(cfg, nil, nil); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// errEmptyDocument refuses a document with nothing in it: a reload that read a truncated or
// not yet written file must not wipe every route.
var errEmptyDocument = &ConfigError{Err: errors.New("empty document: write \"routes: []\" for a table without routes")}

// decode reads a document without validating it.
func decode(data []byte) (Config, error) {
	var cfg Config
	if err := conf.Decode(data, &cfg); err != nil {
		return Config{}, configError(err)
	}
	if cfg.Routes == nil && cfg.Default == nil {
		// "{}", a file cut off after "routes:": nothing was said, which is not the same as
		// "no routes" ("routes: []"), and a reload must not read it as that.
		return Config{}, errEmptyDocument
	}
	return cfg, nil
}

// configError turns a decoding error into a *ConfigError.
func configError(err error) error {
	var ce *conf.Error
	switch {
	case errors.Is(err, conf.ErrEmpty):
		return errEmptyDocument
	case errors.As(err, &ce):
		return &ConfigError{Path: ce.Path, Line: ce.Line, Column: ce.Column, Err: ce.Err}
	}
	return &ConfigError{Err: err}
}

// UnmarshalJSON reads c strictly, as [ParseConfig] does (camelCase keys, duration strings,
// unknown fields refused), without validating it; errors are *[ConfigError]s.
func (c *Config) UnmarshalJSON(b []byte) error {
	var cfg Config
	if err := conf.UnmarshalJSON(b, &cfg); err != nil {
		return configError(err)
	}
	*c = cfg
	return nil
}

// UnmarshalYAML reads c strictly, as [ParseConfig] does, without validating it; errors are
// *[ConfigError]s with the line in the caller's document.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	var cfg Config
	if err := conf.UnmarshalYAML(n, &cfg); err != nil {
		return configError(err)
	}
	*c = cfg
	return nil
}
