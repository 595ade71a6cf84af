package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
)

// outboundLimits are the client-side limits applied once per request to a service, before
// any attempt: a concurrency permit first (cheap and local), then a rate token.
type outboundLimits struct {
	rate ratelimit.Limiter // keyed by destination service; nil when none
	conc overload.Limiter  // one for the whole transport; nil when none
}

func (c *config) outboundLimits() *outboundLimits {
	if c.outbound == nil {
		c.outbound = &outboundLimits{}
	}
	return c.outbound
}

// WithRateLimit limits the requests a Transport sends to each destination service: every
// service gets its own local token bucket of q (q.Rate requests per second, bursts of
// q.Burst; a zero Burst means one second's worth). A request over the limit fails at once,
// before any attempt, with a nil response and an error matching ratelimit.ErrLimited (a
// *ratelimit.LimitedError that says when to retry); it is never retried. Requests that pass
// through (hosts that are not services) are not limited. Default: no limit.
//
// For per-service quotas or one limit shared by several processes (ratelimit/redis), use
// WithRateLimiter. WithRateLimit and WithRateLimiter set the same limit: the last one wins.
//
// Taken by NewTransport and NewGRPCClient (a call is keyed by the service its channel's target
// names, and refused with RESOURCE_EXHAUSTED). The servers' limit is WithServerRateLimit.
func WithRateLimit(q ratelimit.Quota) ClientOption {
	return clientOption(func(c *config) {
		if q == (ratelimit.Quota{}) {
			c.errs = append(c.errs, errors.New("middleware: WithRateLimit: the zero Quota would refuse every request"))
			return
		}
		lim, err := ratelimit.NewKeyed(ratelimit.KeyedConfig{Default: q})
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithRateLimit: %w", err))
			return
		}
		c.outboundLimits().rate = lim
	})
}

// WithRateLimiter limits the requests a Transport sends with l, keyed by the destination
// service name: a ratelimit.Keyed whose Overrides give services their own quotas, or a
// ratelimit/redis.Limiter that shares each service's quota among every client process. Refusals
// are as for WithRateLimit. Default: no limit.
//
// Taken by NewTransport and NewGRPCClient.
func WithRateLimiter(l ratelimit.Limiter) ClientOption {
	return clientOption(func(c *config) {
		if l == nil {
			c.errs = append(c.errs, errors.New("middleware: WithRateLimiter: limiter is nil"))
			return
		}
		c.outboundLimits().rate = l
	})
}

// WithConcurrencyLimit caps the requests a Transport has in flight to services with l, one
// limiter for every destination: an overload.Bulkhead (a fixed cap), an overload.Adaptive
// (a cap that follows latency) or an overload.Throttler (client-side adaptive throttling). A
// request holds its permit until RoundTrip returns, retries included, and reports its
// outcome: a 429, 502, 503 or 504 response, an error or a timeout is a failure; a
// cancellation by the caller, or a local refusal (no endpoints, breakers open), is dropped;
// anything else is a success. A refusal fails as for WithRateLimit. Default: no limit.
//
// An overload.Adaptive's current limit is the gauge proxyless.concurrency.limit, with
// proxyless.ratelimit.policy "outbound", until the Transport or client is closed.
//
// Taken by NewTransport and NewGRPCClient (a call or stream holds its permit until it ends).
// The servers' counterpart is WithLoadShedding.
func WithConcurrencyLimit(l overload.Limiter) ClientOption {
	return clientOption(func(c *config) {
		if l == nil {
			c.errs = append(c.errs, errors.New("middleware: WithConcurrencyLimit: limiter is nil"))
			return
		}
		c.outboundLimits().conc = l
	})
}

// admit applies the limits to req, bound for service. On a refusal it closes the request
// body and returns an error (matching ratelimit.ErrLimited, or the context's error); on
// success the caller must call done with the request's result.
func (o *outboundLimits) admit(req *http.Request, service string) (outboundPermit, error) {
	release, kind, err := o.acquire(req.Context(), service)
	if err != nil {
		closeBody(req)
		return outboundPermit{}, refusal(kind, service, err)
	}
	return outboundPermit{release: release}, nil
}

// acquire applies the limits to a request or call bound for service: a concurrency permit,
// then a rate token. On a refusal it returns the limiter's error (or the context's) and which
// limit refused ("concurrency" or "rate"), holding nothing; on success, the permit's release
// (nil when there is no concurrency limit), which the caller must call with the outcome.
// The HTTP transport and the gRPC interceptors share it.
func (o *outboundLimits) acquire(ctx context.Context, service string) (release func(overload.Outcome), kind string, err error) {
	if o.conc != nil {
		if release, err = o.conc.Acquire(ctx); err != nil {
			return nil, "concurrency", err
		}
	}
	if o.rate != nil {
		d, err := o.rate.Take(ctx, service)
		if err == nil {
			err = d.Err()
		}
		if err != nil {
			if release != nil {
				release(overload.Dropped)
			}
			return nil, "rate", err
		}
	}
	return release, "", nil
}

// recordOutbound records the outbound limits' decision (admit's error) in telemetry, when
// they made one: an admission or a refusal, not a context that ended while waiting.
func recordOutbound(ctx context.Context, tel *telemetry.Telemetry, err error) {
	if err == nil || errors.Is(err, ratelimit.ErrLimited) {
		tel.RateLimited(ctx, "outbound", 0, err == nil)
	}
}

// refusal returns a done context's error itself and wraps a limiter's refusal with what was
// refused.
func refusal(kind, service string, err error) error {
	if !errors.Is(err, ratelimit.ErrLimited) {
		return err
	}
	return fmt.Errorf("middleware: outbound %s limit for %s: %w", kind, service, err)
}

// outboundPermit is an admitted request's hold on the concurrency limit.
type outboundPermit struct {
	release func(overload.Outcome) // nil when there is no concurrency limit
}

// done reports the request's outcome to the concurrency limit.
func (p outboundPermit) done(k outcome.Kind) {
	if p.release != nil {
		p.release(k.Overload())
	}
}
