package middleware

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/route"
)

// The option types: see the package documentation for which option has which type. Options
// never panic: a bad value is reported by the constructor, as an error that names the option.

// TransportOption configures [NewTransport].
type TransportOption interface{ applyTransport(*config) }

// GRPCClientOption configures [NewGRPCClient].
type GRPCClientOption interface{ applyGRPCClient(*config) }

// ClientOption configures both clients: [NewTransport] and [NewGRPCClient].
type ClientOption interface {
	TransportOption
	GRPCClientOption
}

// HandlerOption configures [NewHandler].
type HandlerOption interface{ applyHandler(*config) }

// GRPCServerOption configures [NewGRPCServer].
type GRPCServerOption interface{ applyGRPCServer(*config) }

// ServerOption configures both servers: [NewHandler] and [NewGRPCServer].
type ServerOption interface {
	HandlerOption
	GRPCServerOption
}

// GRPCOption configures both gRPC constructors: [NewGRPCClient] and [NewGRPCServer].
type GRPCOption interface {
	GRPCClientOption
	GRPCServerOption
}

// Option configures every constructor: NewTransport, NewGRPCClient, NewHandler and
// NewGRPCServer.
type Option interface {
	ClientOption
	ServerOption
}

// The concrete option types. Each implements exactly the apply methods of the constructors
// that honour it, so that not even a type assertion can hand an option to another one.
type (
	transportOption  func(*config)
	grpcClientOption func(*config)
	handlerOption    func(*config)
	clientOption     func(*config)
	grpcServerOption func(*config)
	serverOption     func(*config)
	grpcOption       func(*config)
	option           func(*config)
)

func (f transportOption) applyTransport(c *config)   { f(c) }
func (f grpcClientOption) applyGRPCClient(c *config) { f(c) }
func (f clientOption) applyTransport(c *config)      { f(c) }
func (f clientOption) applyGRPCClient(c *config)     { f(c) }
func (f handlerOption) applyHandler(c *config)       { f(c) }
func (f grpcServerOption) applyGRPCServer(c *config) { f(c) }
func (f serverOption) applyHandler(c *config)        { f(c) }
func (f serverOption) applyGRPCServer(c *config)     { f(c) }
func (f grpcOption) applyGRPCClient(c *config)       { f(c) }
func (f grpcOption) applyGRPCServer(c *config)       { f(c) }
func (f option) applyTransport(c *config)            { f(c) }
func (f option) applyGRPCClient(c *config)           { f(c) }
func (f option) applyHandler(c *config)              { f(c) }
func (f option) applyGRPCServer(c *config)           { f(c) }

// config is what the options build. It is immutable once the constructor returns.
type config struct {
	balancer      balancer.Config
	breaker       breaker.Config
	breakerOff    bool
	retry         RetryPolicy
	retryHTTP     []string // the HTTP-only RetryPolicy fields WithRetry set, which gRPC refuses
	timeout       time.Duration
	attemptTO     time.Duration
	streamIdle    time.Duration // WithStreamIdleTimeout: stream.go
	hedge         HedgePolicy
	logger        *slog.Logger
	errs          []error
	maxBufferBody int64
	resolver      discovery.Resolver // WithResolver: NewTransport's
	outbound      *outboundLimits    // client rate and concurrency limits, nil when none: ratelimit.go
	server        serverConfig       // the servers' stages: handler.go
	grpc          grpcConfig         // gRPC-only settings: grpc_options.go
	routes        *route.Router      // nil when requests are not routed: routing.go
	dynamic       *Config            // WithConfig's document, nil when none: dynamic.go
	shadowLimit   int                // mirrored requests in flight at most: routing.go
	maxDests      int                // destinations followed at most: destinations.go
	destIdle      time.Duration      // how long an unused destination is kept: destinations.go
	discoveryWait time.Duration      // WithDiscoveryWait; 0: the default: destinations.go
	tel           []telemetry.Option // telemetry providers: telemetry.go
	creds         outboundCreds      // outbound token and TLS (WithCredentials, WithTLS): auth.go
	limits        *balancer.Limits   // WithLimits, set into balancer.Limits: limits.go
	mesh          Mesh               // WithMesh: mesh.go
}

// newConfig applies opts, each with apply (the method of the constructor's option type), and
// validates what they set together.
func newConfig[O comparable](opts []O, apply func(O, *config)) (*config, error) {
	c := &config{logger: slog.New(slog.DiscardHandler), maxBufferBody: defaultMaxBufferBody}
	var none O
	for _, o := range opts {
		if o == none {
			c.errs = append(c.errs, fmt.Errorf("middleware: nil %s", optionTypeName[O]()))
			continue
		}
		apply(o, c)
	}
	if c.limits != nil {
		c.balancer.Limits = *c.limits
	}
	if c.mesh != nil {
		c.errs = append(c.errs, c.joinMesh()...) // WithMesh: mesh.go
	}
	if err := c.retry.normalize(); err != nil {
		c.errs = append(c.errs, err)
	}
	if err := c.hedge.normalize(); err != nil {
		c.errs = append(c.errs, err)
	}
	return c, errors.Join(c.errs...)
}

// optionTypeName returns the name of the option type O, for errors.
func optionTypeName[O any]() string {
	return reflect.TypeFor[O]().Name()
}

// WithResolver makes the transport resolve request hosts through r: a request to
// http://payments/... goes to an endpoint of the service "payments". Without it, every request
// passes through to the base transport unchanged.
//
// Taken by NewTransport. NewGRPCClient takes its resolver as an argument.
func WithResolver(r discovery.Resolver) TransportOption {
	return transportOption(func(c *config) {
		if r == nil {
			c.errs = append(c.errs, errors.New("middleware: WithResolver: resolver is nil"))
		}
		c.resolver = r
	})
}

// WithBalancer sets the balancer configuration used for every destination. Default: the zero
// balancer.Config (P2C over peak-EWMA, outlier ejection on).
//
// Taken by NewTransport and NewGRPCClient. A gRPC client cannot run its HealthCheck (an HTTP
// probe): NewGRPCClient refuses one; use WithGRPCHealthCheck.
func WithBalancer(cfg balancer.Config) ClientOption {
	return clientOption(func(c *config) { c.balancer = cfg })
}

// WithBreaker sets the configuration of the per-endpoint circuit breakers. Default: the zero
// breaker.Config.
//
// Taken by NewTransport and NewGRPCClient (whose breakers are in the balancer's picker).
func WithBreaker(cfg breaker.Config) ClientOption {
	return clientOption(func(c *config) { c.breaker, c.breakerOff = cfg, false })
}

// WithoutBreaker turns the per-endpoint circuit breakers off.
//
// Taken by NewTransport and NewGRPCClient.
func WithoutBreaker() ClientOption {
	return clientOption(func(c *config) { c.breakerOff = true })
}

// WithRetry sets the retry policy. Default: the zero RetryPolicy (2 retries of idempotent
// requests on connect errors, resets and 502/503/504, within a budget).
//
// Taken by NewTransport and NewGRPCClient. Statuses and RetryNonIdempotent are HTTP settings:
// NewGRPCClient refuses a policy that sets them (a gRPC call is retried on the codes of
// WithGRPCRetryCodes, whatever its method).
func WithRetry(p RetryPolicy) ClientOption {
	return clientOption(func(c *config) {
		c.retry, c.retryHTTP = p, nil
		if len(p.Statuses) > 0 {
			c.retryHTTP = append(c.retryHTTP, "Statuses")
		}
		if p.RetryNonIdempotent {
			c.retryHTTP = append(c.retryHTTP, "RetryNonIdempotent")
		}
	})
}

// WithTimeout bounds a whole request, retries and backoff included, by a context deadline.
// For the Transport that includes reading the response body, as a gRPC deadline bounds a
// whole call (a stream that may run long wants none, and an idle timeout:
// WithStreamIdleTimeout), but not an upgraded (101) connection after its handshake.
// Default: none beyond the caller's context.
//
// Taken by NewTransport and NewGRPCClient.
func WithTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithTimeout must not be negative, got %v", d))
		}
		c.timeout = d
	})
}

// WithAttemptTimeout bounds each attempt (never past the overall deadline). An attempt that
// runs out counts as a failure of its endpoint and may be retried. For the Transport it
// bounds the wait for the response headers only: once they arrive the body may stream for as
// long as it takes (see WithStreamIdleTimeout), and the response is never retried nor hedged.
// For a gRPC client it bounds each attempt of a unary call whole. A route can override it
// (attemptTimeout) or turn it off (disableAttemptTimeout). Default: none.
//
// Taken by NewTransport and NewGRPCClient.
func WithAttemptTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithAttemptTimeout must not be negative, got %v", d))
		}
		c.attemptTO = d
	})
}

// WithHedge turns hedging on: see HedgePolicy. Default: off.
//
// Taken by NewTransport and NewGRPCClient, which hedges unary calls (streams are never
// hedged). Quantile is an HTTP setting: NewGRPCClient refuses a policy that sets it.
func WithHedge(p HedgePolicy) ClientOption {
	return clientOption(func(c *config) { c.hedge = p; c.hedge.enabled = true })
}

// WithLogger sets where the middleware logs what it has to say (discovery trouble, route
// overrides it cannot apply). Default: discard.
//
// Taken by NewTransport and NewGRPCClient. The servers log nothing.
func WithLogger(l *slog.Logger) ClientOption {
	return clientOption(func(c *config) {
		if l == nil {
			c.errs = append(c.errs, errors.New("middleware: WithLogger: logger is nil"))
			return
		}
		c.logger = l
	})
}
