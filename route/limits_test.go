package route_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyless/proxyless/route"
)

// hostsDoc is a table whose first route names n exact hosts (about 20 bytes each), followed
// by a catch-all route.
func hostsDoc(n int) []byte {
	var b strings.Builder
	b.WriteString("routes:\n  - name: many\n    destination: {service: many}\n    match:\n      hosts:\n")
	for i := range n {
		fmt.Fprintf(&b, "        - h%07d.example.com\n", i)
	}
	b.WriteString("  - name: rest\n    destination: {service: rest}\n")
	return []byte(b.String())
}

// compileBound is how long a 1 MiB document may take to parse and compile.
// compileTime is the shortest of runs parses and compiles of doc.
func compileTime(t *testing.T, doc []byte, runs int) (time.Duration, *route.Table) {
	t.Helper()
	best, tbl := time.Duration(1<<62), (*route.Table)(nil)
	for range runs {
		start := time.Now()
		cfg, err := route.ParseConfig(doc)
		if err != nil {
			t.Fatal(err)
		}
		if tbl, err = route.Compile(cfg); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	return best, tbl
}

// Compiling hosts is linear work: 20,000 hosts cost about eight times what 2,500 cost (a
// quadratic host index would cost 64 times). A ratio of the best of three runs each, not a
// time: the machine's speed, its load and the race detector cancel out. And a 1 MiB document
// of 40,000 hosts compiles and routes.
func TestCompileOfManyHostsIsLinear(t *testing.T) {
	small, _ := compileTime(t, hostsDoc(2_500), 3)
	large, _ := compileTime(t, hostsDoc(20_000), 3)
	t.Logf("20,000 hosts in %v, 2,500 in %v: %.1f times", large, small, float64(large)/float64(small))
	if large > 20*small {
		t.Errorf("20,000 hosts took %v, %.1f times 2,500 hosts (%v): want about 8", large, float64(large)/float64(small), small)
	}
	doc := hostsDoc(40_000)
	if len(doc) < 1<<20 {
		t.Fatalf("document of %d bytes, want 1 MiB", len(doc))
	}
	_, tbl := compileTime(t, doc, 1)
	for _, tc := range []struct{ host, want string }{
		{"h0000000.example.com", "many"}, {"H0031337.Example.COM:8080", "many"}, {"h0039999.example.com", "many"},
		{"h0040000.example.com", "rest"}, {"other", "rest"},
	} {
		rq := route.Request{Host: tc.host, Path: "/"}
		if d, ok := tbl.Lookup(&rq); !ok || d.Route.Name() != tc.want {
			t.Errorf("%s: route %v, want %s", tc.host, d.Route, tc.want)
		}
	}
}

func TestHostIndexKeepsTableOrder(t *testing.T) {
	tbl := mustCompile(t, `
routes:
  - {name: a, match: {hosts: [x], path: {prefix: /a}}, destination: {service: a}}
  - {name: wild, match: {hosts: ["*.y"], path: {prefix: /w}}, destination: {service: w}}
  - {name: any, match: {path: {prefix: /}}, destination: {service: any}}
  - {name: b, match: {hosts: [x, X, q.y]}, destination: {service: b}}
`)
	for _, tc := range []struct{ host, path, want string }{
		{"x", "/a", "a"}, {"x", "/b", "any"}, {"q.y", "/w", "wild"}, {"q.y", "/z", "any"}, {"z", "/", "any"},
	} {
		rq := route.Request{Host: tc.host, Path: tc.path}
		if d, _ := tbl.Lookup(&rq); d.Route == nil || d.Route.Name() != tc.want {
			t.Errorf("%s%s: route %v, want %s", tc.host, tc.path, d.Route, tc.want)
		}
	}
}

func TestUpdateCompilesOutsideTheLock(t *testing.T) {
	r, err := route.NewRouter(route.Config{})
	if err != nil {
		t.Fatal(err)
	}
	big, err := route.ParseConfig(hostsDoc(100_000))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := route.Compile(big); err != nil {
		t.Fatal(err)
	}
	compileTime := time.Since(start)
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		if err := r.Update(big); err != nil {
			t.Error(err)
		}
	})
	var slowest time.Duration
	for polling := true; polling; {
		select {
		case <-done:
			polling = false
		default:
			s := time.Now()
			r.Current()
			slowest = max(slowest, time.Since(s))
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	t.Logf("compile %v, slowest Current during the Update %v", compileTime, slowest)
	if slowest > compileTime/2 {
		t.Errorf("Current waited %v during an Update whose compile takes %v", slowest, compileTime)
	}
	if tbl, v := r.Current(); v != 2 || len(tbl.Routes()) != 2 {
		t.Errorf("version %d, %d routes after the update", v, len(tbl.Routes()))
	}
}

func TestReloadRefusesAnEmptyDocument(t *testing.T) {
	r, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{Name: "keep", Destination: &route.Destination{Service: "a"}}}})
	if err != nil {
		t.Fatal(err)
	}
	// Blank documents, and documents that decode to nothing ("null", "{}", a YAML document
	// marker, a file cut off after "routes:"): none of them says "no routes".
	for _, doc := range []string{"", " \n\t", "# nothing yet\n", "---\n", "--- \n...\n", "~", "null", "{}",
		"routes:", "routes: ~", `{"routes":null}`} {
		if err := r.Load([]byte(doc)); err == nil || !strings.Contains(err.Error(), "route: empty document") {
			t.Errorf("%q: err %v", doc, err)
		}
	}
	if tbl, v := r.Current(); v != 1 || tbl.Route("keep") == nil {
		t.Fatalf("version %d: the table was replaced", v)
	}
	if err := r.Load([]byte("routes: []")); err != nil {
		t.Fatal(err)
	}
	if tbl, v := r.Current(); v != 2 || len(tbl.Routes()) != 0 {
		t.Errorf("version %d, %d routes after an explicit empty list", v, len(tbl.Routes()))
	}
}

func TestSplitWeights(t *testing.T) {
	tbl := mustCompile(t, `
routes:
  - split: [{service: off, weight: 0}, {service: on, weight: 1}, {service: absent}]
`)
	for range 1000 {
		rq := route.Request{Host: "h", Path: "/"}
		if d, _ := tbl.Lookup(&rq); d.Destination.Service != "on" {
			t.Fatalf("an arm of weight 0 got a request: %s", d.Destination.Service)
		}
	}
	for _, tc := range []struct{ doc, want string }{
		{"routes: [{}, {split: [{service: a}, {service: b, weight: 0}]}]", "route: routes[1].split: every arm's weight is 0"},
		{"routes: [{}, {split: [{service: a, weight: 1.5}]}]", "route: routes[1].split[0].weight: must be a whole number"},
		{"default: {split: [{service: a, weight: 1}, {service: b, weight: 0.25}]}", "route: default.split[1].weight: must be a whole number"},
		{`{"routes": [{"split": [{"service": "a", "weight": 2}, {"service": "b", "weight": 1.5}]}]}`, "route: routes[0].split[1].weight: must be a whole number"},
	} {
		_, err := route.ParseConfig([]byte(tc.doc))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %s", tc.doc, err, tc.want)
		}
	}
}

func TestRegexProgramSizeIsBounded(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		// Seven bytes of source, a thousand instructions.
		{`routes: [{match: {path: {regex: "x{1000}"}}}]`, "route: routes[0].match.path.regex: compiled program of 1004 instructions is over limits.maxRegexProgramSize (100)"},
		{`routes: [{match: {headers: [{name: a, regex: "(a+){50}"}]}}]`, "route: routes[0].match.headers[0].regex: compiled program of"},
		{`routes: [{rewrite: {regex: "[a-z]{200}", substitution: x}}]`, "route: routes[0].rewrite.regex: compiled program of"},
		{"limits: {maxRegexProgramSize: -1}\nroutes: []", "route: limits.maxRegexProgramSize: must not be negative"},
	} {
		_, err := route.ParseConfig([]byte(tc.doc))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %s", tc.doc, err, tc.want)
		}
	}
	if _, err := route.ParseConfig([]byte("limits: {maxRegexProgramSize: 2000}\nroutes: [{match: {path: {regex: \"x{1000}\"}}}]")); err != nil {
		t.Errorf("a raised limit: %v", err)
	}
	if _, err := route.ParseConfig([]byte(`routes: [{match: {path: {regex: "/v[0-9]+/users/[a-f0-9]+"}}}]`)); err != nil {
		t.Errorf("an ordinary expression: %v", err)
	}
}

func TestHeaderValuesFollowHTTPRules(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"routes: [{requestHeaders: {set: {x-a: \"a\\x01b\"}}}]", "route: routes[0].requestHeaders.set.x-a: "},
		{"routes: [{responseHeaders: {add: {x-a: \"a\\x7fb\"}}}]", "route: routes[0].responseHeaders.add.x-a: "},
		{"routes: [{requestHeaders: {set: {x-a: \"a\\nb\"}}}]", "route: routes[0].requestHeaders.set.x-a: "},
		{"routes: [{requestHeaders: {set: {\"x a\": b}}}]", "route: routes[0].requestHeaders.set: "},
	} {
		_, err := route.ParseConfig([]byte(tc.doc))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %s", tc.doc, err, tc.want)
		}
	}
	if _, err := route.ParseConfig([]byte("routes: [{requestHeaders: {set: {x-a: \"tab\\tand utf-8 é\"}}}]")); err != nil {
		t.Errorf("a valid value: %v", err)
	}
}

// A document may loosen its own limits only up to fixed ceilings, and an expression over the
// program limit is refused before regexp builds its matcher (which costs far more than the
// program's size).
func TestDocumentLimitsHaveCeilings(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"limits: {maxRegexProgramSize: 100000000}\nroutes: []", "route: limits.maxRegexProgramSize: must be at most"},
		{"limits: {maxFaultDelay: 1000000h}\nroutes: []", "route: limits.maxFaultDelay: must be at most"},
		{"limits: {maxDelayedRequests: 1000000000}\nroutes: []", "route: limits.maxDelayedRequests: must be at most"},
	} {
		_, err := route.ParseConfig([]byte(tc.doc))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %s", tc.doc, err, tc.want)
		}
	}
	big := strings.Repeat(`\\pL{1000}`, 450) // 4 KiB of source, 450,000 instructions
	doc := "routes: [{match: {path: {regex: \"" + big + "\"}}}]"
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := route.ParseConfig([]byte(doc))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "maxRegexProgramSize") {
		t.Fatalf("err %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("refusing the expression allocated %d bytes", grew)
	}
}
