package middleware

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/outcome/grpcoutcome"
	"github.com/proxyless/proxyless/tracing"
)

// previousAttemptsKey is the metadata in which a retry or hedge says how many attempts of the
// call came before it (gRFC A6).
const previousAttemptsKey = "grpc-previous-rpc-attempts"

// grpcUnary is the gRPC unary adapter of the attempt engine. The endpoint is picked by the
// channel's picker (package grpcbalancer), which reads the call's grpcbalancer.Call from the
// attempt's context so that each attempt goes to another endpoint, and reports each
// attempt's outcome to the balancer and the breaker itself.
type grpcUnary struct {
	c      *grpcClient
	pol    *policies
	tr     *telemetry.Request // nil while telemetry is off
	call   *grpcbalancer.Call
	method string
	req    any
	reply  any // the caller's
	// replyType makes each hedged attempt's own reply message. It is read once, before any
	// attempt starts: attempts never touch the caller's message, which the call resets and
	// fills with the winner's reply while a losing attempt may still be starting.
	replyType protoreflect.MessageType
	hedged    bool
	opts      []grpc.CallOption // the caller's, without those that write back to it

	// first is the side the route chose (the call's channel, its invoker and u.call); side
	// is where attempts go now: first, or fb's once first could take one no more.
	first grpcSide
	side  atomic.Pointer[grpcSide]
	fb    *grpcFallback // the route's fallback; nil when none: grpc_fallback.go

	run engine.Call[*grpcAttempt]
}

// grpcAttempt is what one unary attempt produced: its own reply when attempts may run at
// once, and what the caller's write-back call options ask for, given to the caller only from
// the attempt whose result it gets.
type grpcAttempt struct {
	reply           any
	header, trailer metadata.MD
	peer            peer.Peer
	att             *grpcbalancer.Attempt
	ta              *telemetry.Attempt
	headersArrived  bool
	pickErr         error
}

var _ engine.Sender[*grpcAttempt] = (*grpcUnary)(nil)

// writeBack splits the call options that write back to the caller (grpc.Header,
// grpc.Trailer, grpc.Peer, grpc.OnFinish) from the others.
func writeBack(opts []grpc.CallOption) (rest, back []grpc.CallOption) {
	for _, o := range opts {
		switch o.(type) {
		case grpc.HeaderCallOption, *grpc.HeaderCallOption, grpc.TrailerCallOption, *grpc.TrailerCallOption,
			grpc.PeerCallOption, *grpc.PeerCallOption, grpc.OnFinishCallOption, *grpc.OnFinishCallOption:
			back = append(back, o)
		default:
			rest = append(rest, o)
		}
	}
	if back == nil {
		return opts, nil
	}
	return rest, back
}

// deliver gives the caller what its write-back options asked for, from the winning attempt
// (nil when none answered), once, before the call returns.
func deliver(back []grpc.CallOption, w *grpcAttempt, err error) {
	for _, o := range back {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			if w != nil && o.HeaderAddr != nil {
				*o.HeaderAddr = w.header
			}
		case *grpc.HeaderCallOption:
			if w != nil && o.HeaderAddr != nil {
				*o.HeaderAddr = w.header
			}
		case grpc.TrailerCallOption:
			if w != nil && o.TrailerAddr != nil {
				*o.TrailerAddr = w.trailer
			}
		case *grpc.TrailerCallOption:
			if w != nil && o.TrailerAddr != nil {
				*o.TrailerAddr = w.trailer
			}
		case grpc.PeerCallOption:
			if w != nil && o.PeerAddr != nil {
				*o.PeerAddr = w.peer
			}
		case *grpc.PeerCallOption:
			if w != nil && o.PeerAddr != nil {
				*o.PeerAddr = w.peer
			}
		case grpc.OnFinishCallOption:
			o.OnFinish(err)
		case *grpc.OnFinishCallOption:
			o.OnFinish(err)
		}
	}
}

func (c *grpcClient) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) (err error) {
	opts, back := writeBack(opts)
	if back != nil {
		defer func() { deliver(back, nil, err) }() // replaced below once attempts ran
	}
	if err := expired(ctx); err != nil {
		return err
	}
	var tr *telemetry.Request
	var winner *telemetry.Attempt
	var kind outcome.Kind // the call's outcome: the winning attempt's, or the refusal's
	if c.tel.Enabled() {
		ctx, tr = c.tel.StartCall(ctx, c.destination(cc), method)
		defer func() { tr.EndGRPC(winner, kind, err) }()
	}
	pol, rt := &c.pol, grpcRoute{}
	ownCC, ownInvoker := cc, invoker
	if c.cfg.routes != nil {
		if rt, err = c.route(ctx, method, cc, tr); err != nil {
			return err
		}
		pol = rt.pol
		if rt.cc != nil { // the route sends the call to another destination: grpc_routed.go
			cc, invoker = rt.cc, invokeOn
		}
	}
	release, err := c.admit(ctx, cc.Target())
	if c.cfg.outbound != nil && tr != nil {
		recordOutbound(ctx, c.tel, err)
	}
	if err != nil {
		kind = grpcLocalKind(err)
		return err
	}
	pm, isProto := reply.(proto.Message)
	u := &grpcUnary{
		c: c, pol: pol, tr: tr, call: grpcbalancer.NewCall(false), method: method, req: req,
		reply: reply, opts: opts,
		hedged: isProto && pol.hedge.enabled && !pol.retry.Disable,
	}
	if u.hedged {
		u.replyType = pm.ProtoReflect().Type()
	}
	u.first = grpcSide{cc: cc, invoker: invoker, call: u.call}
	u.side.Store(&u.first)
	if rt.matched {
		c.routeHashKey(ctx, rt.dec.Route, u.call) // hashing.go
		u.fb = c.fallbackFor(ctx, &rt, ownCC, ownInvoker, nil, false)
	}
	u.run = engine.Call[*grpcAttempt]{
		Policy: &pol.eng, Budget: c.bud, Stats: &c.stats, Sender: u, Hedgeable: u.hedged,
		Latency: c.latencyFor(cc, pol),
	}
	if tr != nil {
		u.run.OnBudgetRefused = tr.BudgetRefused
	}
	res := engine.Run(ctx, &u.run)
	res.Release()
	rt.fellBack = u.fb != nil && u.fb.fellBack.Load()
	rt.done(res.Outcome.Kind)
	kind = res.Outcome.Kind
	if release != nil {
		release(kind)
	}
	w := res.Value
	if w != nil {
		winner = w.ta
		if u.hedged && res.Err == nil {
			proto.Reset(reply.(proto.Message))
			proto.Merge(reply.(proto.Message), w.reply.(proto.Message))
		}
	}
	err = u.callerError(ctx, res)
	if back != nil {
		deliver(back, w, err)
		back = nil
	}
	return err
}

// callerError returns the error to hand the caller: the picker's own refusal when it made
// one (so that errors.Is matches breaker.ErrOpen or balancer.ErrNoEndpoints), a status for a
// context that ended, else the attempt's error.
func (u *grpcUnary) callerError(ctx context.Context, res engine.Result[*grpcAttempt]) error {
	if res.Err == nil {
		return nil
	}
	if w := res.Value; w != nil && w.pickErr != nil {
		return w.pickErr
	}
	if _, ok := status.FromError(res.Err); !ok {
		if cerr := ctx.Err(); cerr != nil || res.Err == context.Canceled || res.Err == context.DeadlineExceeded {
			if cerr == nil {
				cerr = res.Err
			}
			return &contextError{err: cerr}
		}
	}
	return res.Err
}

// Send invokes one attempt on the call's side; the channel's picker chooses its endpoint.
// When that side can take the attempt no more (see sideRefused), the attempt, and every
// later one of the call, goes to the route's fallback instead; a retry asks for an endpoint
// the call did not use (grpcbalancer.Attempt.OnlyNew) while there is a fallback to go to.
func (u *grpcUnary) Send(a *engine.Attempt) (*grpcAttempt, error) {
	sd := u.side.Load()
	w, err := u.sendOn(a, sd, u.fb != nil && sd == &u.first && a.Kind == tracing.AttemptRetry)
	if u.fb == nil || !sideRefused(w.att, err) {
		return w, err
	}
	next := u.fb.take(&u.side, sd) // grpc_fallback.go
	if next == nil {
		return w, err
	}
	if w.att.BreakerRefused() {
		u.c.stats.BreakerRefusals.Add(1)
		w.ta.AttemptRefused()
	}
	w.ta.End(outcome.LocalRefusal)
	w.ta.Discarded()
	return u.sendOn(a, next, false)
}

// sendOn invokes one attempt on side sd, within its destination's limits (WithLimits).
func (u *grpcUnary) sendOn(a *engine.Attempt, sd *grpcSide, onlyNew bool) (*grpcAttempt, error) {
	lim := u.c.limits.limiter(sd.cc.Target())
	if lim == nil {
		return u.sendAttempt(a, sd, onlyNew)
	}
	release, err := acquireAttempt(lim, a.Kind, overflows{tel: u.c.destination(sd.cc), n: &u.c.overflows}) // limits.go
	if err != nil {
		return &grpcAttempt{reply: u.reply, att: sd.call.NewAttempt()}, &limitError{err: err}
	}
	defer release()
	return u.sendAttempt(a, sd, onlyNew)
}

// sendAttempt invokes one attempt on side sd; the channel's picker chooses its endpoint.
func (u *grpcUnary) sendAttempt(a *engine.Attempt, sd *grpcSide, onlyNew bool) (*grpcAttempt, error) {
	w := &grpcAttempt{reply: u.reply, att: sd.call.NewAttempt()}
	w.att.OnlyNew = onlyNew
	w.att.Cause = func(err error) outcome.Cause { return grpcCause(a, err) }
	ctx := a.Context()
	if u.tr != nil {
		ctx, w.ta = u.tr.StartAttempt(ctx, telemetry.AttemptInfo{N: a.N, Kind: a.Kind, Backoff: a.Waited, NoBreaker: u.c.cfg.breakerOff})
		w.att.Observer = w.ta
		a.Value = w.ta
	}
	ctx = grpcbalancer.NewContext(ctx, w.att)
	if a.N > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, previousAttemptsKey, strconv.Itoa(a.N))
	}
	if u.hedged {
		w.reply = u.replyType.New().Interface()
	} else if m, ok := u.reply.(proto.Message); ok && a.N > 0 {
		proto.Reset(m) // nothing of a failed attempt leaks into the next
	}
	opts := append(u.opts[:len(u.opts):len(u.opts)], grpc.Header(&w.header), grpc.Trailer(&w.trailer), grpc.Peer(&w.peer))
	err := sd.invoker(ctx, u.method, u.req, w.reply, sd.cc, opts...)
	w.headersArrived = w.header != nil
	w.pickErr = w.att.PickError()
	return w, err
}

// Classify maps the attempt's status to the outcome vocabulary, and says whether the call may
// be sent again: see grpcRetryable. The attempt's telemetry records that outcome.
func (u *grpcUnary) Classify(a *engine.Attempt, w *grpcAttempt, err error, cause outcome.Cause) (outcome.Outcome, bool) {
	if w.att.BreakerRefused() {
		u.c.stats.BreakerRefusals.Add(1) // once per attempt, however many breakers refused
		w.ta.AttemptRefused()
	}
	if errors.Is(err, balancer.ErrOverflow) { // a destination's limit refused it: nothing was sent
		w.ta.End(outcome.LocalRefusal)
		return outcome.Outcome{Kind: outcome.LocalRefusal}, false
	}
	if cause == outcome.CauseNone && status.Code(err) == codes.DeadlineExceeded {
		cause = a.DeadlineCause() // see grpcCause
	}
	o := grpcClassify(w.att, err, w.trailer, cause)
	w.ta.End(o.Kind)
	return o, o.Kind != outcome.LocalRefusal && u.c.grpcRetryable(err, cause, w.headersArrived)
}

// grpcClassify maps what an attempt returned to the outcome vocabulary: LocalRefusal when the
// picker refused it (nothing was sent), else its status and trailer read by
// grpcoutcome.FromError with the cause that ended it.
func grpcClassify(att *grpcbalancer.Attempt, err error, trailer metadata.MD, cause outcome.Cause) outcome.Outcome {
	if att.PickError() != nil {
		return outcome.Outcome{Kind: outcome.LocalRefusal}
	}
	return grpcoutcome.FromError(err, trailer, cause)
}

// grpcLocalKind is the outcome of a call or stream refused before any attempt: Canceled when
// its context ended (or a route's fault delay outlasted it), LocalRefusal for the rest (an
// outbound limit, a route's abort or a route the channel cannot follow).
func grpcLocalKind(err error) outcome.Kind {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return outcome.Canceled
	}
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded:
		return outcome.Canceled
	}
	return outcome.LocalRefusal
}

// grpcRetryable says whether a failed attempt may be followed by another: no response
// headers arrived, no context of the caller's or the call's ended, and its code is one of the
// retry codes. A per-attempt timeout ends the attempt with DEADLINE_EXCEEDED: it is retried
// only when that code is listed (gRPC calls carry no idempotency, and a timed-out call may
// have been done).
func (c *grpcClient) grpcRetryable(err error, cause outcome.Cause, headers bool) bool {
	if err == nil || headers || (cause != outcome.CauseNone && cause != outcome.CauseAttemptTimeout) {
		return false
	}
	code := status.Code(err)
	if cause == outcome.CauseAttemptTimeout {
		code = codes.DeadlineExceeded
	}
	return int(code) < len(c.retryCodes) && c.retryCodes[code] && code != codes.OK
}

// Detach returns w: a gRPC attempt's result holds no connection.
func (u *grpcUnary) Detach(_ *engine.Attempt, w *grpcAttempt) (*grpcAttempt, bool) { return w, true }

// Discard ends the telemetry of an attempt whose result the caller will not get.
func (u *grpcUnary) Discard(a *engine.Attempt, w *grpcAttempt, _ error) {
	if w != nil {
		w.ta.Discarded()
	}
}

// grpcCause is the cause that ended attempt a with err. gRPC propagates deadlines: a
// DEADLINE_EXCEEDED the server sent while every context here is still live (the server's
// clock ran out first) is the deadline we sent, so it is charged to whose deadline that was.
func grpcCause(a *engine.Attempt, err error) outcome.Cause {
	c := a.Cause()
	if c == outcome.CauseNone && status.Code(err) == codes.DeadlineExceeded {
		c = a.DeadlineCause()
	}
	return c
}
