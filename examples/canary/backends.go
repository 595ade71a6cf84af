package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/proxyless/proxyless/discovery"
)

// The services the client knows, and the header each version signs its answers with.
const (
	service       = "shop"    // v1 and v2, told apart by their tags
	shadowService = "shop-v3" // v3, which only sees mirrored copies
	versionHeader = "X-Version"
)

// backends are the three versions, each one loopback server.
type backends struct {
	v1, v2, v3 *httptest.Server
	failing    atomic.Bool // v2 answers 500 to everything while set
}

func startBackends() *backends {
	b := &backends{}
	b.v1 = httptest.NewServer(item("v1", nil))
	b.v2 = httptest.NewServer(item("v2", &b.failing))
	b.v3 = httptest.NewServer(item("v3", nil))
	return b
}

func (b *backends) close() {
	b.v1.Close()
	b.v2.Close()
	b.v3.Close()
}

// resolver is the discovery the client uses: shop has v1 and v2, tagged by version, and
// shop-v3 has v3.
func (b *backends) resolver() *discovery.Static {
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	return discovery.MustNewStatic(map[string][]discovery.Endpoint{
		service: {
			{Addr: addr(b.v1), Tags: []string{"v1"}},
			{Addr: addr(b.v2), Tags: []string{"v2"}},
		},
		shadowService: {{Addr: addr(b.v3), Tags: []string{"v3"}}},
	})
}

// item answers GET /item/{n} with the item's price, signed with the version. v3 prices every
// fifth item one unit higher: the bug its shadow traffic reveals. While failing is set, the
// version answers 500.
func item(version string, failing *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /item/{n}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(versionHeader, version)
		if failing != nil && failing.Load() {
			http.Error(w, version+" is failing", http.StatusInternalServerError)
			return
		}
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 {
			http.Error(w, "bad item number", http.StatusBadRequest)
			return
		}
		price := 100 + n%7
		if version == "v3" && n%5 == 0 {
			price++
		}
		fmt.Fprintf(w, "item %d: %d.00\n", n, price)
	})
	return mux
}
