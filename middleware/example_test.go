package middleware_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

func ExampleNewTransport() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s, asked for host %s", "backend", r.Host)
	}))
	defer backend.Close()

	// Discovery: the service "hello" has one endpoint. Consul or DNS work the same way.
	resolver := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"hello": {{Addr: strings.TrimPrefix(backend.URL, "http://")}},
	})
	tr, err := middleware.NewTransport(nil,
		middleware.WithResolver(resolver),
		middleware.WithAttemptTimeout(time.Second),
	)
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}

	resp, err := client.Get("http://hello/greeting")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 hello from backend, asked for host hello
}
