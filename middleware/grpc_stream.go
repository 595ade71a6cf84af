package middleware

import (
	"context"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/internal/engine"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/outcome/grpcoutcome"
	"github.com/proxyless/proxyless/tracing"
)

func (c *grpcClient) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (_ grpc.ClientStream, err error) {
	// grpc.OnFinish runs once, when the stream ends, not once per attempt. (Header, Trailer
	// and Peer stay on the attempts: an attempt ends before the next starts, so the last
	// one's, the stream's, is what the caller reads.)
	opts, onFinish := splitOnFinish(opts)
	started := false
	defer func() {
		if err != nil && !started {
			runOnFinish(onFinish, err)
		}
	}()
	if err := expired(ctx); err != nil {
		return nil, err
	}
	var tr *telemetry.Request
	if c.tel.Enabled() {
		ctx, tr = c.tel.StartStream(ctx, c.destination(cc), method)
	}
	pol, rt := &c.pol, grpcRoute{}
	ownCC, ownStreamer := cc, streamer
	if c.cfg.routes != nil {
		var rerr error
		if rt, rerr = c.route(ctx, method, cc, tr); rerr != nil {
			tr.EndGRPC(nil, grpcLocalKind(rerr), rerr)
			return nil, rerr
		}
		pol = rt.pol
		if rt.cc != nil { // the route sends the stream to another destination: grpc_routed.go
			cc, streamer = rt.cc, streamOn
		}
	}
	release, err := c.admit(ctx, cc.Target())
	if c.cfg.outbound != nil && tr != nil {
		recordOutbound(ctx, c.tel, err)
	}
	if err != nil {
		tr.EndGRPC(nil, grpcLocalKind(err), err)
		return nil, err
	}
	sl, err := c.streamSlot(cc) // grpc_limits.go
	if err != nil {
		if release != nil {
			release(outcome.LocalRefusal)
		}
		tr.EndGRPC(nil, outcome.LocalRefusal, err)
		return nil, err
	}
	caller, cancel := ctx, context.CancelFunc(func() {})
	if pol.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, pol.timeout)
	}
	c.bud.Deposit()
	s := &retryStream{
		c: c, pol: pol, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts,
		call: grpcbalancer.NewCall(true), release: release, cancel: cancel, tr: tr, caller: caller,
		onFinish: onFinish, limits: sl, rt: rt,
	}
	if rt.matched {
		c.routeHashKey(ctx, rt.dec.Route, s.call)                     // hashing.go
		s.fb = c.fallbackFor(ctx, &rt, ownCC, nil, ownStreamer, true) // grpc_fallback.go
	}
	started = true // from here on, the stream's end runs onFinish
	s.committed.Store(pol.retry.Disable)
	st, failed, kind, err := s.open(0, 0)
	if err != nil {
		s.finish(err, failed, kind)
		return nil, err
	}
	s.cur.Store(st)
	s.opened = time.Since(rt.start)
	if tr != nil || release != nil || sl != nil || rt.matched {
		// A caller may end a stream by cancelling its context rather than reading it to its
		// end: finish it then too, so that its span ends and its outbound slot is released.
		s.stop = context.AfterFunc(ctx, func() {
			err := status.FromContextError(ctx.Err()).Err()
			s.end(err, nil, s.ctxKind(err))
		})
	}
	return s, nil
}

// streamAttempt is one attempt of a stream.
type streamAttempt struct {
	cs     grpc.ClientStream
	att    *grpcbalancer.Attempt
	cancel context.CancelFunc
	ta     *telemetry.Attempt // the attempt's telemetry; nil without
}

// retryStream is a client stream that retries on another endpoint while nothing has come
// back from the server: no headers, no message. It keeps what the caller sent (up to the
// body buffer cap, 64 KiB by default) to replay it; a stream that sends more is not retried.
// Its attempts share one grpcbalancer.Call, so each goes to an endpoint not yet tried.
//
// Like any grpc.ClientStream, SendMsg and RecvMsg may run in two goroutines at once; sendMu
// orders sends and the replacement of the current attempt.
type retryStream struct {
	c        *grpcClient
	pol      *policies       // the client's, or its route's; immutable
	ctx      context.Context // the call's: lives as long as the stream, like grpc's own
	caller   context.Context // the caller's, which ctx bounds by the overall timeout
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption
	call     *grpcbalancer.Call
	release  func(outcome.Kind) // outbound limits; nil when none
	limits   *streamLimits      // the destination's limits (WithLimits); nil when none
	onFinish []func(error)      // the caller's grpc.OnFinish callbacks, run once at the end
	rt       grpcRoute          // what its route decided, for the canary analysis
	fb       *grpcFallback      // the route's fallback; nil when none: grpc_fallback.go
	opened   time.Duration      // how long its first attempt took to start; set before use
	cancel   context.CancelFunc // the overall timeout's
	tr       *telemetry.Request // the stream's telemetry; nil without
	stop     func() bool        // stops the finish on cancellation; nil when none; set before use

	cur       atomic.Pointer[streamAttempt]
	committed atomic.Bool // something came back, or the sent buffer overflowed: no retries
	retries   int         // guarded by sendMu

	sendMu    sync.Mutex
	sent      []any // guarded by sendMu; the messages to replay
	sentBytes int   // guarded by sendMu
	closed    bool  // guarded by sendMu: CloseSend was called

	finishOnce sync.Once
}

// attempt prepares the context of attempt n of the stream: its per-attempt deadline, the
// grpcbalancer.Attempt the picker reads, telemetry and, for a retry, the number of attempts
// before it. cancel is never nil.
func (s *retryStream) attempt(n int, kind tracing.AttemptKind, waited time.Duration) (ctx context.Context, cancel context.CancelFunc, a *grpcbalancer.Attempt, ta *telemetry.Attempt) {
	ctx, cancel = s.ctx, func() {}
	if to := s.pol.attemptTO; to > 0 {
		ctx, cancel = context.WithTimeout(s.ctx, to)
	}
	a = s.call.NewAttempt()
	a.Cause = func(err error) outcome.Cause { return streamCause(s.caller, s.ctx, ctx, err) }
	if s.tr != nil {
		ctx, ta = s.tr.StartAttempt(ctx, telemetry.AttemptInfo{N: n, Kind: kind, Backoff: waited, NoBreaker: s.c.cfg.breakerOff})
		a.Observer = ta
	}
	ctx = grpcbalancer.NewContext(ctx, a)
	if n > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, previousAttemptsKey, strconv.Itoa(n))
	}
	return ctx, cancel, a, ta
}

// streamCause says which of a stream attempt's contexts ended, if any; a DEADLINE_EXCEEDED
// the server sent first is charged to the earliest deadline (engine.DeadlineCauseOf).
func streamCause(caller, call, attempt context.Context, err error) outcome.Cause {
	switch {
	case caller.Err() != nil:
		return outcome.CauseCaller
	case call.Err() != nil:
		return outcome.CauseOverallTimeout
	case attempt.Err() != nil:
		return outcome.CauseAttemptTimeout
	case status.Code(err) == codes.DeadlineExceeded:
		return engine.DeadlineCauseOf(caller, call, attempt)
	}
	return outcome.CauseNone
}

// retryable decides whether a stream attempt that failed with err, classified o (see
// grpcClassify) under cause, may be followed by another after n retries, and after how long;
// headers says response headers arrived.
func (s *retryStream) retryable(err error, o outcome.Outcome, cause outcome.Cause, headers bool, n int) (time.Duration, bool) {
	if o.Kind == outcome.LocalRefusal || !s.c.grpcRetryable(err, cause, headers) {
		return 0, false
	}
	return engine.RetryWait(s.ctx, &s.pol.eng.Retry, o, n)
}

// classify returns the outcome of the stream attempt a, which failed with err, and the cause
// that ended it. Call it before cancelling the attempt's context.
func (s *retryStream) classify(a *grpcbalancer.Attempt, err error, trailer metadata.MD) (outcome.Outcome, outcome.Cause) {
	cause := a.Cause(err)
	return grpcClassify(a, err, trailer, cause), cause
}

// ctxKind is the outcome of a stream that the end of its own context ended (err is that
// context's status): Canceled when the caller's ended, LocalTimeout for the overall timeout.
func (s *retryStream) ctxKind(err error) outcome.Kind {
	return grpcoutcome.FromError(err, nil, streamCause(s.caller, s.ctx, s.ctx, err)).Kind
}

// localError returns the error to hand the caller for a failed attempt: the picker's own
// refusal when it made one (so that errors.Is works), else err.
func localError(err error, a *grpcbalancer.Attempt) error {
	if pe := a.PickError(); pe != nil {
		return pe
	}
	return err
}

// open starts attempt n, after waiting waited (for telemetry), retrying failures to start it
// as the retry policy allows. On failure it returns the telemetry of the attempt that failed
// and the stream's outcome.
func (s *retryStream) open(n int, waited time.Duration) (_ *streamAttempt, failed *telemetry.Attempt, _ outcome.Kind, _ error) {
	kind := tracing.AttemptFirst
	if n > 0 {
		kind = tracing.AttemptRetry
	}
	for ; ; n++ {
		cs, cancel, a, ta, err := s.start(n, kind, waited)
		if err == nil {
			return &streamAttempt{cs: cs, att: a, cancel: cancel, ta: ta}, nil, outcome.Success, nil
		}
		o, cause := s.classify(a, err, nil)
		cancel()
		ta.End(o.Kind)
		wait, retry := s.retryable(err, o, cause, false, n)
		if !retry || s.committed.Load() {
			return nil, ta, o.Kind, localError(err, a)
		}
		if !s.c.bud.Withdraw(time.Now()) {
			s.c.budgetRefused(s.tr, tracing.AttemptRetry)
			return nil, ta, o.Kind, localError(err, a)
		}
		if !s.limits.acquireRetry() {
			return nil, ta, o.Kind, localError(err, a)
		}
		if !backoff.Sleep(s.ctx, wait) {
			err := status.FromContextError(s.ctx.Err()).Err() // as gRPC's own retries
			return nil, ta, s.ctxKind(err), err
		}
		ta.Discarded()
		kind, waited = tracing.AttemptRetry, wait
		s.retries++
		s.c.stats.Retries.Add(1)
	}
}

// finish ends the stream with err (nil for OK) and outcome kind, the result of attempt ta
// (nil: the current one): see end. It also stops the end that cancellation would bring.
func (s *retryStream) finish(err error, ta *telemetry.Attempt, kind outcome.Kind) {
	if s.stop != nil {
		s.stop()
	}
	s.end(err, ta, kind)
}

// end ends the stream once: its attempt's context, the overall timeout, the outbound limits
// and the telemetry, which learn the stream's outcome, kind.
func (s *retryStream) end(err error, ta *telemetry.Attempt, kind outcome.Kind) {
	s.finishOnce.Do(func() {
		defer runOnFinish(s.onFinish, err)
		st := s.cur.Load()
		if st != nil {
			st.cancel()
		}
		s.cancel()
		if s.release != nil {
			s.release(kind)
		}
		s.analyse(kind)
		s.limits.release()
		if s.tr != nil {
			if ta == nil && st != nil {
				ta = st.ta
			}
			ta.End(kind) // when the attempt's own End has not come first
			s.tr.EndGRPC(ta, kind, err)
		}
	})
}

// Header returns the current attempt's header. An error other than io.EOF ends the stream,
// as gRPC's ClientStream contract says: the caller need not read it further.
func (s *retryStream) Header() (metadata.MD, error) {
	st := s.cur.Load()
	md, err := st.cs.Header()
	if md != nil {
		s.committed.Store(true)
	}
	if err != nil && err != io.EOF {
		o, _ := s.classify(st.att, err, nil)
		s.finish(err, st.ta, o.Kind)
	}
	return md, err
}

func (s *retryStream) Trailer() metadata.MD { return s.cur.Load().cs.Trailer() }

func (s *retryStream) CloseSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.closed = true
	return s.cur.Load().cs.CloseSend()
}

func (s *retryStream) Context() context.Context { return s.cur.Load().cs.Context() }

// SendMsg sends m on the current attempt, keeping it for a replay while the stream may still
// be retried. An error other than io.EOF (one the client made, such as a message over the
// size limit) ends the stream, as gRPC's ClientStream contract says; after io.EOF the caller
// reads the status with RecvMsg.
func (s *retryStream) SendMsg(m any) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if !s.committed.Load() {
		pm, ok := m.(proto.Message)
		if ok {
			s.sentBytes += proto.Size(pm)
		}
		if !ok || int64(s.sentBytes) > s.c.cfg.maxBufferBody {
			s.committed.Store(true)
			s.sent = nil
		} else {
			s.sent = append(s.sent, m)
		}
	}
	st := s.cur.Load()
	err := st.cs.SendMsg(m)
	if err != nil && err != io.EOF {
		o, _ := s.classify(st.att, err, nil)
		s.finish(err, st.ta, o.Kind)
	}
	return err
}

func (s *retryStream) RecvMsg(m any) error {
	for {
		st := s.cur.Load()
		err := st.cs.RecvMsg(m)
		if err == nil {
			s.committed.Store(true)
			if !s.desc.ServerStreams {
				s.finish(nil, st.ta, outcome.Success) // a single response ends the stream
			}
			return nil
		}
		if err == io.EOF {
			s.finish(nil, st.ta, outcome.Success)
			return err
		}
		o, cause := s.classify(st.att, err, st.cs.Trailer())
		st.ta.End(o.Kind)
		retried, rerr := s.retry(st, err, o, cause)
		if !retried {
			kind := o.Kind
			if rerr != err {
				kind = s.ctxKind(rerr) // the stream's context ended while waiting to retry
			}
			err = localError(rerr, st.att)
			s.finish(err, st.ta, kind)
			return err
		}
	}
}

// retry replaces the failed attempt st with a new one on another endpoint, replaying what
// was sent, when the policy allows; err is how st failed, o its outcome and cause what ended
// it. It reports whether it did and, when it did not, the error that ends the stream: err, or
// the context's status when it ended the wait.
func (s *retryStream) retry(st *streamAttempt, err error, o outcome.Outcome, cause outcome.Cause) (bool, error) {
	if s.committed.Load() {
		return false, err
	}
	md, _ := st.cs.Header() // the stream has ended: this does not block
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.committed.Load() {
		return false, err
	}
	wait, retry := s.retryable(err, o, cause, md != nil, s.retries)
	if !retry {
		return false, err
	}
	if !s.c.bud.Withdraw(time.Now()) {
		s.c.budgetRefused(s.tr, tracing.AttemptRetry)
		return false, err
	}
	if !s.limits.acquireRetry() {
		return false, err
	}
	if !backoff.Sleep(s.ctx, wait) {
		return false, status.FromContextError(s.ctx.Err()).Err() // as gRPC's own retries
	}
	s.retries++
	s.c.stats.Retries.Add(1)
	next, _, _, oerr := s.open(s.retries, wait)
	if oerr != nil {
		if s.ctx.Err() != nil {
			return false, status.FromContextError(s.ctx.Err()).Err()
		}
		return false, err
	}
	for _, m := range s.sent {
		if next.cs.SendMsg(m) != nil {
			break // the new attempt failed too: RecvMsg will say how
		}
	}
	if s.closed {
		_ = next.cs.CloseSend()
	}
	st.cancel()
	st.ta.Discarded()
	s.cur.Store(next)
	return true, nil
}

// splitOnFinish takes the grpc.OnFinish options out of opts.
func splitOnFinish(opts []grpc.CallOption) (rest []grpc.CallOption, fns []func(error)) {
	for i, o := range opts {
		var fn func(error)
		switch o := o.(type) {
		case grpc.OnFinishCallOption:
			fn = o.OnFinish
		case *grpc.OnFinishCallOption:
			fn = o.OnFinish
		default:
			if fns != nil {
				rest = append(rest, o)
			}
			continue
		}
		if fns == nil {
			rest = append(rest, opts[:i]...)
		}
		fns = append(fns, fn)
	}
	if fns == nil {
		return opts, nil
	}
	return rest, fns
}

func runOnFinish(fns []func(error), err error) {
	for _, fn := range fns {
		fn(err)
	}
}
