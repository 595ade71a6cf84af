package breaker

// This file is the gRPC adapter: the status of an OpenError and the classification of the
// results of gRPC calls. It wraps no interceptor or picker; package middleware does.

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCStatus returns status Unavailable with the error's message, so that status.Code reports
// codes.Unavailable for an OpenError, wrapped or not, and gRPC clients may retry elsewhere.
func (e *OpenError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

// ClassifyGRPC classifies the result of one gRPC call. ctx is the caller's context. The rules,
// in order:
//
//   - no error: Success;
//   - an error while ctx is done (the caller cancelled or its deadline passed): Ignore;
//   - an error matching context.Canceled or ErrOpen, or status Canceled: Ignore;
//   - status ResourceExhausted (the server sheds load on purpose): Ignore;
//   - status Unavailable, DeadlineExceeded (a per-attempt timeout), Internal, Unknown or
//     DataLoss, and any error that carries no status: Failure;
//   - any other status (InvalidArgument, NotFound, PermissionDenied, ...): Success, since the
//     endpoint answered.
func ClassifyGRPC(ctx context.Context, err error) Outcome {
	if err == nil {
		return Success
	}
	if ctx != nil && ctx.Err() != nil {
		return Ignore
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrOpen) {
		return Ignore
	}
	s, ok := status.FromError(err)
	if !ok {
		return Failure
	}
	switch s.Code() {
	case codes.Canceled, codes.ResourceExhausted:
		return Ignore
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.DataLoss:
		return Failure
	default:
		return Success
	}
}
