package breaker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/breaker"
)

func TestClassifyHTTP(t *testing.T) {
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
		c    breaker.HTTPClassifier
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
		{name: "429 as failure", c: breaker.HTTPClassifier{TooManyRequests: breaker.Failure}, ctx: live, resp: resp(429),
			want: breaker.Failure},
		{name: "429 as success", c: breaker.HTTPClassifier{TooManyRequests: breaker.Success}, ctx: live, resp: resp(429),
			want: breaker.Success},
		{name: "500", ctx: live, resp: resp(500), want: breaker.Failure},
		{name: "502", ctx: live, resp: resp(502), want: breaker.Failure},
		{name: "503", ctx: live, resp: resp(503), want: breaker.Failure},
		{name: "504", ctx: live, resp: resp(504), want: breaker.Failure},
		{name: "503 after the caller gave up", ctx: canceled, resp: resp(503), want: breaker.Failure},
		{name: "connect error", ctx: live, err: refused, want: breaker.Failure},
		{name: "reset", ctx: live, err: reset, want: breaker.Failure},
		{name: "bad certificate", ctx: live, err: badCert, want: breaker.Failure},
		{name: "EOF before headers", ctx: live, err: urlErr(io.ErrUnexpectedEOF), want: breaker.Failure},
		{name: "caller cancelled", ctx: canceled, err: urlErr(context.Canceled), want: breaker.Ignore},
		{name: "caller deadline", ctx: expired, err: urlErr(context.DeadlineExceeded), want: breaker.Ignore},
		{name: "caller cancelled, connect error", ctx: canceled, err: refused, want: breaker.Ignore},
		{name: "attempt cancelled (hedge lost)", ctx: live, err: urlErr(context.Canceled), want: breaker.Ignore},
		{name: "attempt timeout", ctx: live, err: urlErr(context.DeadlineExceeded), want: breaker.Failure},
		{name: "refused locally", ctx: live, err: fmt.Errorf("attempt: %w", &breaker.OpenError{}), want: breaker.Ignore},
		{name: "no response, no error", ctx: live, want: breaker.Failure},
		{name: "nil context", resp: resp(503), want: breaker.Failure},
		{name: "override", ctx: live, resp: resp(404), want: breaker.Failure,
			c: breaker.HTTPClassifier{Override: func(r *http.Response, err error) breaker.Outcome {
				if r != nil && r.StatusCode == 404 {
					return breaker.Failure
				}
				return breaker.ClassifyHTTP(context.Background(), r, err)
			}}},
		{name: "override delegates", ctx: live, resp: resp(503), want: breaker.Failure,
			c: breaker.HTTPClassifier{Override: func(r *http.Response, err error) breaker.Outcome {
				return breaker.ClassifyHTTP(context.Background(), r, err)
			}}},
		{name: "override never sees caller cancellation", ctx: canceled, err: urlErr(context.Canceled), want: breaker.Ignore,
			c: breaker.HTTPClassifier{Override: func(*http.Response, error) breaker.Outcome { return breaker.Failure }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.c.Classify(tt.ctx, tt.resp, tt.err))
			if tt.c.Override == nil && tt.c.TooManyRequests == breaker.Ignore { // the default classifier
				require.Equal(t, tt.want, breaker.ClassifyHTTP(tt.ctx, tt.resp, tt.err))
			}
		})
	}
}

// TestHTTPLoopback drives a breaker with real HTTP calls to a loopback server and real errors.
func TestHTTPLoopback(t *testing.T) {
	var (
		status  atomic.Int32
		hits    atomic.Int32
		hang    = make(chan struct{})
		arrived = make(chan struct{}, 1)
	)
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/hang" {
			select {
			case arrived <- struct{}{}:
			default:
			}
			select {
			case <-r.Context().Done():
			case <-hang:
			}
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	defer close(hang)
	client := srv.Client()

	do := func(ctx context.Context, b *breaker.Breaker, path string) error {
		p, err := b.Allow()
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		p.Done(breaker.ClassifyHTTP(ctx, resp, err))
		if resp != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		return err
	}

	t.Run("5xx opens and stops traffic", func(t *testing.T) {
		b := newBreaker(t, breaker.Config{MinimumVolume: 10, OpenDelay: time.Hour})
		status.Store(http.StatusNotFound)
		for range 20 {
			require.NoError(t, do(context.Background(), b, "/"))
		}
		require.Equal(t, breaker.StateClosed, b.State(), "4xx are not failures")

		status.Store(http.StatusServiceUnavailable)
		hits.Store(0)
		for range 30 {
			err := do(context.Background(), b, "/")
			if err != nil {
				require.ErrorIs(t, err, breaker.ErrOpen)
			}
		}
		require.Equal(t, breaker.StateOpen, b.State())
		require.EqualValues(t, 5, hits.Load(), "the last 10 calls: 5 404s and 5 503s make 50%, then nothing reaches the server")
	})

	t.Run("caller cancellation does not open", func(t *testing.T) {
		b := newBreaker(t, breaker.Config{MinimumVolume: 1})
		for range 5 {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-arrived // the server has the request
				cancel()
			}()
			err := do(ctx, b, "/hang")
			require.ErrorIs(t, err, context.Canceled)
			require.Equal(t, breaker.StateClosed, b.State())
		}
	})

	t.Run("attempt timeout is a failure", func(t *testing.T) {
		b := newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: time.Hour})
		caller := context.Background()
		attempt, cancel := context.WithTimeout(caller, 20*time.Millisecond)
		defer cancel()
		p, err := b.Allow()
		require.NoError(t, err)
		req, err := http.NewRequestWithContext(attempt, http.MethodGet, srv.URL+"/hang", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		p.Done(breaker.ClassifyHTTP(caller, resp, err))
		require.Equal(t, breaker.StateOpen, b.State())
	})

	t.Run("connect error is a failure", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())

		b := newBreaker(t, breaker.Config{MinimumVolume: 1, OpenDelay: time.Hour})
		p, err := b.Allow()
		require.NoError(t, err)
		resp, err := http.DefaultClient.Get("http://" + addr + "/")
		require.Nil(t, resp)
		var opErr *net.OpError
		require.True(t, errors.As(err, &opErr), "%v", err)
		p.Done(breaker.ClassifyHTTP(context.Background(), resp, err))
		require.Equal(t, breaker.StateOpen, b.State())
	})
}
