package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome/grpcoutcome"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
	"github.com/proxyless/proxyless/route"
)

// GRPCServer is the server side of the mesh for a gRPC server: see [NewGRPCServer]. It holds
// nothing to release.
type GRPCServer struct {
	s *grpcServer
}

// NewGRPCServer returns what a gRPC server needs to be a mesh server, configured by opts;
// ServerOptions gives it to grpc.NewServer:
//
//	gs, err := middleware.NewGRPCServer(middleware.WithJWT(v), middleware.WithServerRateLimit(lim, key))
//	...
//	srv := grpc.NewServer(append(gs.ServerOptions(), grpc.Creds(creds))...)
//
// Its unary and stream interceptors, before the handler runs,
//
//  1. refuse a call whose deadline has already passed with DEADLINE_EXCEEDED (work the
//     client has given up on);
//  2. authorize the mTLS peer (WithPeerAuthorization), refusing with UNAUTHENTICATED or
//     PERMISSION_DENIED, the peer's identity in the handler's context; then the Authorizer
//     of WithAuthorizer (Consul intentions);
//  3. apply the rate limits whose key is known before authentication (WithServerRateLimit
//     with KeyByClientIP, KeyByHeader, the peer identity...), refusing with
//     RESOURCE_EXHAUSTED and a grpc-retry-pushback-ms trailer;
//  4. authenticate the token and apply the rules of WithJWT, refusing with UNAUTHENTICATED
//     or PERMISSION_DENIED, the verified claims in the handler's context;
//  5. apply the rate limits keyed by the claims (KeyBySubject, WithAuthenticatedRateLimit),
//     refused as in 3;
//  6. inject the faults of WithServerFaults, matched by the call's full method name and
//     metadata: a delay, and an abort with the fault's code (an error matching
//     route.ErrAborted);
//  7. shed load with the limiter of WithLoadShedding (a bulkhead or an adaptive concurrency
//     limit), refusing with RESOURCE_EXHAUSTED, which a proxyless client does not retry
//     but steers away from;
//
// and its stats handler is otelgrpc's server handler, which extracts the incoming trace
// context and records a SERVER span and the rpc.server.* metrics (see WithGRPCStatsHandler),
// unless the providers, taken when NewGRPCServer runs, record nothing (see WithTracerProvider).
// Refusals of the limits match ratelimit.ErrLimited with errors.Is inside the server (in
// interceptors chained before these).
//
// It takes the options of type GRPCServerOption: ServerOption (shared with NewHandler),
// GRPCOption and Option; a client option does not compile here. The server's TLS is
// grpc.Creds (see auth.ServerTLS). It validates every option and returns an error naming the
// bad ones. It starts nothing and needs no cleanup.
func NewGRPCServer(opts ...GRPCServerOption) (*GRPCServer, error) {
	cfg, err := newConfig(opts, GRPCServerOption.applyGRPCServer)
	if err != nil {
		return nil, err
	}
	s := &grpcServer{cfg: cfg}
	if !cfg.grpc.statsSet {
		if s.tel, err = telemetry.New(cfg.tel...); err != nil {
			return nil, fmt.Errorf("middleware: telemetry: %w", err)
		}
	}
	return &GRPCServer{s: s}, nil
}

// ServerOptions returns the options to give grpc.NewServer: the interceptors, chained, and
// the stats handler. Each call returns a new slice; add to it the server's own options
// (grpc.Creds, ...).
func (g *GRPCServer) ServerOptions() []grpc.ServerOption {
	s := g.s
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if p := s.cfg.server.peers; p != nil {
		unary = append(unary, p.UnaryServerInterceptor())
		stream = append(stream, p.StreamServerInterceptor())
	}
	if a := s.cfg.server.authz; a != nil { // WithAuthorizer: authorizer.go
		unary = append(unary, a.UnaryServerInterceptor())
		stream = append(stream, a.StreamServerInterceptor())
	}
	if len(s.cfg.server.limitsFor(false)) > 0 { // limits keyed before authentication
		unary = append(unary, s.unaryLimit)
		stream = append(stream, s.streamLimit)
	}
	if guard := s.cfg.server.jwt; guard != nil {
		unary = append(unary, guard.UnaryServerInterceptor())
		stream = append(stream, guard.StreamServerInterceptor())
	}
	if len(unary) > 0 {
		// Refuse dead calls before authenticating them (a token check may wait for keys);
		// s.unary checks again after.
		unary = append([]grpc.UnaryServerInterceptor{s.unaryCheck}, unary...)
		stream = append([]grpc.StreamServerInterceptor{s.streamCheck}, stream...)
	}
	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(append(unary, s.unary)...),
		grpc.ChainStreamInterceptor(append(stream, s.stream)...),
	}
	switch {
	case !s.cfg.grpc.statsSet:
		if h := s.tel.ServerHandler(); h != nil {
			sopts = append(sopts, grpc.StatsHandler(h))
		}
	case s.cfg.grpc.stats != nil:
		sopts = append(sopts, grpc.StatsHandler(s.cfg.grpc.stats))
	}
	if m := s.cfg.mesh; m != nil { // WithMesh: mesh.go
		sopts = append(sopts, meshServerCreds(m))
	}
	return sopts
}

// grpcServer runs the interceptors of a GRPCServer.
type grpcServer struct {
	cfg *config              // immutable
	tel *telemetry.Telemetry // the stats handler's providers; nil with WithGRPCStatsHandler
}

// errDeadlinePassed refuses a call whose deadline passed before its handler could start.
var errDeadlinePassed = status.Error(codes.DeadlineExceeded, "middleware: deadline passed before the handler ran")

// check refuses a call the server cannot take at all: a deadline that has passed, a client
// that has gone.
func (s *grpcServer) check(ctx context.Context) error {
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return errDeadlinePassed
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err() // the client went away
	}
	return nil
}

func (s *grpcServer) unaryCheck(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *grpcServer) streamCheck(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.check(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

func (s *grpcServer) unaryLimit(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.limit(ctx, info.FullMethod, false, func(md metadata.MD) error { return grpc.SetTrailer(ctx, md) }); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *grpcServer) streamLimit(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.limit(ss.Context(), info.FullMethod, false, func(md metadata.MD) error { ss.SetTrailer(md); return nil }); err != nil {
		return err
	}
	return handler(srv, ss)
}

// limit applies the rate limits of one phase: those keyed before token validation, or after
// it (afterAuth). setTrailer sets the call's trailer.
func (s *grpcServer) limit(ctx context.Context, method string, afterAuth bool, setTrailer func(metadata.MD) error) error {
	for _, rl := range s.cfg.server.rateLimits {
		if rl.afterAuth != afterAuth {
			continue
		}
		d, err := rl.lim.Take(ctx, rl.key(grpcIncoming(ctx, method)))
		if err != nil {
			return status.FromContextError(err).Err()
		}
		if !d.Allowed {
			if d.RetryAfter > 0 {
				ms := max(1, d.RetryAfter.Milliseconds())
				_ = setTrailer(metadata.Pairs(grpcoutcome.PushbackKey, strconv.FormatInt(ms, 10)))
			}
			return &limitError{err: fmt.Errorf("middleware: rate limit for %s: %w", method, d.Err())}
		}
	}
	return nil
}

// admit runs the checks before a handler that come after authentication: check, the rate
// limits keyed by the claims, faults, shedding. setTrailer sets the call's trailer. On
// success the caller must call the returned function (nil when there is nothing to release)
// with the handler's error.
func (s *grpcServer) admit(ctx context.Context, method string, setTrailer func(metadata.MD) error) (func(error), error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := s.limit(ctx, method, true, setTrailer); err != nil {
		return nil, err
	}
	if r := s.cfg.server.faults; r != nil {
		if err := injectGRPCFault(ctx, r, method); err != nil {
			return nil, err
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

// injectGRPCFault applies the fault of the route that the call matches in r's current table:
// it waits the drawn delay (returning the context's status as soon as the client goes), then
// returns the abort, if any, with the fault's code, unwrapping to the *route.AbortError.
func injectGRPCFault(ctx context.Context, r *route.Router, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	rq := route.Request{Method: http.MethodPost, Path: method, GRPCMethod: method, Metadata: md}
	if a := md[":authority"]; len(a) > 0 {
		rq.Host = a[0]
	}
	fillCaller(ctx, &rq) // the peer's address and verified identity: route_caller.go
	rt := r.Table().Match(&rq)
	if rt == nil {
		return nil
	}
	d, ab := rt.Fault().Sample()
	if d > 0 && !backoff.Sleep(ctx, d) {
		return status.FromContextError(ctx.Err()).Err()
	}
	if ab != nil {
		return &abortError{err: ab}
	}
	return nil
}
