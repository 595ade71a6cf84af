package middleware

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/internal/backoff"
)

func (c *grpcClient) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if c.err != nil {
		return nil, c.err
	}
	if err := expired(ctx); err != nil {
		return nil, err
	}
	pol := &c.pol
	if c.cfg.routes != nil {
		var err error
		if pol, err = c.route(ctx, method, cc); err != nil {
			return nil, err
		}
	}
	release, err := c.admit(ctx, cc.Target())
	if err != nil {
		return nil, err
	}
	cancel := context.CancelFunc(noop)
	if pol.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, pol.timeout)
	}
	c.bud.deposit()
	s := &retryStream{
		c: c, pol: pol, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts,
		call: grpcbalancer.NewCall(true), release: release, cancel: cancel,
	}
	s.committed.Store(pol.retry.Disable)
	st, err := s.open(0)
	if err != nil {
		s.finish(err)
		return nil, err
	}
	s.cur.Store(st)
	return s, nil
}

// streamAttempt is one attempt of a stream.
type streamAttempt struct {
	cs     grpc.ClientStream
	att    *grpcbalancer.Attempt
	cancel context.CancelFunc
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
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption
	call     *grpcbalancer.Call
	release  func(error)        // outbound limits; nil when none
	cancel   context.CancelFunc // the overall timeout's

	cur       atomic.Pointer[streamAttempt]
	committed atomic.Bool // something came back, or the sent buffer overflowed: no retries
	retries   int         // guarded by sendMu

	sendMu    sync.Mutex
	sent      []any // guarded by sendMu; the messages to replay
	sentBytes int   // guarded by sendMu
	closed    bool  // guarded by sendMu: CloseSend was called

	finishOnce sync.Once
}

// open starts attempt n, retrying failures to start it as the retry policy allows.
func (s *retryStream) open(n int) (*streamAttempt, error) {
	pol := &s.pol.retry
	for ; ; n++ {
		a := s.call.NewAttempt()
		actx, cancel := attempt(s.ctx, s.pol, a, false)
		cs, err := s.streamer(actx, s.desc, s.cc, s.method, s.opts...)
		if err == nil {
			return &streamAttempt{cs: cs, att: a, cancel: cancel}, nil
		}
		cancel()
		retry, wait := s.c.retryable(s.ctx, s.pol, err, a, false)
		if !retry || s.committed.Load() || n >= pol.MaxRetries || !s.c.bud.withdraw(time.Now()) {
			return nil, localError(err, a)
		}
		if wait == 0 {
			wait = backoff.FullJitter(pol.BackoffBase, pol.BackoffMax, n+1)
		}
		if !backoff.Sleep(s.ctx, wait) {
			return nil, err
		}
		s.retries++
	}
}

func (s *retryStream) finish(err error) {
	s.finishOnce.Do(func() {
		if st := s.cur.Load(); st != nil {
			st.cancel()
		}
		s.cancel()
		if s.release != nil {
			s.release(err)
		}
	})
}

func (s *retryStream) Header() (metadata.MD, error) {
	md, err := s.cur.Load().cs.Header()
	if md != nil {
		s.committed.Store(true)
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
	return s.cur.Load().cs.SendMsg(m)
}

func (s *retryStream) RecvMsg(m any) error {
	for {
		st := s.cur.Load()
		err := st.cs.RecvMsg(m)
		if err == nil {
			s.committed.Store(true)
			if !s.desc.ServerStreams {
				s.finish(nil) // a single response ends the stream
			}
			return nil
		}
		if err == io.EOF {
			s.finish(nil)
			return err
		}
		if !s.retry(st, err) {
			err = localError(err, st.att)
			s.finish(err)
			return err
		}
	}
}

// retry replaces the failed attempt st with a new one on another endpoint, replaying what
// was sent, when the policy allows. It reports whether it did.
func (s *retryStream) retry(st *streamAttempt, err error) bool {
	if s.committed.Load() {
		return false
	}
	md, _ := st.cs.Header() // the stream has ended: this does not block
	retry, wait := s.c.retryable(s.ctx, s.pol, err, st.att, md != nil)
	if !retry {
		return false
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	pol := &s.pol.retry
	if s.committed.Load() || s.retries >= pol.MaxRetries || !s.c.bud.withdraw(time.Now()) {
		return false
	}
	if wait == 0 {
		wait = backoff.FullJitter(pol.BackoffBase, pol.BackoffMax, s.retries+1)
	}
	if !backoff.Sleep(s.ctx, wait) {
		return false
	}
	s.retries++
	next, oerr := s.open(s.retries)
	if oerr != nil {
		return false
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
	s.cur.Store(next)
	return true
}
