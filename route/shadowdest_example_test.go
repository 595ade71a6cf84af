package route_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/proxyless/proxyless/route"
)

// copyRecorder is the transport a Shadower sends copies through: it asks where each copy must
// go, as a mesh Transport does, and answers it.
type copyRecorder struct{ seen chan string }

func (c copyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if d := route.ShadowDestination(req.Context()); d != nil {
		c.seen <- d.Key()
	}
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok")), Request: req}, nil
}

func ExampleShadowDestination() {
	tbl, err := route.ParseConfig([]byte(`
routes:
  - name: catalog
    destination: {service: catalog}
    shadow: {destination: {service: catalog, subset: {tags: [v3]}}}
`))
	if err != nil {
		panic(err)
	}
	compiled, err := route.Compile(tbl)
	if err != nil {
		panic(err)
	}
	rec := copyRecorder{seen: make(chan string, 1)}
	s := route.NewShadower(rec, 0)
	defer s.Close()

	req := httptest.NewRequest("GET", "http://catalog/items", nil)
	rq := route.FromHTTP(req)
	d, _ := compiled.Lookup(&rq)
	pending := s.Mirror(req, d.Route.Shadow())
	resp := &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok"))}
	pending.Primary(resp, nil)
	resp.Body.Close()
	fmt.Println("the copy goes to", <-rec.seen)
	fmt.Println("outside a copy:", route.ShadowDestination(req.Context()))
	// Output:
	// the copy goes to catalog|tags=v3
	// outside a copy: <nil>
}
