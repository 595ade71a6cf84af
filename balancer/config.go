package balancer

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Policy names a balancing policy. The zero value "" is [PolicyPeakEWMA]. Policies are plain
// strings so that a [Config] loads from YAML or JSON as written.
type Policy string

// Policies.
const (
	// PolicyPeakEWMA is power of two choices over a peak-sensitive moving average of
	// latency multiplied by in-flight requests, as in Finagle and Linkerd. The default.
	PolicyPeakEWMA Policy = "peak_ewma"
	// PolicyRoundRobin cycles through the endpoints in order, ignoring weights.
	PolicyRoundRobin Policy = "round_robin"
	// PolicyWeightedRoundRobin cycles through the endpoints in proportion to their weights,
	// spreading each endpoint's turns evenly (stride scheduling, lock-free).
	PolicyWeightedRoundRobin Policy = "weighted_round_robin"
	// PolicyRandom picks uniformly at random, in proportion to weight.
	PolicyRandom Policy = "random"
	// PolicyLeastRequest is power of two choices over in-flight requests divided by weight.
	PolicyLeastRequest Policy = "least_request"
	// PolicyMaglev is consistent hashing with a Maglev lookup table keyed by
	// [PickInfo].Key, for sticky routing. A pick without a key is random.
	PolicyMaglev Policy = "maglev"
	// PolicyRingHash is consistent hashing on a hash ring (Envoy's ring_hash, Karger et al.)
	// keyed by [PickInfo].Key: each endpoint has points on the ring in proportion to its
	// weight ([RingHashConfig]) and a key goes to the first point at or after it. A pick
	// without a key is random.
	PolicyRingHash Policy = "ring_hash"
)

var policies = []Policy{PolicyPeakEWMA, PolicyRoundRobin, PolicyWeightedRoundRobin, PolicyRandom, PolicyLeastRequest, PolicyMaglev, PolicyRingHash}

// Hashing reports whether p is a consistent-hashing policy, which reads [PickInfo].Key.
func (p Policy) Hashing() bool { return p == PolicyMaglev || p == PolicyRingHash }

// String returns the policy's name, with "" read as "peak_ewma".
func (p Policy) String() string {
	if p == "" {
		return string(PolicyPeakEWMA)
	}
	return string(p)
}

func (p Policy) valid() bool {
	for _, q := range policies {
		if p == q {
			return true
		}
	}
	return false
}

// Config configures a [Balancer]. It is a plain struct so that it loads from YAML or JSON;
// the zero value of every field means the default stated in its comment (also exported as
// the Default* constants below). In YAML and JSON keys are camelCase and durations strings
// such as "30s" (see [Config.UnmarshalJSON]).
type Config struct {
	// Policy chooses the balancing policy. Default: PolicyPeakEWMA.
	Policy Policy `json:"policy,omitempty" yaml:"policy,omitempty"`

	// DecayTime is the time constant of the peak EWMA: how fast an old latency observation
	// fades. Only PolicyPeakEWMA uses it. Default: 10s.
	DecayTime time.Duration `json:"decayTime,omitempty" yaml:"decayTime,omitempty"`

	// Zone configures zone-aware routing. Default: zone-unaware.
	Zone ZoneConfig `json:"zone,omitempty" yaml:"zone,omitempty"`

	// Outlier configures passive outlier ejection. Default: on, with Envoy's semantics and
	// the defaults stated on the fields of [OutlierConfig] (5 gateway failures in a row,
	// 30s base and 300s max ejection time, at most 50% ejected).
	Outlier OutlierConfig `json:"outlier,omitempty" yaml:"outlier,omitempty"`

	// PanicThreshold is a percentage in [0,100]: when fewer than this share of the endpoints
	// are healthy (not ejected, not failing active health checks), the balancer spreads load
	// over all endpoints, healthy or not, rather than piling onto the few left. A negative
	// value turns panic mode off. Default: 50.
	PanicThreshold float64 `json:"panicThreshold,omitempty" yaml:"panicThreshold,omitempty"`

	// SlowStart configures the ramp-up of new endpoints. Default: off.
	SlowStart SlowStartConfig `json:"slowStart,omitempty" yaml:"slowStart,omitempty"`

	// MaxRetryAfter caps how long a [DoneInfo].RetryAfter steers picks away from an
	// endpoint. Default: 60s.
	MaxRetryAfter time.Duration `json:"maxRetryAfter,omitempty" yaml:"maxRetryAfter,omitempty"`

	// MaglevTableSize is the size of the Maglev lookup table; it must be a prime of at most
	// 5000011 (Envoy's bound). Only PolicyMaglev uses it. When the endpoint set is larger than a tenth of it, a larger prime
	// is used. Default: 65537.
	MaglevTableSize int `json:"maglevTableSize,omitempty" yaml:"maglevTableSize,omitempty"`

	// HealthCheck configures active health checks. Default (nil): none.
	HealthCheck *HealthCheck `json:"healthCheck,omitempty" yaml:"healthCheck,omitempty"`

	// Limits caps the destination's connections, pending requests, requests and retries, as
	// Envoy's circuit-breaker thresholds; the client enforces them through
	// [Balancer.Limiter]. Default: no limits.
	Limits Limits `json:"limits,omitempty" yaml:"limits,omitempty"`

	// RingHash sizes the ring of PolicyRingHash. Default: Envoy's sizes (see RingHashConfig).
	RingHash RingHashConfig `json:"ringHash,omitzero" yaml:"ringHash,omitempty"`

	// HashPolicy says how the clients (package middleware's Transport and GRPCClient, and
	// package balancer/grpcbalancer's picker) make the hash key of a request to the
	// destination: see [HashPolicy] for the semantics of the list and for trust. Only the
	// hashing policies (PolicyMaglev, PolicyRingHash) read keys, so it must be empty with any
	// other; a route's own hashPolicy replaces it for the requests the route matches. At most
	// MaxHashPolicies. Default empty: no key, picks are random.
	HashPolicy []HashPolicy `json:"hashPolicy,omitempty" yaml:"hashPolicy,omitempty"`
}

// RingHashConfig sizes the ring of [PolicyRingHash], as Envoy's ring_hash does: the ring has
// about MinimumRingSize points, or more when the lightest endpoint would get less than one
// point (weights far apart), but never more than MaximumRingSize. More points spread keys
// more evenly and cost memory (12 bytes a point) and time to build at each endpoint update.
type RingHashConfig struct {
	// MinimumRingSize is the least number of points, at most MaxRingSize. Default 1024.
	MinimumRingSize int `json:"minimumRingSize,omitempty" yaml:"minimumRingSize,omitempty"`
	// MaximumRingSize caps the number of points, at most MaxRingSize (8M). Default 4096 (or
	// MinimumRingSize when that is larger), as gRPC's ring_hash; Envoy's default is 8M, but
	// endpoint weights come from discovery, and one endpoint weighing a million times another
	// must not cost a 100 MB ring.
	MaximumRingSize int `json:"maximumRingSize,omitempty" yaml:"maximumRingSize,omitempty"`
}

// ZoneConfig configures zone-aware routing. Endpoints are grouped into priority levels: the
// local zone first, then the zones of Failover in order, then all remaining zones together.
// A level takes all the traffic while at least MinHealthyPercent of its endpoints are
// healthy; below that it keeps a proportional share and the rest spills to the next levels
// (Envoy's priority load with an overprovisioning factor of 100/MinHealthyPercent).
type ZoneConfig struct {
	// Local is the caller's zone. Default "": zone-unaware, all endpoints form one level.
	Local string `json:"local,omitempty" yaml:"local,omitempty"`
	// Failover lists other zones in the order to fail over to. Zones not listed come last,
	// as one level. Default: none.
	Failover []string `json:"failover,omitempty" yaml:"failover,omitempty"`
	// MinHealthyPercent, in (0,100], is the share of a level's endpoints that must be healthy
	// for the level to keep all its traffic. Default: 70.
	MinHealthyPercent float64 `json:"minHealthyPercent,omitempty" yaml:"minHealthyPercent,omitempty"`
}

// OutlierConfig configures passive outlier ejection with Envoy's semantics: an endpoint
// that answers ConsecutiveGatewayFailure gateway failures in a row is ejected for
// BaseEjectionTime × the number of times it has been ejected, capped at MaxEjectionTime,
// unless ejecting it would put more than MaxEjectionPercent of the endpoints in ejection
// (counted with this ejection included). An ejected endpoint returns by itself when its time
// is up; the count of times ejected drops by one for each BaseEjectionTime it then stays in.
type OutlierConfig struct {
	// Disabled turns outlier ejection off. Default: false (ejection on).
	Disabled bool `json:"disabled,omitempty" yaml:"disabled,omitempty"`
	// ConsecutiveGatewayFailure is the number of gateway failures in a row (connect errors,
	// 502, 503, 504: Outcome GatewayFailure) that ejects. Other failures reset the count, as
	// in Envoy. Default: 5.
	ConsecutiveGatewayFailure int `json:"consecutiveGatewayFailure,omitempty" yaml:"consecutiveGatewayFailure,omitempty"`
	// ConsecutiveFailure is the number of failures of any kind in a row (Failure or
	// GatewayFailure, like Envoy's consecutive_5xx) that ejects. Default: 0, this check off.
	ConsecutiveFailure int `json:"consecutiveFailure,omitempty" yaml:"consecutiveFailure,omitempty"`
	// BaseEjectionTime is the ejection time of a first ejection. Default: 30s.
	BaseEjectionTime time.Duration `json:"baseEjectionTime,omitempty" yaml:"baseEjectionTime,omitempty"`
	// MaxEjectionTime caps the ejection time. It must not be below BaseEjectionTime.
	// Default: 300s.
	MaxEjectionTime time.Duration `json:"maxEjectionTime,omitempty" yaml:"maxEjectionTime,omitempty"`
	// MaxEjectionPercent, in [0,100], caps the share of endpoints ejected at once. Zero means
	// the default; to forbid ejection, set Disabled. Default: 50.
	MaxEjectionPercent float64 `json:"maxEjectionPercent,omitempty" yaml:"maxEjectionPercent,omitempty"`
	// AlwaysEjectOne lets one endpoint be ejected even when that alone exceeds
	// MaxEjectionPercent (Envoy's always_eject_one_host). Default: false.
	AlwaysEjectOne bool `json:"alwaysEjectOne,omitempty" yaml:"alwaysEjectOne,omitempty"`
	// Interval is how often the success-rate and failure-percentage checks run, each over
	// the requests that ended since the last run. Only those checks use it. Default: 10s.
	Interval time.Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	// SuccessRate configures ejection of endpoints whose success rate is far below the
	// others'. Default (nil): off.
	SuccessRate *SuccessRateEjection `json:"successRate,omitempty" yaml:"successRate,omitempty"`
	// FailurePercentage configures ejection of endpoints whose share of failures is over a
	// threshold. Default (nil): off.
	FailurePercentage *FailurePercentageEjection `json:"failurePercentage,omitempty" yaml:"failurePercentage,omitempty"`
}

// SuccessRateEjection configures success-rate outlier detection, with Envoy's and gRPC's
// (A50) semantics. Every OutlierConfig.Interval, the endpoints with at least RequestVolume
// requests in the interval are counted; when there are at least MinimumHosts of them, the
// mean and the (population) standard deviation of their success rates are computed, and each
// of them whose success rate is below mean − stdev × StdevFactor/1000 is ejected, with
// probability EnforcementPercentage/100, within OutlierConfig.MaxEjectionPercent. One
// deliberate difference: the spread used for an endpoint is at least the sampling error of
// its rate, √(mean·(1−mean)/requests), so that endpoints failing alike are not ejected for
// the noise of counting (with five endpoints a rate one request below four equal ones is
// two standard deviations down; Envoy and gRPC would eject it). A request
// counts as a failure when its Outcome is OutcomeFailure or OutcomeGatewayFailure; requests
// reported with OutcomeIgnore (the caller cancelled, a local refusal) do not count.
type SuccessRateEjection struct {
	// StdevFactor is the number of standard deviations, times 1000, below the mean that
	// ejects: 1900 means 1.9. Default: 1900.
	StdevFactor int `json:"stdevFactor,omitempty" yaml:"stdevFactor,omitempty"`
	// EnforcementPercentage, in [0,100], is the chance that an outlier found is ejected.
	// Zero means the default. Default: 100.
	EnforcementPercentage int `json:"enforcementPercentage,omitempty" yaml:"enforcementPercentage,omitempty"`
	// MinimumHosts is how many endpoints must have RequestVolume requests in the interval
	// for the check to run. Default: 5.
	MinimumHosts int `json:"minimumHosts,omitempty" yaml:"minimumHosts,omitempty"`
	// RequestVolume is how many requests an endpoint needs in the interval to take part.
	// Default: 100.
	RequestVolume int `json:"requestVolume,omitempty" yaml:"requestVolume,omitempty"`
}

// FailurePercentageEjection configures failure-percentage outlier detection, with Envoy's and
// gRPC's (A50) semantics. Every OutlierConfig.Interval, when at least MinimumHosts endpoints
// had RequestVolume requests in the interval, each of those whose share of failures is above
// Threshold percent is ejected, with probability EnforcementPercentage/100, within
// OutlierConfig.MaxEjectionPercent. Failures are counted as for [SuccessRateEjection].
type FailurePercentageEjection struct {
	// Threshold, in [0,100], is the failure percentage above which an endpoint is ejected.
	// Zero means the default. Default: 85.
	Threshold int `json:"threshold,omitempty" yaml:"threshold,omitempty"`
	// EnforcementPercentage, in [0,100], is the chance that an outlier found is ejected.
	// Zero means the default. Default: 100.
	EnforcementPercentage int `json:"enforcementPercentage,omitempty" yaml:"enforcementPercentage,omitempty"`
	// MinimumHosts is how many endpoints must have RequestVolume requests in the interval
	// for the check to run. Default: 5.
	MinimumHosts int `json:"minimumHosts,omitempty" yaml:"minimumHosts,omitempty"`
	// RequestVolume is how many requests an endpoint needs in the interval to take part.
	// Default: 50.
	RequestVolume int `json:"requestVolume,omitempty" yaml:"requestVolume,omitempty"`
}

// SlowStartConfig configures slow start: an endpoint that joins the set (after the first
// non-empty one) or returns from ejection receives weight × max(MinWeightPercent/100,
// age/Window) until its age reaches Window.
type SlowStartConfig struct {
	// Window is the ramp-up time. Default: 0, slow start off.
	Window time.Duration `json:"window,omitempty" yaml:"window,omitempty"`
	// MinWeightPercent, in (0,100], is the share of its weight an endpoint gets at the start
	// of the window. Default: 10.
	MinWeightPercent float64 `json:"minWeightPercent,omitempty" yaml:"minWeightPercent,omitempty"`
}

// HealthCheck configures active health checks: every Interval, a probe of each endpoint of
// the Kind configured (by default an HTTP GET of Path, which passes on a status of
// ExpectedStatuses, 2xx by default); a probe that passes within Timeout is a passed check. An
// endpoint starts healthy, turns unhealthy after UnhealthyThreshold failed checks in a row,
// and healthy again after HealthyThreshold passed checks in a row. Unhealthy endpoints are
// left out like ejected ones.
type HealthCheck struct {
	// Kind is the kind of probe: "http" (a GET of Path), "tcp" (a TCP connection that opens
	// passes) or "grpc" (grpc.health.v1's Check of GRPCService, which passes on SERVING;
	// registered by package balancer/grpcbalancer, which must be imported), or a kind
	// registered with [RegisterProber]. Default: "http".
	Kind string `json:"kind,omitempty" yaml:"kind,omitempty"`
	// Path is the request path of an HTTP check. Default: "/healthz".
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
	// Scheme is "http" or "https" (for a gRPC check: TLS with the system's roots).
	// Default: "http".
	Scheme string `json:"scheme,omitempty" yaml:"scheme,omitempty"`
	// ExpectedStatuses lists the HTTP statuses that pass an HTTP check, as ranges
	// [Start, End), as in Envoy. Default: [200, 300).
	ExpectedStatuses []StatusRange `json:"expectedStatuses,omitempty" yaml:"expectedStatuses,omitempty"`
	// GRPCService is the service name a gRPC check asks about; "" asks about the server as a
	// whole. Default: "".
	GRPCService string `json:"grpcService,omitempty" yaml:"grpcService,omitempty"`
	// Interval is the time between two checks of an endpoint. Default: 10s.
	Interval time.Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	// Timeout bounds one check; it must be below Interval. Default: 1s.
	Timeout time.Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// HealthyThreshold is the number of passed checks in a row that make an unhealthy
	// endpoint healthy. Default: 2.
	HealthyThreshold int `json:"healthyThreshold,omitempty" yaml:"healthyThreshold,omitempty"`
	// UnhealthyThreshold is the number of failed checks in a row that make an endpoint
	// unhealthy. Default: 3.
	UnhealthyThreshold int `json:"unhealthyThreshold,omitempty" yaml:"unhealthyThreshold,omitempty"`
}

// StatusRange is a range of HTTP statuses, Start included and End excluded.
type StatusRange struct {
	Start int `json:"start" yaml:"start"`
	End   int `json:"end" yaml:"end"`
}

// Defaults.
const (
	DefaultDecayTime                 = 10 * time.Second
	DefaultMinHealthyPercent         = 70.0
	DefaultConsecutiveGatewayFailure = 5
	DefaultBaseEjectionTime          = 30 * time.Second
	DefaultMaxEjectionTime           = 300 * time.Second
	DefaultMaxEjectionPercent        = 50.0
	DefaultPanicThreshold            = 50.0
	DefaultSlowStartMinWeightPercent = 10.0
	DefaultMaxRetryAfter             = 60 * time.Second
	DefaultOutlierInterval           = 10 * time.Second
	DefaultStdevFactor               = 1900
	DefaultEnforcementPercentage     = 100
	DefaultOutlierMinimumHosts       = 5
	DefaultSuccessRateRequestVolume  = 100
	DefaultFailurePercentThreshold   = 85
	DefaultFailurePercentVolume      = 50
	DefaultMaglevTableSize           = 65537
	DefaultMinimumRingSize           = 1024
	DefaultMaximumRingSize           = 4096
	// MaxRingSize is the largest MaximumRingSize (and MinimumRingSize) allowed: 8M points,
	// about 100 MB, as Envoy's limit.
	MaxRingSize                = 8 << 20
	DefaultHealthCheckPath     = "/healthz"
	DefaultHealthCheckInterval = 10 * time.Second
	DefaultHealthCheckTimeout  = time.Second
	DefaultHealthyThreshold    = 2
	DefaultUnhealthyThreshold  = 3
)

func fieldErr(field string, format string, args ...any) error {
	return fmt.Errorf("balancer: %s "+format, append([]any{field}, args...)...)
}

func percentOK(p float64) bool { return !math.IsNaN(p) && p >= 0 && p <= 100 }

// normalize validates c and returns a copy with every default filled in. Sections are
// checked in field order, so the first invalid field is the one reported.
func (c Config) normalize() (Config, error) {
	if err := c.normalizeTop(); err != nil {
		return c, err
	}
	if err := normalizeZone(&c.Zone); err != nil {
		return c, err
	}
	if err := normalizeOutlier(&c.Outlier); err != nil {
		return c, err
	}
	if err := c.normalizeLimits(); err != nil {
		return c, err
	}
	if err := c.Limits.validate(); err != nil {
		return c, err
	}
	if err := c.normalizeHashing(); err != nil {
		return c, err
	}
	if c.HealthCheck != nil {
		hc := new(HealthCheck)
		*hc = *c.HealthCheck
		c.HealthCheck = hc
		if err := normalizeHealthCheck(hc); err != nil {
			return c, err
		}
	}
	return c, nil
}

// normalizeTop validates and defaults Policy and DecayTime.
func (c *Config) normalizeTop() error {
	if c.Policy == "" {
		c.Policy = PolicyPeakEWMA
	}
	if !c.Policy.valid() {
		names := make([]string, len(policies))
		for i, p := range policies {
			names[i] = string(p)
		}
		return fieldErr("Policy", "must be one of %s, got %q", strings.Join(names, ", "), string(c.Policy))
	}
	if c.DecayTime < 0 {
		return fieldErr("DecayTime", "must not be negative, got %v", c.DecayTime)
	}
	if c.DecayTime == 0 {
		c.DecayTime = DefaultDecayTime
	}
	return nil
}

// normalizeZone validates and defaults c.Zone in place.
func normalizeZone(z *ZoneConfig) error {
	if !percentOK(z.MinHealthyPercent) {
		return fieldErr("Zone.MinHealthyPercent", "must be in (0,100], got %v", z.MinHealthyPercent)
	}
	if z.MinHealthyPercent == 0 {
		z.MinHealthyPercent = DefaultMinHealthyPercent
	}
	seen := map[string]bool{z.Local: true}
	for i, zone := range z.Failover {
		if seen[zone] {
			return fieldErr(fmt.Sprintf("Zone.Failover[%d]", i), "repeats zone %q (or names the local zone)", zone)
		}
		seen[zone] = true
	}
	return nil
}

// normalizeOutlier validates and defaults c.Outlier in place.
func normalizeOutlier(o *OutlierConfig) error {
	if o.ConsecutiveGatewayFailure < 0 {
		return fieldErr("Outlier.ConsecutiveGatewayFailure", "must not be negative, got %d", o.ConsecutiveGatewayFailure)
	}
	if o.ConsecutiveGatewayFailure == 0 {
		o.ConsecutiveGatewayFailure = DefaultConsecutiveGatewayFailure
	}
	if o.ConsecutiveFailure < 0 {
		return fieldErr("Outlier.ConsecutiveFailure", "must not be negative, got %d", o.ConsecutiveFailure)
	}
	if o.BaseEjectionTime < 0 {
		return fieldErr("Outlier.BaseEjectionTime", "must not be negative, got %v", o.BaseEjectionTime)
	}
	if o.BaseEjectionTime == 0 {
		o.BaseEjectionTime = DefaultBaseEjectionTime
	}
	if o.MaxEjectionTime < 0 {
		return fieldErr("Outlier.MaxEjectionTime", "must not be negative, got %v", o.MaxEjectionTime)
	}
	if o.MaxEjectionTime == 0 {
		o.MaxEjectionTime = max(DefaultMaxEjectionTime, o.BaseEjectionTime)
	}
	if o.MaxEjectionTime < o.BaseEjectionTime {
		return fieldErr("Outlier.MaxEjectionTime", "must not be below Outlier.BaseEjectionTime (%v), got %v", o.BaseEjectionTime, o.MaxEjectionTime)
	}
	if !percentOK(o.MaxEjectionPercent) {
		return fieldErr("Outlier.MaxEjectionPercent", "must be in [0,100], got %v", o.MaxEjectionPercent)
	}
	if o.MaxEjectionPercent == 0 {
		o.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	return normalizeOutlierSweep(o)
}

// normalizeLimits validates and defaults, in this order, PanicThreshold, SlowStart,
// MaxRetryAfter and MaglevTableSize.
func (c *Config) normalizeLimits() error {
	if math.IsNaN(c.PanicThreshold) || c.PanicThreshold > 100 {
		return fieldErr("PanicThreshold", "must be at most 100 (negative turns panic mode off), got %v", c.PanicThreshold)
	}
	if c.PanicThreshold == 0 {
		c.PanicThreshold = DefaultPanicThreshold
	}

	s := &c.SlowStart
	if s.Window < 0 {
		return fieldErr("SlowStart.Window", "must not be negative, got %v", s.Window)
	}
	if !percentOK(s.MinWeightPercent) {
		return fieldErr("SlowStart.MinWeightPercent", "must be in (0,100], got %v", s.MinWeightPercent)
	}
	if s.MinWeightPercent == 0 {
		s.MinWeightPercent = DefaultSlowStartMinWeightPercent
	}

	if c.MaxRetryAfter < 0 {
		return fieldErr("MaxRetryAfter", "must not be negative, got %v", c.MaxRetryAfter)
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}

	if c.MaglevTableSize < 0 || c.MaglevTableSize > maxMaglevTableSize {
		return fieldErr("MaglevTableSize", "must be a prime of at most %d, got %d", maxMaglevTableSize, c.MaglevTableSize)
	}
	if c.MaglevTableSize > 0 && !isPrime(c.MaglevTableSize) {
		return fieldErr("MaglevTableSize", "must be a prime, got %d", c.MaglevTableSize)
	}
	if c.MaglevTableSize == 0 {
		c.MaglevTableSize = DefaultMaglevTableSize
	}
	return nil
}

// normalizeHashing validates and defaults RingHash and HashPolicy.
func (c *Config) normalizeHashing() error {
	r := &c.RingHash
	if r.MinimumRingSize < 0 || r.MinimumRingSize > MaxRingSize {
		return fieldErr("RingHash.MinimumRingSize", "must be in [1,%d], got %d", MaxRingSize, r.MinimumRingSize)
	}
	if r.MaximumRingSize < 0 || r.MaximumRingSize > MaxRingSize {
		return fieldErr("RingHash.MaximumRingSize", "must be in [1,%d], got %d", MaxRingSize, r.MaximumRingSize)
	}
	if r.MinimumRingSize == 0 {
		r.MinimumRingSize = DefaultMinimumRingSize
	}
	if r.MaximumRingSize == 0 {
		r.MaximumRingSize = max(DefaultMaximumRingSize, r.MinimumRingSize)
	}
	if r.MaximumRingSize < r.MinimumRingSize {
		return fieldErr("RingHash.MaximumRingSize", "must not be below RingHash.MinimumRingSize (%d), got %d", r.MinimumRingSize, r.MaximumRingSize)
	}
	if err := validateHashPolicies("HashPolicy", c.HashPolicy); err != nil {
		return errors.New("balancer: " + err.Error())
	}
	if len(c.HashPolicy) > 0 && !c.Policy.Hashing() {
		return fieldErr("HashPolicy", "needs Policy %s or %s (policy %s reads no key)", PolicyMaglev, PolicyRingHash, c.Policy)
	}
	c.HashPolicy = slices.Clone(c.HashPolicy)
	return nil
}

// normalizeHealthCheck validates and defaults hc in place; hc must be the caller's own copy.
func normalizeHealthCheck(hc *HealthCheck) error {
	if hc.Kind == "" {
		hc.Kind = HealthCheckHTTP
	}
	if proberOf(hc.Kind) == nil {
		return fieldErr("HealthCheck.Kind", "must be one of %s, got %q (the \"grpc\" kind needs package balancer/grpcbalancer imported)", strings.Join(proberKinds(), ", "), hc.Kind)
	}
	if len(hc.ExpectedStatuses) == 0 {
		hc.ExpectedStatuses = []StatusRange{{Start: 200, End: 300}}
	} else {
		hc.ExpectedStatuses = append([]StatusRange(nil), hc.ExpectedStatuses...)
	}
	for i, r := range hc.ExpectedStatuses {
		if r.Start < 100 || r.End > 600 || r.Start >= r.End {
			return fieldErr(fmt.Sprintf("HealthCheck.ExpectedStatuses[%d]", i), "must be a range [start, end) with 100 <= start < end <= 600, got [%d, %d)", r.Start, r.End)
		}
	}
	if hc.Path == "" {
		hc.Path = DefaultHealthCheckPath
	}
	if !strings.HasPrefix(hc.Path, "/") {
		return fieldErr("HealthCheck.Path", "must start with '/', got %q", hc.Path)
	}
	switch hc.Scheme {
	case "":
		hc.Scheme = "http"
	case "http", "https":
	default:
		return fieldErr("HealthCheck.Scheme", "must be \"http\" or \"https\", got %q", hc.Scheme)
	}
	if hc.Interval < 0 {
		return fieldErr("HealthCheck.Interval", "must not be negative, got %v", hc.Interval)
	}
	if hc.Interval == 0 {
		hc.Interval = DefaultHealthCheckInterval
	}
	if hc.Timeout < 0 {
		return fieldErr("HealthCheck.Timeout", "must not be negative, got %v", hc.Timeout)
	}
	if hc.Timeout == 0 {
		hc.Timeout = min(DefaultHealthCheckTimeout, hc.Interval/2)
	}
	if hc.Timeout >= hc.Interval {
		return fieldErr("HealthCheck.Timeout", "must be below HealthCheck.Interval (%v), got %v", hc.Interval, hc.Timeout)
	}
	if hc.HealthyThreshold < 0 {
		return fieldErr("HealthCheck.HealthyThreshold", "must not be negative, got %d", hc.HealthyThreshold)
	}
	if hc.HealthyThreshold == 0 {
		hc.HealthyThreshold = DefaultHealthyThreshold
	}
	if hc.UnhealthyThreshold < 0 {
		return fieldErr("HealthCheck.UnhealthyThreshold", "must not be negative, got %d", hc.UnhealthyThreshold)
	}
	if hc.UnhealthyThreshold == 0 {
		hc.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	return nil
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
