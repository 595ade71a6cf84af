package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// A Config carries routes and each destination's policies; route/reload's File or Consul
// keep it in step with a file or a Consul key, and Load does the same by hand.
func ExampleWithConfig() {
	var attempts atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer backend.Close()
	resolver := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"payments": {{Addr: strings.TrimPrefix(backend.URL, "http://")}},
	})

	cfg, err := middleware.NewConfig(middleware.Document{})
	if err != nil {
		panic(err)
	}
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(resolver), middleware.WithConfig(cfg), middleware.WithoutBreaker())
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}
	get := func() {
		attempts.Store(0)
		resp, err := client.Get("http://payments/charge")
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, "after", attempts.Load(), "attempts")
	}

	err = cfg.Load([]byte(`
routes: []
destinations:
  payments:
    retry: {maxRetries: 1, backoffBase: 1ms}
    timeout: 2s
`))
	fmt.Println("load:", err)
	get()

	err = cfg.Load([]byte(`
destinations:
  payments:
    retry: {maxRetries: 3, backoffBase: 1ms}
    timeout: 2000000000
`))
	fmt.Println("load:", err)
	get() // the last good policies stay

	// Output:
	// load: <nil>
	// 503 after 2 attempts
	// load: route: destinations.payments.timeout: want a duration string such as "250ms" or "2s", got the bare number 2000000000 (write the unit) (line 5, column 14)
	// 503 after 2 attempts
}
