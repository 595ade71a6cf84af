package grpcbalancer

import (
	"context"
	"errors"
	"strconv"
	"time"

	grpcbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
)

// PushbackKey is the trailer in which a server asks a client to wait before retrying
// (gRFC A6): milliseconds, or a negative value for "do not retry".
const PushbackKey = "grpc-retry-pushback-ms"

// picker picks among the READY endpoints through the core, skipping endpoints whose breaker
// refuses, and delegates to the endpoint's pick_first picker. It is immutable.
type picker struct {
	core     *balancer.Balancer
	breakers *breaker.Set // nil when breakers are off
	children map[string]grpcbalancer.Picker
	steer    time.Duration
}

func (p *picker) Pick(info grpcbalancer.PickInfo) (grpcbalancer.PickResult, error) {
	att := FromContext(info.Ctx)
	now := time.Now()
	var tried balancer.Tried
	if att != nil {
		att.call.mu.Lock()
		defer att.call.mu.Unlock() // attempts of one call pick one at a time
		tried = att.call.tried
	}
	var openErr error
	for range balancer.MaxTried + 1 {
		pk, err := p.core.Pick(balancer.PickInfo{Now: now, Tried: tried})
		if err != nil {
			return p.refuse(att, err)
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

// refuse fails the pick with err, as a status error that gRPC hands to the caller at once.
func (p *picker) refuse(att *Attempt, err error) (grpcbalancer.PickResult, error) {
	if att != nil {
		att.mu.Lock()
		att.pickErr = err
		att.mu.Unlock()
	}
	if _, ok := status.FromError(err); ok {
		return grpcbalancer.PickResult{}, err // an *breaker.OpenError: Unavailable already
	}
	return grpcbalancer.PickResult{}, pickErr(err)
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
	pushback, hasPushback := parsePushback(info.Trailer)
	if d.att != nil && hasPushback {
		d.att.mu.Lock()
		d.att.pushback, d.att.hasPushback = pushback, true
		d.att.mu.Unlock()
	}
	bo, br := Classify(d.ctx, d.att, info.Err)
	di := balancer.DoneInfo{Now: now, Outcome: bo}
	if info.Err == nil && d.att != nil && d.att.call.stream {
		di.Outcome = balancer.OutcomeIgnore
	}
	if code := status.Code(info.Err); code == codes.ResourceExhausted || code == codes.Unavailable {
		switch {
		case hasPushback && pushback > 0:
			di.RetryAfter = pushback
		case code == codes.ResourceExhausted && d.ctx.Err() == nil:
			di.RetryAfter = d.p.steer
		}
	}
	d.pick.Done(di)
	if d.p.breakers != nil {
		d.permit.Done(br)
	}
}

// Classify says what an RPC's result tells about its endpoint, for the balancer core and for
// the breaker. ctx is the RPC's context, att its Attempt or nil.
//
//   - no error: success;
//   - ctx done: nothing, unless att has its own deadline and that passed, which is a failure
//     of the endpoint (an attempt timeout);
//   - UNAVAILABLE (including connection errors) and DEADLINE_EXCEEDED from the server: a
//     gateway failure, which the outlier detector counts;
//   - INTERNAL, UNKNOWN, DATA_LOSS and errors without a status: a failure;
//   - CANCELED and RESOURCE_EXHAUSTED: nothing (RESOURCE_EXHAUSTED steers away instead);
//   - any other code: success, the endpoint answered.
func Classify(ctx context.Context, att *Attempt, err error) (balancer.Outcome, breaker.Outcome) {
	if err == nil {
		return balancer.OutcomeSuccess, breaker.Success
	}
	if cerr := ctx.Err(); cerr != nil {
		if att != nil && att.OwnDeadline && errors.Is(cerr, context.DeadlineExceeded) {
			return balancer.OutcomeFailure, breaker.Failure
		}
		return balancer.OutcomeIgnore, breaker.Ignore
	}
	s, ok := status.FromError(err)
	if !ok {
		return balancer.OutcomeFailure, breaker.Failure
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return balancer.OutcomeGatewayFailure, breaker.Failure
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return balancer.OutcomeFailure, breaker.Failure
	case codes.Canceled, codes.ResourceExhausted:
		return balancer.OutcomeIgnore, breaker.Ignore
	}
	return balancer.OutcomeSuccess, breaker.Success
}

// parsePushback reads grpc-retry-pushback-ms from a trailer. A malformed or repeated value
// reads as -1: do not retry, as gRFC A6 says.
func parsePushback(md metadata.MD) (time.Duration, bool) {
	v := md[PushbackKey]
	switch len(v) {
	case 0:
		return 0, false
	case 1:
		ms, err := strconv.ParseInt(v[0], 10, 32)
		if err != nil || ms < 0 {
			return -1, true
		}
		return time.Duration(ms) * time.Millisecond, true
	}
	return -1, true
}
