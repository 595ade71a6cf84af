package middleware

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/tracing"
)

// Option configures NewTransport, NewHandler (and, as they land, the gRPC constructors).
// Options never panic: a bad value is reported by the constructor, naming the option.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is what the options build. It is immutable once the constructor returns.
type config struct {
	resolver      discovery.Resolver
	balancer      balancer.Config
	breaker       breaker.Config
	breakerOff    bool
	classifier    breaker.HTTPClassifier
	retry         RetryPolicy
	timeout       time.Duration
	attemptTO     time.Duration
	hedge         HedgePolicy
	logger        *slog.Logger
	errs          []error
	maxBufferBody int64
	outbound      *outboundLimits  // client rate and concurrency limits, nil when none: ratelimit.go
	server        serverConfig     // NewHandler's stages: handler.go
	grpc          grpcConfig       // gRPC-only settings: grpc_options.go
	routes        *route.Router    // nil when requests are not routed: routing.go
	shadowLimit   int              // mirrored requests in flight at most: routing.go
	tel           []tracing.Option // telemetry providers: telemetry.go
	creds         outboundCreds    // outbound token and TLS (WithCredentials, WithTLS): auth.go
}

func newConfig(opts []Option) (*config, error) {
	c := &config{logger: slog.New(slog.DiscardHandler), maxBufferBody: defaultMaxBufferBody}
	for _, o := range opts {
		if o == nil {
			c.errs = append(c.errs, errors.New("middleware: nil Option"))
			continue
		}
		o.apply(c)
	}
	if err := c.retry.normalize(); err != nil {
		c.errs = append(c.errs, err)
	}
	if err := c.hedge.normalize(); err != nil {
		c.errs = append(c.errs, err)
	}
	return c, errors.Join(c.errs...)
}

// WithResolver makes the transport resolve request hosts through r: a request to
// http://payments/... goes to an endpoint of the service "payments". Without it, every request
// passes through to the base transport unchanged.
func WithResolver(r discovery.Resolver) Option {
	return optionFunc(func(c *config) {
		if r == nil {
			c.errs = append(c.errs, errors.New("middleware: WithResolver: resolver is nil"))
		}
		c.resolver = r
	})
}

// WithBalancer sets the balancer configuration used for every destination. Default: the zero
// balancer.Config (P2C over peak-EWMA, outlier ejection on).
func WithBalancer(cfg balancer.Config) Option {
	return optionFunc(func(c *config) { c.balancer = cfg })
}

// WithBreaker sets the configuration of the per-endpoint circuit breakers. Default: the zero
// breaker.Config.
func WithBreaker(cfg breaker.Config) Option {
	return optionFunc(func(c *config) { c.breaker, c.breakerOff = cfg, false })
}

// WithoutBreaker turns the per-endpoint circuit breakers off.
func WithoutBreaker() Option {
	return optionFunc(func(c *config) { c.breakerOff = true })
}

// WithClassifier sets how HTTP results count for the breakers (for example whether a 429 is a
// failure). Default: the zero breaker.HTTPClassifier.
func WithClassifier(cl breaker.HTTPClassifier) Option {
	return optionFunc(func(c *config) { c.classifier = cl })
}

// WithRetry sets the retry policy. Default: the zero RetryPolicy (2 retries of idempotent
// requests on connect errors, resets and 502/503/504, within a budget).
func WithRetry(p RetryPolicy) Option {
	return optionFunc(func(c *config) { c.retry = p })
}

// WithTimeout bounds a whole request, retries and backoff included, by a context deadline.
// Default: none beyond the caller's context.
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithTimeout must not be negative, got %v", d))
		}
		c.timeout = d
	})
}

// WithAttemptTimeout bounds each attempt by a context deadline (never past the overall one).
// An attempt that runs out counts as a failure of its endpoint and may be retried.
// Default: none.
func WithAttemptTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithAttemptTimeout must not be negative, got %v", d))
		}
		c.attemptTO = d
	})
}

// WithHedge turns hedging on: see HedgePolicy. Default: off.
func WithHedge(p HedgePolicy) Option {
	return optionFunc(func(c *config) { c.hedge = p; c.hedge.enabled = true })
}

// WithLogger sets where the middleware logs what it has to say (discovery trouble, dropped
// work). Default: discard.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l == nil {
			c.errs = append(c.errs, errors.New("middleware: WithLogger: logger is nil"))
			return
		}
		c.logger = l
	})
}
