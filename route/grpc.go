package route

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file is the gRPC adapter of the package's errors.

// GRPCStatus returns the abort as a gRPC status, so that status.Code(err) is GRPCCode.
func (e *AbortError) GRPCStatus() *status.Status {
	return status.New(codes.Code(e.GRPCCode), "route: injected abort")
}
