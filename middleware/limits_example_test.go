package middleware_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// A destination allowed one connection and no waiting: the first request opens a connection
// to one endpoint (kept idle afterwards); the second, sent round robin to the other
// endpoint, would need a second connection and is refused.
func ExampleWithLimits() {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	a, b := httptest.NewServer(ok), httptest.NewServer(ok)
	defer a.Close()
	defer b.Close()
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"payments": {
		{Addr: strings.TrimPrefix(a.URL, "http://")}, {Addr: strings.TrimPrefix(b.URL, "http://")},
	}})
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(static),
		middleware.WithBalancer(balancer.Config{Policy: balancer.PolicyRoundRobin}),
		middleware.WithLimits(balancer.Limits{MaxConnections: 1, MaxPendingRequests: -1}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}
	for range 2 {
		resp, err := client.Get("http://payments/")
		if err != nil {
			fmt.Println("refused:", errors.Is(err, balancer.ErrMaxConnections))
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		fmt.Println(resp.Status)
	}
	fmt.Println("overflows:", tr.Stats().Overflows)
	// Output:
	// 200 OK
	// refused: true
	// overflows: 1
}
