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

// loopbackServer is a loopback HTTP server that answers status, except on /hang, where it
// signals arrived and holds the request until the caller gives up or the test ends.
type loopbackServer struct {
	*httptest.Server
	status  atomic.Int32 // the answer; 200 at first
	hits    atomic.Int32 // requests received
	arrived chan struct{}
	hang    chan struct{}
}

// newLoopbackServer starts a loopbackServer, closed when the test ends.
func newLoopbackServer(t *testing.T) *loopbackServer {
	t.Helper()
	s := &loopbackServer{arrived: make(chan struct{}, 1), hang: make(chan struct{})}
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if r.URL.Path == "/hang" {
			select {
			case s.arrived <- struct{}{}:
			default:
			}
			select {
			case <-r.Context().Done():
			case <-s.hang:
			}
			return
		}
		w.WriteHeader(int(s.status.Load()))
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.hang) })
	return s
}

// do makes one call to path through b, reporting the classified result to b, and returns the
// call's error (breaker.ErrOpen when b refuses).
func (s *loopbackServer) do(ctx context.Context, t *testing.T, b *breaker.Breaker, path string) error {
	p, err := b.Allow()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	require.NoError(t, err)
	resp, err := s.Client().Do(req)
	p.Done(classify(ctx, resp, err))
	if resp != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return err
}

// TestHTTPLoopback drives a breaker with real HTTP calls to a loopback server and real errors.
func TestHTTPLoopback(t *testing.T) {
	srv := newLoopbackServer(t)

	t.Run("5xx opens and stops traffic", func(t *testing.T) {
		b := newBreaker(t, breaker.Config{MinimumVolume: 10, OpenDelay: time.Hour})
		srv.status.Store(http.StatusNotFound)
		for range 20 {
			require.NoError(t, srv.do(context.Background(), t, b, "/"))
		}
		require.Equal(t, breaker.StateClosed, b.State(), "4xx are not failures")

		srv.status.Store(http.StatusServiceUnavailable)
		srv.hits.Store(0)
		for range 30 {
			err := srv.do(context.Background(), t, b, "/")
			if err != nil {
				require.ErrorIs(t, err, breaker.ErrOpen)
			}
		}
		require.Equal(t, breaker.StateOpen, b.State())
		require.EqualValues(t, 5, srv.hits.Load(), "the last 10 calls: 5 404s and 5 503s make 50%, then nothing reaches the server")
	})

	t.Run("caller cancellation does not open", func(t *testing.T) {
		b := newBreaker(t, breaker.Config{MinimumVolume: 1})
		for range 5 {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-srv.arrived // the server has the request
				cancel()
			}()
			err := srv.do(ctx, t, b, "/hang")
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
		resp, err := srv.Client().Do(req)
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
