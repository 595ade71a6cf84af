package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// Sticky sessions: requests of one user go to one endpoint of "carts", by the x-user-id
// header, or else by a key the application put in the context (say, a verified subject).
func ExampleWithBalancer_hashPolicy() {
	var eps []discovery.Endpoint
	for i := range 3 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "backend %d", i)
		}))
		defer srv.Close()
		eps = append(eps, discovery.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://")})
	}
	tr, err := middleware.NewTransport(nil,
		middleware.WithResolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{"carts": eps})),
		middleware.WithBalancer(balancer.Config{
			Policy: balancer.PolicyMaglev, // or balancer.PolicyRingHash
			HashPolicy: []balancer.HashPolicy{
				{Header: "x-user-id", Terminal: true},
				{ContextKey: true},
			},
		}),
	)
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}

	backendsSeen := func(ctx context.Context, user string) int {
		seen := map[string]bool{}
		for range 10 {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://carts/items", nil)
			if user != "" {
				req.Header.Set("X-User-Id", user)
			}
			resp, err := client.Do(req)
			if err != nil {
				panic(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			seen[string(body)] = true
		}
		return len(seen)
	}
	ctx := context.Background()
	fmt.Println("alice's requests reached", backendsSeen(ctx, "alice"), "backend")
	fmt.Println("bob's requests reached", backendsSeen(ctx, "bob"), "backend")
	fmt.Println("keyed by context:", backendsSeen(balancer.WithHashKey(ctx, "tenant-9"), ""), "backend")
	// Output:
	// alice's requests reached 1 backend
	// bob's requests reached 1 backend
	// keyed by context: 1 backend
}
