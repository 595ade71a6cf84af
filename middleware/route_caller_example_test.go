package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// A split whose sticky key is the account the application names with WithRouteKey: every
// request of one account goes to the same arm, whoever sends it and whatever it writes.
func ExampleWithRouteKey() {
	version := func(v string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, v) }))
	}
	v1, v2 := version("v1"), version("v2")
	defer v1.Close()
	defer v2.Close()
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"shop": {
		{Addr: strings.TrimPrefix(v1.URL, "http://"), Meta: map[string]string{"version": "v1"}},
		{Addr: strings.TrimPrefix(v2.URL, "http://"), Meta: map[string]string{"version": "v2"}},
	}})
	cfg, err := route.ParseConfig([]byte(`
routes:
  - match: {hosts: [shop]}
    split:
      - {service: shop, subset: {meta: {version: v1}}, weight: 50}
      - {service: shop, subset: {meta: {version: v2}}, weight: 50}
    sticky: {key: true}
`))
	if err != nil {
		panic(err)
	}
	router, err := route.NewRouter(cfg)
	if err != nil {
		panic(err)
	}
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(static), middleware.WithRoutes(router))
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}
	seen := map[string]bool{}
	for range 20 {
		ctx := middleware.WithRouteKey(context.Background(), "account-42")
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://shop/cart", nil)
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(b)] = true
	}
	fmt.Println("arms seen by account-42:", len(seen))
	// Output: arms seen by account-42: 1
}
