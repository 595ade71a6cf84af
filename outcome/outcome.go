package outcome

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
)

// Kind is what one attempt's result says. The zero value is Success.
type Kind uint8

const (
	// Success: the endpoint answered, and the answer is not its failure (2xx to 4xx but 429,
	// gRPC OK and the codes that say the request was wrong).
	Success Kind = iota
	// Failure: the endpoint answered with a failure of its own (500, 501 and 505 and up; gRPC
	// INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED is not one).
	Failure
	// GatewayFailure: the endpoint could not be reached or could not answer: a refused or
	// reset connection, a 502, 503 or 504, gRPC UNAVAILABLE or a DEADLINE_EXCEEDED the server
	// sent.
	GatewayFailure
	// LocalTimeout: a timeout of the client's own ran out while the attempt waited on the
	// endpoint: the per-attempt timeout, or the overall one (WithTimeout).
	LocalTimeout
	// Throttled: the endpoint shed the request on purpose (429, gRPC RESOURCE_EXHAUSTED),
	// with the wait it asked for in Outcome.RetryAfter.
	Throttled
	// LocalRefusal: nothing was sent: every breaker open, no endpoint, an outbound limit.
	LocalRefusal
	// Canceled: the caller gave up (its cancellation, its deadline, http.Client.Timeout), or
	// the client cancelled the attempt itself because another one won.
	Canceled
	// TLSFailure: the TLS handshake failed verification, on either side (an unknown
	// authority, a wrong name, an expired certificate, a peer that refused ours). Sending
	// again cannot help: it is terminal, and the caller gets the x509 or TLS error.
	TLSFailure

	numKinds
)

var kindNames = [numKinds]string{
	"success", "failure", "gateway_failure", "local_timeout", "throttled", "local_refusal", "canceled", "tls_failure",
}

// String returns the kind's name in snake case ("gateway_failure"), as telemetry reports it.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Outcome is the classified result of one attempt.
type Outcome struct {
	Kind Kind
	// RetryAfter is the wait the server asked for (Retry-After on a 429 or 503, gRPC's
	// grpc-retry-pushback-ms), when HasRetryAfter. A negative value says "do not retry" (a
	// gRPC pushback that is negative or malformed).
	RetryAfter    time.Duration
	HasRetryAfter bool
}

// Cause says which context, if any, had ended when an attempt returned. The engine that
// sent the attempt knows it; the classifiers use it to tell a timeout of the client's own
// from the caller giving up.
type Cause uint8

const (
	// CauseNone: every context of the attempt is live.
	CauseNone Cause = iota
	// CauseAttemptTimeout: the per-attempt deadline passed.
	CauseAttemptTimeout
	// CauseOverallTimeout: the client's own overall deadline for the call passed.
	CauseOverallTimeout
	// CauseCaller: the caller's context is done (cancelled or past its deadline), or the
	// caller cancelled the request another way (http.Client.Timeout cancels through
	// Request.Cancel).
	CauseCaller
	// CauseAbandoned: the client cancelled the attempt because another attempt won.
	CauseAbandoned
)

// fromCause returns the outcome a done context decides, and false when none is done.
func fromCause(c Cause) (Outcome, bool) {
	switch c {
	case CauseAttemptTimeout, CauseOverallTimeout:
		return Outcome{Kind: LocalTimeout}, true
	case CauseCaller, CauseAbandoned:
		return Outcome{Kind: Canceled}, true
	}
	return Outcome{}, false
}

// FromHTTP classifies one HTTP attempt: the response or error the RoundTripper returned, and
// the cause, if any, that ended the attempt's context. now is the time the Retry-After of an
// HTTP date is measured from; the zero time means time.Now(), read only then.
//
// The rules, in order:
//
//   - an error matching breaker.ErrOpen, balancer.ErrNoEndpoints or balancer.ErrOverflow (a
//     destination's limit): LocalRefusal;
//   - an error that is a TLS verification failure (an x509 error, a
//     *tls.CertificateVerificationError, a TLS alert from the peer): TLSFailure, whatever the
//     contexts say;
//   - an error while a context is done: LocalTimeout for the client's own timeouts, Canceled
//     for the caller's (see Cause);
//   - an error matching context.Canceled: Canceled; context.DeadlineExceeded:
//     LocalTimeout;
//   - any other error (refused, reset, EOF before the answer): GatewayFailure;
//   - 502, 503, 504: GatewayFailure (503 with its Retry-After);
//   - 429: Throttled, with its Retry-After;
//   - other 5xx: Failure;
//   - anything else: Success.
func FromHTTP(resp *http.Response, err error, cause Cause, now time.Time) Outcome {
	if err != nil {
		return fromError(err, cause)
	}
	if resp == nil {
		return Outcome{Kind: GatewayFailure} // a RoundTripper that broke its contract
	}
	return FromStatus(resp.StatusCode, resp.Header.Get("Retry-After"), now)
}

// FromStatus classifies an HTTP status code with the value of its Retry-After header ("" for
// none); see FromHTTP.
func FromStatus(code int, retryAfter string, now time.Time) Outcome {
	var o Outcome
	switch {
	case code == http.StatusTooManyRequests:
		o.Kind = Throttled
	case code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		o.Kind = GatewayFailure
	case code >= 500:
		o.Kind = Failure
	default:
		return o
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		o.RetryAfter, o.HasRetryAfter = ParseRetryAfter(retryAfter, now)
	}
	return o
}

// FromError classifies an attempt that ended with err (no answer from the endpoint), given
// the cause that ended its context; see FromHTTP. It serves every transport.
func FromError(err error, cause Cause) Outcome { return fromError(err, cause) }

func fromError(err error, cause Cause) Outcome {
	if errors.Is(err, breaker.ErrOpen) || errors.Is(err, balancer.ErrNoEndpoints) || errors.Is(err, balancer.ErrOverflow) {
		return Outcome{Kind: LocalRefusal}
	}
	if IsTLSFailure(err) {
		return Outcome{Kind: TLSFailure}
	}
	if o, ok := fromCause(cause); ok {
		return o
	}
	switch {
	case errors.Is(err, context.Canceled):
		return Outcome{Kind: Canceled}
	case errors.Is(err, context.DeadlineExceeded):
		return Outcome{Kind: LocalTimeout}
	}
	return Outcome{Kind: GatewayFailure}
}

// IsTLSFailure reports whether err is a failed TLS verification: the peer's certificate was
// refused here (unknown authority, wrong host name, expired or not yet valid, or any
// *tls.CertificateVerificationError), or the peer refused ours (a TLS alert it sent).
func IsTLSFailure(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		ua    x509.UnknownAuthorityError
		hn    x509.HostnameError
		inv   x509.CertificateInvalidError
		alert tls.AlertError
		ra    *net.OpError
	)
	switch {
	case errors.As(err, &verr), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &inv):
		return true
	case errors.As(err, &alert):
		return true
	case errors.As(err, &ra) && ra.Op == "remote error":
		// crypto/tls reports an alert received from the peer as a *net.OpError whose Op is
		// "remote error" and whose Err is the alert.
		return true
	}
	return false
}

// ParseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date (a date in the
// past reads as 0), measured from now (the zero time: time.Now()). It reports false for
// anything else, and for values over 64 bytes.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" || len(v) > 64 {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if now.IsZero() {
		now = time.Now()
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}
