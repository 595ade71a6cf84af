package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/proxyless/proxyless/discovery"
)

// The internal services, and the headers their answers and requests carry.
const (
	catalogService = "catalog" // v1 and v2, told apart by their tags
	ordersService  = "orders"
	versionHeader  = "X-Served-By"     // who answered: catalog-v1, catalog-v2, orders
	consumerHeader = "X-Consumer"      // set by the gateway: the consumer's name
	sawXFFHeader   = "X-Saw-Forwarded" // the X-Forwarded-For the service received
)

// backends are the internal services, each instance one loopback server.
type backends struct {
	catalogV1, catalogV2, orders *httptest.Server
}

func startBackends() *backends {
	return &backends{
		catalogV1: httptest.NewServer(service("catalog-v1")),
		catalogV2: httptest.NewServer(service("catalog-v2")),
		orders:    httptest.NewServer(service("orders")),
	}
}

func (b *backends) close() {
	b.catalogV1.Close()
	b.catalogV2.Close()
	b.orders.Close()
}

// resolver is the discovery the gateway's mesh client uses: a static resolver of loopback
// addresses, standing in for Consul.
func (b *backends) resolver() *discovery.Static {
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	return discovery.MustNewStatic(map[string][]discovery.Endpoint{
		catalogService: {
			{Addr: addr(b.catalogV1), Tags: []string{"v1"}},
			{Addr: addr(b.catalogV2), Tags: []string{"v2"}},
		},
		ordersService: {{Addr: addr(b.orders)}},
	})
}

// service answers every request with its name, the consumer the gateway named and the
// X-Forwarded-For it received; it reads (and drops) the body.
func service(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set(versionHeader, name)
		w.Header().Set(sawXFFHeader, r.Header.Get("X-Forwarded-For"))
		fmt.Fprintf(w, "%s served %s %s for %s (%d body bytes)\n", name, r.Method, r.URL.Path, r.Header.Get(consumerHeader), n)
	})
}
