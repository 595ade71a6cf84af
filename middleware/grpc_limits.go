package middleware

import (
	"errors"
	"sync"

	"google.golang.org/grpc"

	"github.com/proxyless/proxyless/balancer"
)

// grpcLimits holds a gRPC client's destination limits (WithLimits): one balancer.Limiter per
// channel target, made on first use.
type grpcLimits struct {
	lim      balancer.Limits // immutable; zero when none
	limiters sync.Map        // channel target → *balancer.Limiter
}

// checkGRPCLimits refuses the limits a gRPC client cannot enforce, and bad values.
func checkGRPCLimits(l balancer.Limits) error {
	if l.MaxConnections != 0 || l.MaxPendingRequests != 0 {
		return errors.New("middleware: WithLimits: MaxConnections and MaxPendingRequests are HTTP limits, which a gRPC client cannot enforce (gRPC multiplexes calls on one connection per endpoint)")
	}
	if _, err := balancer.NewLimiter(l); err != nil {
		return errors.New("middleware: WithLimits: " + err.Error())
	}
	return nil
}

// limiter returns the limiter of target, or nil when the client has no limits.
func (g *grpcLimits) limiter(target string) *balancer.Limiter {
	if g.lim.IsZero() {
		return nil
	}
	if l, ok := g.limiters.Load(target); ok {
		return l.(*balancer.Limiter)
	}
	made, _ := balancer.NewLimiter(g.lim) // validated by checkGRPCLimits
	l, _ := g.limiters.LoadOrStore(target, made)
	return l.(*balancer.Limiter)
}

// streamSlot takes a request slot of cc's destination for a stream, for its whole life; nil
// (and no error) when the client has no limits. A refusal is RESOURCE_EXHAUSTED matching
// balancer.ErrMaxRequests.
func (c *grpcClient) streamSlot(cc *grpc.ClientConn) (*streamLimits, error) {
	lim := c.limits.limiter(cc.Target())
	if lim == nil {
		return nil, nil
	}
	sl := &streamLimits{lim: lim, rec: overflows{tel: c.destination(cc), n: &c.overflows}}
	if err := lim.AcquireRequest(); err != nil {
		sl.rec.record(balancer.LimitRequests)
		return nil, &limitError{err: err}
	}
	return sl, nil
}

// streamLimits is what a stream holds of its destination's limits: a request slot for its
// whole life, and a retry slot from its first retry on (its attempts run one after another,
// so one slot of each serves them all).
type streamLimits struct {
	lim *balancer.Limiter
	rec overflows

	mu    sync.Mutex
	retry bool // holds a retry slot; guarded by mu
	ended bool // guarded by mu
}

// acquireRetry takes the stream's retry slot unless it holds it, and reports whether the
// retry may go. A nil streamLimits admits every retry.
func (s *streamLimits) acquireRetry() bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	if s.retry {
		return true
	}
	if s.lim.AcquireRetry() != nil {
		s.rec.record(balancer.LimitRetries)
		return false
	}
	s.retry = true
	return true
}

// release gives back the stream's slots, once.
func (s *streamLimits) release() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	s.lim.ReleaseRequest()
	if s.retry {
		s.lim.ReleaseRetry()
	}
}
