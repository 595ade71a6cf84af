package grpcbalancer

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	grpcbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/serviceconfig"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/internal/conf"
)

// Name is the name of the policy whose config chooses the balancing policy
// (Config.Balancer.Policy).
const Name = "proxyless"

// DefaultSteer is how long RESOURCE_EXHAUSTED without a grpc-retry-pushback-ms trailer steers
// picks away from an endpoint.
const DefaultSteer = time.Second

// PolicyName returns the registered name of the policy that runs p whatever its config says:
// "proxyless_" followed by p's name, such as "proxyless_round_robin".
func PolicyName(p balancer.Policy) string { return Name + "_" + p.String() }

var allPolicies = []balancer.Policy{
	balancer.PolicyPeakEWMA, balancer.PolicyRoundRobin, balancer.PolicyWeightedRoundRobin,
	balancer.PolicyRandom, balancer.PolicyLeastRequest, balancer.PolicyMaglev, balancer.PolicyRingHash,
}

func init() {
	grpcbalancer.Register(builder{name: Name})
	for _, p := range allPolicies {
		grpcbalancer.Register(builder{name: PolicyName(p), policy: p})
	}
}

// Config is the policy's load-balancing config, as JSON in the service config. Its zero value
// means every default: P2C over peak EWMA with outlier ejection, and a breaker per endpoint.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// Balancer configures the picker. Its HealthCheck (HTTP) must be nil: for gRPC, use the
	// service config's healthCheckConfig, which gRPC's own health checking serves.
	Balancer balancer.Config `json:"balancer,omitzero"`
	// Breaker configures the per-endpoint circuit breakers.
	Breaker breaker.Config `json:"breaker,omitzero"`
	// DisableBreaker turns the per-endpoint breakers off. Default false.
	DisableBreaker bool `json:"disableBreaker,omitempty"`
	// Steer is how long RESOURCE_EXHAUSTED steers away from an endpoint when the server sends
	// no pushback. Default DefaultSteer; capped by Balancer.MaxRetryAfter.
	Steer time.Duration `json:"steer,omitempty"`
}

// UnmarshalJSON reads c strictly: camelCase keys, durations as strings such as "250ms",
// unknown fields refused. It does not validate the values.
func (c *Config) UnmarshalJSON(b []byte) error { return conf.JSONInto("grpcbalancer", b, c) }

// MarshalJSON writes c with durations as strings, so that it reads back.
func (c Config) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(c) }

// Validate reports the first invalid field of c, by name.
func (c *Config) Validate() error {
	if c.Balancer.HealthCheck != nil {
		return errors.New("grpcbalancer: Balancer.HealthCheck must be nil (use the service config's healthCheckConfig)")
	}
	b, err := balancer.New(c.Balancer)
	if err != nil {
		return fmt.Errorf("grpcbalancer: %w", err)
	}
	_ = b.Close()
	if err := validateHashPolicies(c.Balancer.HashPolicy); err != nil {
		return err
	}
	if !c.DisableBreaker {
		if err := c.Breaker.Validate(); err != nil {
			return fmt.Errorf("grpcbalancer: %w", err)
		}
	}
	if c.Steer < 0 {
		return fmt.Errorf("grpcbalancer: Steer must not be negative, got %v", c.Steer)
	}
	return nil
}

// JSON returns c as the JSON of a loadBalancingConfig entry of the service config, under the
// policy name.
func (c Config) JSON(name string) (string, error) {
	b, err := json.Marshal(map[string]Config{name: c})
	if err != nil {
		return "", fmt.Errorf("grpcbalancer: %w", err)
	}
	return string(b), nil
}

type builder struct {
	name   string
	policy balancer.Policy // "" for Name: the config decides
}

func (b builder) Name() string { return b.name }

func (b builder) ParseConfig(raw json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	c := &Config{}
	if len(raw) > 0 {
		if err := conf.JSONInto("grpcbalancer: "+b.name+" config", raw, c); err != nil {
			return nil, err
		}
	}
	if b.policy != "" {
		c.Balancer.Policy = b.policy
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Steer == 0 {
		c.Steer = DefaultSteer
	}
	return c, nil
}

func (b builder) Build(cc grpcbalancer.ClientConn, opts grpcbalancer.BuildOptions) grpcbalancer.Balancer {
	return newLB(cc, opts, b.policy)
}
