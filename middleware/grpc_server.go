package middleware

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
)

// ServerOptions returns what a gRPC server needs to be a mesh server: unary and stream
// interceptors that, before the handler runs,
//
//  1. refuse a call whose deadline has already passed with DEADLINE_EXCEEDED (work the
//     client has given up on);
//  2. apply the per-key rate limits of WithGRPCServerRateLimit, refusing with
//     RESOURCE_EXHAUSTED and a grpc-retry-pushback-ms trailer;
//  3. shed load with the limiter of WithLoadShedding (a bulkhead or an adaptive concurrency
//     limit), refusing with RESOURCE_EXHAUSTED, which a proxyless client does not retry
//     but steers away from;
//
// and otelgrpc's server stats handler (see WithGRPCStatsHandler). Refusals match
// ratelimit.ErrLimited with errors.Is inside the server (in interceptors chained before
// these). Client-only options have no effect. An invalid option makes every call fail with
// status Internal.
//
// The options start nothing and need no cleanup.
func ServerOptions(opts ...Option) []grpc.ServerOption {
	s := newGRPCServer(opts)
	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unary),
		grpc.ChainStreamInterceptor(s.stream),
	}
	switch {
	case !s.cfg.grpc.statsSet:
		sopts = append(sopts, grpc.StatsHandler(otelgrpc.NewServerHandler()))
	case s.cfg.grpc.stats != nil:
		sopts = append(sopts, grpc.StatsHandler(s.cfg.grpc.stats))
	}
	return sopts
}

type grpcServer struct {
	cfg *config // immutable
	err error   // an invalid option
}

func newGRPCServer(opts []Option) *grpcServer {
	cfg, err := newConfig(opts)
	if err == nil && cfg.outbound != nil {
		err = errors.New("middleware: ServerOptions: WithRateLimit, WithRateLimiter and WithConcurrencyLimit limit a client's outbound calls; use WithGRPCServerRateLimit and WithLoadShedding")
	}
	s := &grpcServer{cfg: cfg}
	if err != nil {
		s.err = &configError{err: err}
	}
	return s
}

// errDeadlinePassed refuses a call whose deadline passed before its handler could start.
var errDeadlinePassed = status.Error(codes.DeadlineExceeded, "middleware: deadline passed before the handler ran")

// admit runs the checks before a handler. setTrailer sets the call's trailer. On success the
// caller must call the returned function (nil when there is nothing to release) with the
// handler's error.
func (s *grpcServer) admit(ctx context.Context, method string, setTrailer func(metadata.MD) error) (func(error), error) {
	if s.err != nil {
		return nil, s.err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return nil, errDeadlinePassed
	}
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err() // the client went away
	}
	for _, rl := range s.cfg.grpc.rateLimits {
		d, err := rl.lim.Take(ctx, rl.key(ctx, method))
		if err != nil {
			return nil, status.FromContextError(err).Err()
		}
		if !d.Allowed {
			if d.RetryAfter > 0 {
				ms := max(1, d.RetryAfter.Milliseconds())
				_ = setTrailer(metadata.Pairs(grpcbalancer.PushbackKey, strconv.FormatInt(ms, 10)))
			}
			return nil, &limitError{err: fmt.Errorf("middleware: rate limit for %s: %w", method, d.Err())}
		}
	}
	if shed := s.cfg.server.shed; shed != nil {
		release, err := shed.Acquire(ctx)
		if err != nil {
			if errors.Is(err, ratelimit.ErrLimited) {
				return nil, &limitError{err: fmt.Errorf("middleware: load shed for %s: %w", method, err)}
			}
			return nil, status.FromContextError(err).Err()
		}
		return func(herr error) {
			o := overload.Success
			if ctx.Err() != nil && status.Code(herr) != codes.OK {
				o = overload.Dropped
			}
			release(o)
		}, nil
	}
	return nil, nil
}

func (s *grpcServer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	release, err := s.admit(ctx, info.FullMethod, func(md metadata.MD) error { return grpc.SetTrailer(ctx, md) })
	if err != nil {
		return nil, err
	}
	if release != nil {
		defer func() { release(err) }()
	}
	return handler(ctx, req)
}

func (s *grpcServer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	release, err := s.admit(ss.Context(), info.FullMethod, func(md metadata.MD) error { ss.SetTrailer(md); return nil })
	if err != nil {
		return err
	}
	if release != nil {
		defer func() { release(err) }()
	}
	return handler(srv, ss)
}
