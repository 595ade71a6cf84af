package grpcbalancer

import (
	"context"
	"errors"
	"time"

	grpcbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/outcome/grpcoutcome"
)

// picker picks among the READY endpoints through the core, skipping endpoints whose breaker
// refuses, and delegates to the endpoint's pick_first picker. It is immutable.
type picker struct {
	core     *balancer.Balancer
	breakers *breaker.Set // nil when breakers are off
	children map[string]grpcbalancer.Picker
	steer    time.Duration
	hash     []balancer.HashPolicy // the channel's; nil when the policy does not hash
}

func (p *picker) Pick(info grpcbalancer.PickInfo) (grpcbalancer.PickResult, error) {
	att := FromContext(info.Ctx)
	now := time.Now()
	var tried balancer.Tried
	var key uint64
	keySet := false
	if att != nil {
		att.call.mu.Lock()
		defer att.call.mu.Unlock() // attempts of one call pick one at a time
		tried, key, keySet = att.call.tried, att.call.key, att.call.keySet
	}
	if !keySet && p.hash != nil {
		key = HashKey(info.Ctx, p.hash)
	}
	var openErr error
	for range balancer.MaxTried + 1 {
		pk, err := p.core.Pick(balancer.PickInfo{Now: now, Key: key, Tried: tried})
		if err != nil {
			return p.refuse(att, err)
		}
		if att != nil && att.OnlyNew && tried.Contains(pk) {
			pk.Done(balancer.DoneInfo{Now: now, Outcome: balancer.OutcomeIgnore})
			if openErr == nil {
				openErr = ErrOnlyTried
			}
			return p.refuse(att, openErr)
		}
		tried.Add(pk)
		if att != nil {
			att.call.tried = tried
		}
		addr := pk.Endpoint.Addr
		child := p.children[addr]
		if child == nil {
			// The core already has a newer set than this picker: a new picker is on its way.
			pk.Done(balancer.DoneInfo{Now: now, Outcome: balancer.OutcomeIgnore})
			return grpcbalancer.PickResult{}, grpcbalancer.ErrNoSubConnAvailable
		}
		var permit breaker.Permit
		if p.breakers != nil {
			if permit, err = p.breakers.Allow(addr); err != nil {
				pk.Done(balancer.DoneInfo{Now: now, Outcome: balancer.OutcomeIgnore})
				openErr = err
				if att != nil {
					att.mu.Lock()
					att.refused = true
					att.mu.Unlock()
					if att.Observer != nil {
						att.Observer.BreakerRefused(addr)
					}
				}
				continue
			}
		}
		res, err := child.Pick(info)
		if err != nil {
			pk.Done(balancer.DoneInfo{Now: now, Outcome: balancer.OutcomeIgnore})
			if p.breakers != nil {
				permit.Done(breaker.Ignore)
			}
			return res, err
		}
		if att != nil {
			att.mu.Lock()
			att.endpoint, att.pickErr = addr, nil
			att.mu.Unlock()
			if att.Observer != nil {
				att.Observer.Picked(addr, permit.Probe())
			}
		}
		// One allocation: the closure holds d by value (d is small, never reassigned, and
		// its method has a value receiver).
		d := done{p: p, pick: pk, permit: permit, ctx: info.Ctx, att: att, next: res.Done}
		res.Done = func(info grpcbalancer.DoneInfo) { d.done(info) }
		return res, nil
	}
	return p.refuse(att, openErr)
}

// refuse fails the pick with err, as a status error that gRPC hands to the caller at once: an
// error without a status (a *breaker.OpenError, balancer.ErrNoEndpoints) becomes Unavailable,
// still unwrapping to err. The attempt records what gRPC got.
func (p *picker) refuse(att *Attempt, err error) (grpcbalancer.PickResult, error) {
	if _, ok := status.FromError(err); !ok {
		err = pickErr(err)
	}
	if att != nil {
		att.mu.Lock()
		att.pickErr = err
		att.mu.Unlock()
	}
	return grpcbalancer.PickResult{}, err
}

// done reports how one picked RPC went to the core and the endpoint's breaker.
type done struct {
	p      *picker
	pick   balancer.Pick
	permit breaker.Permit
	// ctx is the RPC's context, held only until the RPC ends, to tell a caller's cancellation
	// from a failure of the endpoint.
	ctx  context.Context
	att  *Attempt
	next func(grpcbalancer.DoneInfo)
}

func (d done) done(info grpcbalancer.DoneInfo) {
	if d.next != nil {
		d.next(info)
	}
	now := time.Now()
	o := grpcoutcome.FromError(info.Err, info.Trailer, d.cause(info.Err))
	di := balancer.DoneInfo{Now: now, Outcome: o.Kind.Balancer()}
	if info.Err == nil && d.att != nil && d.att.call.stream {
		di.Outcome = balancer.OutcomeIgnore
	}
	if o.Kind == outcome.Canceled && (d.att == nil || !d.att.call.stream) {
		// A unary call cut short: the endpoint took at least this long. (A stream lasts as
		// long as its peers want: its duration says nothing of the endpoint.)
		di.MinLatency = now.Sub(d.pick.Start())
	}
	switch {
	case o.HasRetryAfter && o.RetryAfter > 0:
		di.RetryAfter = o.RetryAfter
	case o.Kind == outcome.Throttled:
		di.RetryAfter = d.p.steer
	}
	d.pick.Done(di)
	if d.p.breakers != nil {
		d.permit.Done(o.Kind.Breaker())
	}
}

// cause says which context, if any, ended the RPC: the Attempt's Cause when the interceptor
// set one; otherwise the RPC's own deadline when the Attempt says it has one of its own,
// else the caller.
func (d done) cause(rpcErr error) outcome.Cause {
	if d.att != nil && d.att.Cause != nil {
		return d.att.Cause(rpcErr)
	}
	err := d.ctx.Err()
	switch {
	case err == nil:
		return outcome.CauseNone
	case d.att != nil && d.att.OwnDeadline && errors.Is(err, context.DeadlineExceeded):
		return outcome.CauseAttemptTimeout
	}
	return outcome.CauseCaller
}

// Classify says what an RPC's result tells about its endpoint, for the balancer core and for
// the breaker: the outcome vocabulary's classification (package outcome/grpcoutcome) read
// through its table. ctx is the RPC's context, att its Attempt or nil.
func Classify(ctx context.Context, att *Attempt, err error) (balancer.Outcome, breaker.Outcome) {
	o := grpcoutcome.FromError(err, nil, done{ctx: ctx, att: att}.cause(err))
	return o.Kind.Balancer(), o.Kind.Breaker()
}

// BreakerOutcome classifies the result of one gRPC call for a breaker.Breaker used on its own,
// through the outcome vocabulary (package outcome/grpcoutcome) and its table. ctx is the
// caller's context: an error while it is done is ignored. A local refusal (an open breaker)
// is ignored too.
func BreakerOutcome(ctx context.Context, err error) breaker.Outcome {
	if errors.Is(err, breaker.ErrOpen) {
		return outcome.LocalRefusal.Breaker()
	}
	cause := outcome.CauseNone
	if ctx != nil && ctx.Err() != nil {
		cause = outcome.CauseCaller
	}
	return grpcoutcome.FromError(err, nil, cause).Kind.Breaker()
}
