package route_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proxyless/proxyless/route"
)

const sampleYAML = `
routes:
  - name: grpc-hello
    match:
      grpc: {service: helloworld.Greeter, method: SayHello}
    destination: {service: greeter}
  - name: api-v2
    match:
      hosts: [api.example.com, "*.api.example.com"]
      path: {prefix: /v2/}
      methods: [GET, POST]
      headers:
        - {name: x-tenant, regex: "acme|globex"}
        - {name: x-debug, absent: true}
      query:
        - {name: beta, exact: "1"}
    split:
      - {service: payments, subset: {meta: {version: v1}}, weight: 90}
      - {service: payments, subset: {meta: {version: v2}, tags: [canary]}, weight: 10}
    sticky: {key: true, header: x-user}
    timeout: 2s
    retry: {maxRetries: 3, statuses: [503]}
    hedge: {delay: 50ms}
    requestHeaders: {set: {x-route: api-v2}, remove: [x-internal]}
    rewrite: {prefix: /v1/}
    shadow: {destination: {service: payments-next}, percent: 5, timeout: 1s, compareBody: true}
    fault:
      delay: {percent: 1, mean: 10ms}
      abort: {percent: 0.5, httpStatus: 503, grpcCode: 14}
  - name: checkout
    match: {path: {exact: /checkout}}
    canary:
      stable: {service: checkout, subset: {meta: {version: v1}}}
      canary: {service: checkout, subset: {meta: {version: v2}}}
      weight: 5
      override: {header: x-canary, cookie: canary}
      analysis: {interval: 1m, step: 20, minRequests: 100}
default:
  destination: {service: fallback}
`

func TestParseConfigYAMLAndJSONAgree(t *testing.T) {
	cfg, err := route.ParseConfig([]byte(sampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 3 || cfg.Default == nil {
		t.Fatalf("got %d routes, default %v", len(cfg.Routes), cfg.Default)
	}
	if got := cfg.Routes[1].Timeout.Std(); got != 2*time.Second {
		t.Errorf("timeout = %v", got)
	}
	if got := cfg.Routes[1].Split[1].Subset.Meta["version"]; got != "v2" {
		t.Errorf("split[1] subset version = %q", got)
	}
	js, err := jsonMarshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg2, err := route.ParseConfig(js)
	if err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	if !reflect.DeepEqual(cfg, cfg2) {
		t.Errorf("JSON round trip differs:\n%+v\n%+v", cfg, cfg2)
	}
	if _, err := route.Compile(cfg); err != nil {
		t.Fatal(err)
	}
}

func TestParseConfigEmpty(t *testing.T) {
	// An empty document is refused (a reload of a truncated file must not wipe the table);
	// an explicitly empty one is an empty table.
	// So is one that decodes to nothing: "{}" or "null" says nothing, "routes: []" says
	// "no routes".
	for _, doc := range []string{"", "  \n", "\t\r\n", "# only a comment\n", "{}", "null", "routes:"} {
		if _, err := route.ParseConfig([]byte(doc)); err == nil || !strings.Contains(err.Error(), "route: empty document") {
			t.Errorf("%q: err %v, want the empty document refused", doc, err)
		}
	}
	for _, doc := range []string{"routes: []", `{"routes": []}`} {
		cfg, err := route.ParseConfig([]byte(doc))
		if err != nil {
			t.Errorf("%q: %v", doc, err)
		}
		tbl, err := route.Compile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rq := route.Request{Host: "x", Path: "/"}
		if _, ok := tbl.Lookup(&rq); ok {
			t.Errorf("%q: empty table matched", doc)
		}
	}
}

func TestParseConfigInvalid(t *testing.T) {
	dest := "destination: {service: s}"
	tests := []struct {
		name, doc, want string
	}{
		{"unknown field", "routes: [{nmae: x}]", `routes[0].nmae: unknown field "nmae"`},
		{"unknown json field", `{"routes":[{"nmae":"x"}]}`, "unknown field"},
		{"json wrong type", `{"routes":[{"timeout":5}]}`, "duration"},
		{"json trailing data", `{"routes":[]} {}`, "data after"},
		{"two yaml docs", "routes: []\n---\nroutes: []\n", "more than one document"},
		{"bad duration", "routes: [{timeout: 5 seconds, " + dest + "}]", `routes[0].timeout: want a duration string such as "250ms", got "5 seconds"`},
		{"bad path regex", "routes: [{}, {}, {match: {path: {regex: '('}}, " + dest + "}]", "routes[2].match.path.regex:"},
		{"path two kinds", "routes: [{match: {path: {exact: /a, prefix: /b}}}]", "routes[0].match.path: set exactly one"},
		{"path no slash", "routes: [{match: {path: {prefix: a}}}]", "routes[0].match.path: must start with '/'"},
		{"bad host", "routes: [{match: {hosts: [ok.example, 'bad host']}}]", "routes[0].match.hosts[1]"},
		{"bad wildcard", "routes: [{match: {hosts: ['*.']}}]", "routes[0].match.hosts[0]"},
		{"lower method", "routes: [{match: {methods: [get]}}]", "routes[0].match.methods[0]"},
		{"header no name", "routes: [{match: {headers: [{exact: a}]}}]", "routes[0].match.headers[0].name: is required"},
		{"header bad name", "routes: [{match: {headers: [{name: 'a b', present: true}]}}]", "routes[0].match.headers[0].name"},
		{"header two kinds", "routes: [{match: {headers: [{name: a, exact: b, present: true}]}}]", "routes[0].match.headers[0]: set exactly one"},
		{"header no kind", "routes: [{match: {headers: [{name: a}]}}]", "routes[0].match.headers[0]: set exactly one"},
		{"header bad regex", "routes: [{match: {headers: [{name: a, regex: '[z-a]'}]}}]", "routes[0].match.headers[0].regex"},
		{"query bad regex", "routes: [{match: {query: [{name: q, regex: '*'}]}}]", "routes[0].match.query[0].regex"},
		{"grpc no service", "routes: [{match: {grpc: {method: M}}}]", "routes[0].match.grpc.service: is required"},
		{"grpc bad method", "routes: [{match: {grpc: {service: a.B, method: 'x/y'}}}]", "routes[0].match.grpc.method"},
		{"no service", "routes: [{destination: {subset: {tags: [v2]}}}]", "routes[0].destination.service: is required"},
		{"bad service", "routes: [{destination: {service: 'a/b'}}]", "routes[0].destination.service"},
		{"bad service port", "routes: [{destination: {service: 'a:99999x'}}]", "routes[0].destination.service"},
		{"empty tag", "routes: [{destination: {service: a, subset: {tags: ['']}}}]", "routes[0].destination.subset.tags[0]"},
		{"dest and split", "routes: [{destination: {service: a}, split: [{service: b, weight: 1}]}]", "routes[0]: set at most one"},
		{"split no service", "routes: [{split: [{service: a}, {weight: 3}]}]", "routes[0].split[1].service: is required"},
		{"canary weight", "routes: [{canary: {stable: {service: a}, canary: {service: b}, weight: 101}}]", "routes[0].canary.weight"},
		{"canary no stable", "routes: [{canary: {canary: {service: b}}}]", "routes[0].canary.stable.service"},
		{"override empty", "routes: [{canary: {stable: {service: a}, canary: {service: b}, override: {}}}]", "routes[0].canary.override"},
		{"override same values", "routes: [{canary: {stable: {service: a}, canary: {service: b}, override: {header: x, canaryValue: a, stableValue: a}}}]", "routes[0].canary.override.stableValue"},
		{"analysis step", "routes: [{canary: {stable: {service: a}, canary: {service: b}, analysis: {step: -1}}}]", "routes[0].canary.analysis.step"},
		{"analysis ratio", "routes: [{canary: {stable: {service: a}, canary: {service: b}, analysis: {maxLatencyRatio: 0.5}}}]", "routes[0].canary.analysis.maxLatencyRatio"},
		{"analysis max below start", "routes: [{canary: {stable: {service: a}, canary: {service: b}, weight: 50, analysis: {maxWeight: 20}}}]", "routes[0].canary.analysis.maxWeight"},
		{"sticky without split", "routes: [{" + dest + ", sticky: {key: true}}]", "routes[0].sticky: needs a split"},
		{"sticky empty", "routes: [{split: [{service: a, weight: 1}], sticky: {}}]", "routes[0].sticky: set key"},
		{"negative timeout", "routes: [{timeout: -1s}]", "routes[0].timeout"},
		{"retry negative", "routes: [{retry: {maxRetries: -1}}]", "routes[0].retry.maxRetries"},
		{"retry status", "routes: [{retry: {statuses: [503, 42]}}]", "routes[0].retry.statuses[1]"},
		{"hedge no delay", "routes: [{hedge: {maxHedges: 2}}]", "routes[0].hedge.delay"},
		{"header rewrite name", "routes: [{requestHeaders: {remove: ['bad name']}}]", "routes[0].requestHeaders.remove[0]"},
		{"header rewrite value", "routes: [{responseHeaders: {set: {x: \"a\\r\\nb\"}}}]", "routes[0].responseHeaders.set.x"},
		{"rewrite prefix without match", "routes: [{rewrite: {prefix: /v1/}}]", "routes[0].rewrite.prefix: needs match.path.prefix"},
		{"rewrite bad regex", "routes: [{rewrite: {regex: '(', substitution: x}}]", "routes[0].rewrite.regex"},
		{"rewrite empty", "routes: [{rewrite: {}}]", "routes[0].rewrite: set prefix or regex"},
		{"shadow no destination", "routes: [{shadow: {percent: 10}}]", "routes[0].shadow.destination.service: is required"},
		{"shadow subset only", "routes: [{shadow: {destination: {subset: {tags: [v3]}}}}]", "routes[0].shadow.destination.service: is required"},
		{"shadow percent", "routes: [{shadow: {destination: {service: s}, percent: -3}}]", "routes[0].shadow.percent"},
		{"shadow conc", "routes: [{shadow: {destination: {service: s}, maxConcurrency: -1}}]", "routes[0].shadow.maxConcurrency"},
		{"fault empty", "routes: [{fault: {}}]", "routes[0].fault: set delay"},
		{"fault delay both", "routes: [{fault: {delay: {fixed: 1s, mean: 1s}}}]", "routes[0].fault.delay: set exactly one"},
		{"fault delay min max", "routes: [{fault: {delay: {min: 2s, max: 1s}}}]", "routes[0].fault.delay.min"},
		{"fault abort status", "routes: [{fault: {abort: {httpStatus: 42}}}]", "routes[0].fault.abort.httpStatus"},
		{"fault abort code", "routes: [{fault: {abort: {grpcCode: 17}}}]", "routes[0].fault.abort.grpcCode"},
		{"fault percent NaN", "routes: [{fault: {abort: {percent: .nan}}}]", "routes[0].fault.abort.percent"},
		{"duplicate names", "routes: [{name: a}, {name: a}]", "routes[1].name"},
		{"default with match", "default: {match: {methods: [GET]}}", "default.match"},
		{"default bad dest", "default: {destination: {service: ''}}", "default.destination.service"},
	}
	if len(tests) < 25 {
		t.Fatalf("only %d invalid configs", len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := route.ParseConfig([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.doc)
			}
			if !errors.Is(err, route.ErrInvalidConfig) {
				t.Errorf("error %v is not ErrInvalidConfig", err)
			}
			if !strings.HasPrefix(err.Error(), "route: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(sampleYAML))
	f.Add([]byte(`{"routes":[{"match":{"path":{"regex":"/a+"}},"destination":{"service":"x"}}]}`))
	f.Add([]byte("routes: [{match: {headers: [{name: a, prefix: b}]}, split: [{service: a, weight: 3}, {service: b}]}]"))
	f.Add([]byte("routes: [{fault: {delay: {min: 1ms, max: 2ms}}}]"))
	f.Add([]byte("default: {canary: {stable: {service: a}, canary: {service: b}, weight: 5}}"))
	f.Add([]byte("routes: &a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := route.ParseConfig(data)
		if err != nil {
			if !errors.Is(err, route.ErrInvalidConfig) {
				t.Fatalf("error %v is not ErrInvalidConfig", err)
			}
			return
		}
		tbl, err := route.Compile(cfg)
		if err != nil {
			t.Fatalf("ParseConfig accepted what Compile refuses: %v", err)
		}
		rq := route.Request{Host: "a.example", Method: "GET", Path: "/a", RawQuery: "q=1&b", Header: map[string][]string{"X": {"y"}}}
		if d, ok := tbl.Lookup(&rq); ok && d.Route == nil {
			t.Fatal("matched without a route")
		}
	})
}
