package middleware_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// noopTransport answers every request at once with an empty 200, so that a benchmark over it
// measures only the wrapper around it.
type noopTransport struct{}

func (noopTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req, Header: http.Header{}}, nil
}

func benchClient(b *testing.B, client *http.Client, url string) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

func proxylessTransport(b *testing.B, base http.RoundTripper, addrs ...string) *middleware.Transport {
	b.Helper()
	eps := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = discovery.Endpoint{Addr: a}
	}
	tr, err := middleware.NewTransport(base, middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": eps})))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	return tr
}

func failsafeTransport(base http.RoundTripper) http.RoundTripper {
	retry := failsafehttp.NewRetryPolicyBuilder().WithMaxRetries(2).WithBackoff(25*time.Millisecond, 250*time.Millisecond).Build()
	cb := circuitbreaker.NewBuilder[*http.Response]().
		HandleIf(func(r *http.Response, err error) bool { return err != nil || r.StatusCode >= 500 }).
		WithFailureRateThreshold(0.5, 20, 10*time.Second).Build()
	return failsafehttp.NewRoundTripper(base, retry, cb)
}

// BenchmarkWrapper compares what each wrapper adds over a no-op base transport. Run:
//
//	go test -run '^$' -bench BenchmarkWrapper -benchmem -count 10 ./middleware/
func BenchmarkWrapper(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		benchClient(b, &http.Client{Transport: noopTransport{}}, "http://127.0.0.1:1/")
	})
	b.Run("proxyless", func(b *testing.B) {
		tr := proxylessTransport(b, noopTransport{}, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
		benchClient(b, &http.Client{Transport: tr}, "http://svc/")
	})
	b.Run("failsafehttp", func(b *testing.B) {
		benchClient(b, &http.Client{Transport: failsafeTransport(noopTransport{})}, "http://127.0.0.1:1/")
	})
}

// BenchmarkLoopback compares full round trips to a real loopback server. Run:
//
//	go test -run '^$' -bench BenchmarkLoopback -benchmem -count 10 ./middleware/
func BenchmarkLoopback(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	b.Run("bare", func(b *testing.B) {
		base := &http.Transport{}
		defer base.CloseIdleConnections()
		benchClient(b, &http.Client{Transport: base}, srv.URL+"/")
	})
	b.Run("proxyless", func(b *testing.B) {
		base := &http.Transport{}
		defer base.CloseIdleConnections()
		benchClient(b, &http.Client{Transport: proxylessTransport(b, base, addr)}, "http://svc/")
	})
	b.Run("failsafehttp", func(b *testing.B) {
		base := &http.Transport{}
		defer base.CloseIdleConnections()
		benchClient(b, &http.Client{Transport: failsafeTransport(base)}, srv.URL+"/")
	})
}

// BenchmarkWrapperParallel is BenchmarkWrapper with every P sending at once, where counters
// and locks shared by the transport's goroutines show. Run:
//
//	go test -run '^$' -bench BenchmarkWrapperParallel -benchmem -count 10 ./middleware/
func BenchmarkWrapperParallel(b *testing.B) {
	parallel := func(b *testing.B, client *http.Client, url string) {
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			for pb.Next() {
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
	b.Run("bare", func(b *testing.B) {
		parallel(b, &http.Client{Transport: noopTransport{}}, "http://127.0.0.1:1/")
	})
	b.Run("proxyless", func(b *testing.B) {
		tr := proxylessTransport(b, noopTransport{}, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
		parallel(b, &http.Client{Transport: tr}, "http://svc/")
	})
	b.Run("failsafehttp", func(b *testing.B) {
		parallel(b, &http.Client{Transport: failsafeTransport(noopTransport{})}, "http://127.0.0.1:1/")
	})
}
