package outcome_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/outcome"
	"github.com/stretchr/testify/require"
)

// forBreaker is what a breaker used on its own records for an HTTP call: the outcome
// vocabulary's classification, read through its table, with the caller's context telling a
// cancellation from a failure.
func forBreaker(ctx context.Context, resp *http.Response, err error) breaker.Outcome {
	cause := outcome.CauseNone
	if ctx != nil && ctx.Err() != nil {
		cause = outcome.CauseCaller
	}
	return outcome.FromHTTP(resp, err, cause, time.Time{}).Kind.Breaker()
}

// The rules the breaker package's own HTTP classifier had, kept by the vocabulary.
func TestFromHTTPForBreaker(t *testing.T) {
	live := context.Background()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel2()

	resp := func(code int) *http.Response { return &http.Response{StatusCode: code} }
	urlErr := func(err error) error { return &url.Error{Op: "Get", URL: "http://payments/v1", Err: err} }
	refused := urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{}})
	reset := urlErr(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
	badCert := urlErr(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}})

	tests := []struct {
		name string
		ctx  context.Context
		resp *http.Response
		err  error
		want breaker.Outcome
	}{
		{name: "200", ctx: live, resp: resp(200), want: breaker.Success},
		{name: "301", ctx: live, resp: resp(301), want: breaker.Success},
		{name: "400", ctx: live, resp: resp(400), want: breaker.Success},
		{name: "404", ctx: live, resp: resp(404), want: breaker.Success},
		{name: "429 default", ctx: live, resp: resp(429), want: breaker.Ignore},
		{name: "500", ctx: live, resp: resp(500), want: breaker.Failure},
		{name: "502", ctx: live, resp: resp(502), want: breaker.Failure},
		{name: "503", ctx: live, resp: resp(503), want: breaker.Failure},
		{name: "504", ctx: live, resp: resp(504), want: breaker.Failure},
		{name: "503 after the caller gave up", ctx: canceled, resp: resp(503), want: breaker.Failure},
		{name: "connect error", ctx: live, err: refused, want: breaker.Failure},
		{name: "reset", ctx: live, err: reset, want: breaker.Failure},
		// A TLS failure is terminal and never opens a breaker, so that callers keep getting the
		// certificate error (it was a failure before the outcome vocabulary).
		{name: "bad certificate", ctx: live, err: badCert, want: breaker.Ignore},
		{name: "EOF before headers", ctx: live, err: urlErr(io.ErrUnexpectedEOF), want: breaker.Failure},
		{name: "caller cancelled", ctx: canceled, err: urlErr(context.Canceled), want: breaker.Ignore},
		{name: "caller deadline", ctx: expired, err: urlErr(context.DeadlineExceeded), want: breaker.Ignore},
		{name: "caller cancelled, connect error", ctx: canceled, err: refused, want: breaker.Ignore},
		{name: "attempt cancelled (hedge lost)", ctx: live, err: urlErr(context.Canceled), want: breaker.Ignore},
		{name: "attempt timeout", ctx: live, err: urlErr(context.DeadlineExceeded), want: breaker.Failure},
		{name: "refused locally", ctx: live, err: fmt.Errorf("attempt: %w", &breaker.OpenError{}), want: breaker.Ignore},
		{name: "no response, no error", ctx: live, want: breaker.Failure},
		{name: "no context", resp: resp(503), want: breaker.Failure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, forBreaker(tt.ctx, tt.resp, tt.err))
		})
	}
}
