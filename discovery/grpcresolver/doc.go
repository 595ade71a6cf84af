// Package grpcresolver is the gRPC adapter of package discovery: a resolver.Builder for the
// target scheme "proxyless" that follows a service through any [discovery.Resolver] and hands
// each endpoint set to the gRPC channel, with every endpoint's weight, zone, tags and metadata
// attached as attributes for the balancer.
//
//	conn, err := grpc.NewClient("proxyless:///payments",
//		grpc.WithResolvers(grpcresolver.NewBuilder(r)), ...)
//
// Most users get this through middleware.NewGRPCClient rather than directly.
package grpcresolver
