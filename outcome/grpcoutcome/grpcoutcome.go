// Package grpcoutcome is the gRPC side of package outcome: it classifies the result of one
// gRPC attempt into the same vocabulary as an HTTP one.
package grpcoutcome

import (
	"context"
	"errors"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/outcome"
)

// PushbackKey is the trailer in which a server asks a client to wait before retrying
// (gRFC A6): milliseconds, or a negative value for "do not retry".
const PushbackKey = "grpc-retry-pushback-ms"

// FromError classifies one gRPC attempt: the error it ended with (nil for OK), the server's
// trailer (for its pushback; nil when none arrived) and the cause, if any, that ended the
// attempt's context. The rules, in order:
//
//   - no error: Success;
//   - a TLS verification failure: TLSFailure;
//   - a context done: LocalTimeout for the client's own timeouts, Canceled for the caller's
//     (see outcome.Cause);
//   - UNAVAILABLE (connection errors included) and DEADLINE_EXCEEDED sent by the server:
//     GatewayFailure;
//   - RESOURCE_EXHAUSTED: Throttled;
//   - INTERNAL, UNKNOWN, DATA_LOSS and errors that carry no status: Failure;
//   - an error matching context.Canceled, or CANCELED while every context here is live:
//     Canceled; an error matching context.DeadlineExceeded: LocalTimeout;
//   - any other code: Success, since the endpoint answered.
//
// RetryAfter is the trailer's grpc-retry-pushback-ms on UNAVAILABLE and RESOURCE_EXHAUSTED;
// a negative or malformed one reads as -1, "do not retry", as gRFC A6 says.
func FromError(err error, trailer metadata.MD, cause outcome.Cause) outcome.Outcome {
	if err == nil {
		return outcome.Outcome{}
	}
	if outcome.IsTLSFailure(err) {
		return outcome.Outcome{Kind: outcome.TLSFailure}
	}
	if cause != outcome.CauseNone {
		return outcome.FromError(err, cause)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return outcome.Outcome{Kind: outcome.Canceled}
	case errors.Is(err, context.DeadlineExceeded):
		return outcome.Outcome{Kind: outcome.LocalTimeout}
	}
	s, ok := status.FromError(err)
	if !ok {
		return outcome.Outcome{Kind: outcome.Failure}
	}
	var o outcome.Outcome
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		o.Kind = outcome.GatewayFailure
	case codes.Canceled:
		return outcome.Outcome{Kind: outcome.Canceled} // cancelled on the way, not by this endpoint's fault
	case codes.ResourceExhausted:
		o.Kind = outcome.Throttled
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return outcome.Outcome{Kind: outcome.Failure}
	default:
		return o
	}
	if c := s.Code(); c == codes.Unavailable || c == codes.ResourceExhausted {
		o.RetryAfter, o.HasRetryAfter = Pushback(trailer)
	}
	return o
}

// Pushback reads grpc-retry-pushback-ms from a trailer. A malformed or repeated value reads
// as -1: do not retry.
func Pushback(md metadata.MD) (time.Duration, bool) {
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

// Status returns err as a gRPC status error when it carries none: errors a client makes
// locally (a breaker refusal, a limit, an abort) travel to gRPC callers with the code of
// their kind, and keep matching their sentinel with errors.Is.
func Status(err error, code codes.Code) error {
	if err == nil {
		return nil
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return err
	}
	return &statusError{err: err, code: code}
}

type statusError struct {
	err  error
	code codes.Code
}

func (e *statusError) Error() string              { return e.err.Error() }
func (e *statusError) Unwrap() error              { return e.err }
func (e *statusError) GRPCStatus() *status.Status { return status.New(e.code, e.err.Error()) }
