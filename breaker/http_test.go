package breaker_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/outcome"
)

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
		p.Done(classify(ctx, resp, err))
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
		p.Done(classify(caller, resp, err))
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
		p.Done(classify(context.Background(), resp, err))
		require.Equal(t, breaker.StateOpen, b.State())
	})
}

// classify is what a breaker used on its own records for an HTTP call: the outcome
// vocabulary's classification (package outcome), the caller's context telling a cancellation
// from a failure.
func classify(ctx context.Context, resp *http.Response, err error) breaker.Outcome {
	cause := outcome.CauseNone
	if ctx.Err() != nil {
		cause = outcome.CauseCaller
	}
	return outcome.FromHTTP(resp, err, cause, time.Time{}).Kind.Breaker()
}
