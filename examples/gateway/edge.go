package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/route/reload"
)

// The browser origin the gateway's CORS policy allows.
const allowedOrigin = "https://app.example.com"

// bodyLimit is the gateway's request body limit; the orders route sets a smaller one.
const (
	bodyLimit       = 64 << 10
	ordersBodyLimit = 1 << 10
)

// registryDoc is the consumer registry the program writes: alice and bob on gold, carol on
// free, which only allows the catalog route. The keys are SHA-256 hashes (auth.HashAPIKey);
// the file never holds a usable key.
const registryDoc = `# Written by examples/gateway; revoking a key is moving it to revokedKeys.
plans:
  gold: {perSecond: 1000, burst: 2000, perDay: 1000000}
  free: {perSecond: 2, burst: 5, perDay: 1000, routes: [catalog]}
consumers:
  - {name: alice, plan: gold, keys: ["%s"]}
  - {name: bob,   plan: gold, %s: ["%s"]}
  - {name: carol, plan: free, keys: ["%s"]}
`

// routeTable is the gateway's route table: /orders/ to the orders service with a smaller body
// limit, and /catalog/ to catalog with 10 % of the requests on v2.
var routeTable = route.Config{Routes: []route.RouteConfig{
	{
		Name:        "orders",
		Match:       route.Match{Path: &route.StringMatch{Prefix: "/orders/"}},
		Destination: &route.Destination{Service: ordersService},
		Edge: &route.Edge{
			MaxBodyBytes:    ordersBodyLimit,
			ResponseHeaders: route.HeaderRewrite{Set: map[string]string{"Cache-Control": "no-store"}},
		},
	},
	{
		Name:  "catalog",
		Match: route.Match{Path: &route.StringMatch{Prefix: "/catalog/"}},
		Canary: &route.Canary{
			Stable: route.Destination{Service: catalogService, Subset: route.Subset{Tags: []string{"v1"}}},
			Canary: route.Destination{Service: catalogService, Subset: route.Subset{Tags: []string{"v2"}}},
			Weight: 10,
		},
	},
}}

// edge is the gateway and what it is made of.
type edge struct {
	keys     map[string]string // consumer name to API key, generated at start
	path     string            // the registry file
	registry *auth.Consumers
	watcher  *reload.FileWatcher
	reloads  chan reload.Result
	tr       *middleware.Transport
	srv      *httptest.Server // the gateway, listening on loopback
}

// newEdge writes the registry file, follows it, and starts the gateway in front of b.
// Call close when done, also after an error.
func newEdge(b *backends, dir string) (*edge, error) {
	e := &edge{path: filepath.Join(dir, "consumers.yaml"), reloads: make(chan reload.Result, 16), keys: map[string]string{}}
	for _, name := range []string{"alice", "bob", "carol"} {
		e.keys[name] = rand.Text() // 26 base32 characters: 130 random bits
	}
	if err := e.writeRegistry(false); err != nil {
		return e, err
	}
	var err error
	if e.registry, err = auth.NewConsumers(auth.ConsumersConfig{}); err != nil {
		return e, err
	}
	if e.watcher, err = reload.File(e.registry, e.path, reload.WithHook(e.onReload)); err != nil {
		return e, err
	}
	h, err := e.gateway(b)
	if err != nil {
		return e, err
	}
	e.srv = httptest.NewServer(h)
	return e, nil
}

// gateway builds the mesh client and the edge handler in front of it.
func (e *edge) gateway(b *backends) (http.Handler, error) {
	router, err := route.NewRouter(routeTable)
	if err != nil {
		return nil, err
	}
	e.tr, err = middleware.NewTransport(nil, middleware.WithResolver(b.resolver()), middleware.WithRoutes(router))
	if err != nil {
		return nil, err
	}
	return middleware.NewGateway(e.tr, middleware.GatewayConfig{Service: catalogService},
		middleware.WithCORS(middleware.CORSConfig{
			AllowedOrigins: []string{allowedOrigin},
			AllowedMethods: []string{http.MethodPut, http.MethodDelete},
			AllowedHeaders: []string{middleware.DefaultAPIKeyHeader, "Content-Type"},
			ExposedHeaders: []string{"Ratelimit-Remaining", middleware.RateLimitPolicyHeader},
		}),
		middleware.WithMaxRequestBody(bodyLimit),
		middleware.WithEdgeRoutes(router),
		middleware.WithConsumers(e.registry, middleware.ConsumerPolicy{Router: router, ConsumerHeader: consumerHeader}),
	)
}

func (e *edge) close() {
	if e.srv != nil {
		e.srv.Close()
	}
	if e.tr != nil {
		e.tr.Close()
	}
	if e.watcher != nil {
		e.watcher.Close()
	}
}

func (e *edge) onReload(r reload.Result) {
	select {
	case e.reloads <- r:
	default: // nobody waits for this one
	}
}

// writeRegistry replaces the registry file, as an editor does: a new file renamed over the
// old one. With revokeBob, bob's key is in his revokedKeys instead of his keys.
func (e *edge) writeRegistry(revokeBob bool) error {
	bobField := "keys"
	if revokeBob {
		bobField = "revokedKeys"
	}
	doc := fmt.Sprintf(registryDoc, auth.HashAPIKey(e.keys["alice"]), bobField,
		auth.HashAPIKey(e.keys["bob"]), auth.HashAPIKey(e.keys["carol"]))
	tmp := e.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, e.path)
}

// revokeBob edits the registry file and waits for the watcher's next reload, returning how
// many reloads the registry took.
func (e *edge) revokeBob(ctx context.Context) (uint64, error) {
	before := e.registry.Version()
	if err := e.writeRegistry(true); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		select {
		case r := <-e.reloads:
			if r.Err != nil {
				return 0, fmt.Errorf("the edited registry was refused: %w", r.Err)
			}
			if v := e.registry.Version(); v > before {
				return v - before, nil
			}
		case <-ctx.Done():
			return 0, fmt.Errorf("the registry watcher did not load the edit: %w", ctx.Err())
		}
	}
}

// request is one request of the script, sent to the gateway.
type request struct {
	method, path, key, origin string
	header                    map[string]string
	body                      string
}

// send sends rq to the gateway and returns the answer with its body read (at most 4 KiB).
func (e *edge) send(ctx context.Context, rq request) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, rq.method, e.srv.URL+rq.path, strings.NewReader(rq.body))
	if err != nil {
		return nil, "", err
	}
	if rq.key != "" {
		req.Header.Set(middleware.DefaultAPIKeyHeader, rq.key)
	}
	if rq.origin != "" {
		req.Header.Set("Origin", rq.origin)
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var sb strings.Builder
	_, err = io.Copy(&sb, io.LimitReader(resp.Body, 4096))
	return resp, sb.String(), err
}
