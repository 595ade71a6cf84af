package middleware

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
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
// For per-service quotas or one limit shared by several processes (ratelimit.Redis), use
// WithRateLimiter. WithRateLimit and WithRateLimiter set the same limit: the last one wins.
func WithRateLimit(q ratelimit.Quota) Option {
	return optionFunc(func(c *config) {
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
// ratelimit.Redis that shares each service's quota among every client process. Refusals
// are as for WithRateLimit. Default: no limit.
func WithRateLimiter(l ratelimit.Limiter) Option {
	return optionFunc(func(c *config) {
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
func WithConcurrencyLimit(l overload.Limiter) Option {
	return optionFunc(func(c *config) {
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
	ctx := req.Context()
	var p outboundPermit
	if o.conc != nil {
		release, err := o.conc.Acquire(ctx)
		if err != nil {
			closeBody(req)
			return p, refusal("concurrency", service, err)
		}
		p.release = release
	}
	if o.rate != nil {
		d, err := o.rate.Take(ctx, service)
		if err == nil {
			err = d.Err()
		}
		if err != nil {
			p.drop()
			closeBody(req)
			return outboundPermit{}, refusal("rate", service, err)
		}
	}
	return p, nil
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

func (p outboundPermit) drop() {
	if p.release != nil {
		p.release(overload.Dropped)
	}
}

// done reports the result of the request to the concurrency limit.
func (p outboundPermit) done(req *http.Request, resp *http.Response, err error) {
	if p.release != nil {
		p.release(outcome(req, resp, err))
	}
}

// outcome classifies a request's result for an overload.Limiter.
func outcome(req *http.Request, resp *http.Response, err error) overload.Outcome {
	switch {
	case req.Context().Err() != nil:
		return overload.Dropped // the caller gave up: nothing learnt about the callee
	case err != nil:
		if errors.Is(err, balancer.ErrNoEndpoints) || errors.Is(err, breaker.ErrOpen) || errors.Is(err, ErrClosed) {
			return overload.Dropped // refused locally, the callee never saw it
		}
		return overload.Failure
	}
	if resp.StatusCode == http.StatusTooManyRequests || isGatewayFailure(resp.StatusCode) {
		return overload.Failure
	}
	return overload.Success
}
