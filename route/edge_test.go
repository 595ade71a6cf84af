package route_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/proxyless/proxyless/route"
)

func TestEdgeConfig(t *testing.T) {
	cfg, err := route.ParseConfig([]byte(`
routes:
  - name: uploads
    match: {path: {prefix: /upload}}
    edge:
      maxBodyBytes: 1048576
      requestHeaders: {set: {X-Edge: "1"}, remove: [X-Internal]}
      responseHeaders: {add: {Cache-Control: no-store}, remove: [Server]}
  - name: plain
    match: {path: {prefix: /}}
`))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := route.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	up, plain := tbl.Route("uploads").Edge(), tbl.Route("plain").Edge()
	if plain != nil {
		t.Errorf("a route without edge settings has an edge policy")
	}
	if up == nil || up.MaxBodyBytes() != 1<<20 || !up.RewritesRequest() || !up.RewritesResponse() {
		t.Fatalf("uploads edge policy = %+v", up)
	}
	h := http.Header{"X-Internal": {"secret"}, "X-Edge": {"spoofed", "twice"}}
	up.RewriteRequest(h)
	if len(h) != 1 || h.Get("X-Edge") != "1" || len(h["X-Edge"]) != 1 {
		t.Errorf("request headers after rewrite: %v", h)
	}
	h = http.Header{"Server": {"upstream/1.0"}}
	up.RewriteResponse(h)
	if len(h) != 1 || h.Get("Cache-Control") != "no-store" {
		t.Errorf("response headers after rewrite: %v", h)
	}
}

func TestEdgeConfigErrors(t *testing.T) {
	for _, tc := range []struct{ doc, path string }{
		{`{"routes":[{"edge":{"maxBodyBytes":-1}}]}`, "routes[0].edge.maxBodyBytes"},
		{`{"routes":[{"edge":{"requestHeaders":{"set":{"Content-Length":"1"}}}}]}`, "routes[0].edge.requestHeaders.set.Content-Length"},
		{`{"routes":[{"edge":{"responseHeaders":{"remove":["ok","transfer-encoding"]}}}]}`, "routes[0].edge.responseHeaders.remove[1]"},
		{`{"routes":[{"edge":{"requestHeaders":{"add":{"X-A":"bad\u0000value"}}}}]}`, "routes[0].edge.requestHeaders.add.X-A"},
		{`{"routes":[{"edge":{"responseHeaders":{"set":{"bad name":"v"}}}}]}`, "routes[0].edge.responseHeaders.set"},
		{`{"routes":[{"edge":{"maxBody":1}}]}`, ""}, // unknown field
	} {
		_, err := route.ParseConfig([]byte(tc.doc))
		if !errors.Is(err, route.ErrInvalidConfig) {
			t.Errorf("%s: error %v, want ErrInvalidConfig", tc.doc, err)
			continue
		}
		var ce *route.ConfigError
		if errors.As(err, &ce) && tc.path != "" && ce.Path != tc.path {
			t.Errorf("%s: path %q, want %q (%v)", tc.doc, ce.Path, tc.path, err)
		}
		if tc.path == "" && !strings.Contains(err.Error(), "maxBody") {
			t.Errorf("%s: error %v, want the unknown field named", tc.doc, err)
		}
	}
}
