package route_test

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyless/proxyless/route"
)

func TestMatchString(t *testing.T) {
	for _, tc := range []struct {
		match string // the YAML flow mapping of the route's match
		want  string
	}{
		{`{}`, `*`},
		{`{hosts: [API.example.com, "*.example.org"]}`, `host=api.example.com,*.example.org`},
		{`{path: {exact: /health}}`, `path=/health`},
		{`{path: {prefix: /v1/}, methods: [GET, HEAD]}`, `path^=/v1/ method=GET,HEAD`},
		{`{path: {regex: "/v[0-9]+/.*"}}`, `path~/v[0-9]+/.*`},
		{`{path: {exact: "/a b"}}`, `path="/a b"`},
		{`{headers: [{name: x-env, exact: canary}, {name: x-debug, absent: true}, {name: x-trace, present: true}]}`,
			`header:X-Env=canary !header:X-Debug header:X-Trace`},
		{`{headers: [{name: user-agent, prefix: "curl/"}, {name: x-id, regex: "[a-f0-9]+"}]}`,
			`header:User-Agent^=curl/ header:X-Id~[a-f0-9]+`},
		{`{headers: [{name: x-quote, exact: "say \"hi\""}]}`, `header:X-Quote="say \"hi\""`},
		{`{query: [{name: debug, exact: "1"}]}`, `query:debug=1`},
		{`{grpc: {service: helloworld.Greeter}}`, `grpc=/helloworld.Greeter/*`},
		{`{grpc: {service: helloworld.Greeter, method: SayHello}}`, `grpc=/helloworld.Greeter/SayHello`},
		{`{hosts: [svc], path: {prefix: /}, methods: [POST], grpc: {service: a.B}}`, `host=svc path^=/ method=POST grpc=/a.B/*`},
	} {
		tbl := mustCompile(t, fmt.Sprintf("routes:\n  - name: r\n    match: %s\n", tc.match))
		if got := tbl.Route("r").MatchString(); got != tc.want {
			t.Errorf("match %s: got %q, want %q", tc.match, got, tc.want)
		}
	}
}

func TestRouteDestinationSplitDefault(t *testing.T) {
	tbl := mustCompile(t, `
routes:
  - name: one
    match: {hosts: [a]}
    destination: {service: a, subset: {tags: [v2]}}
  - name: split
    match: {hosts: [b]}
    split:
      - {service: b, weight: 3}
      - {service: b, subset: {meta: {version: v2}}, weight: 1}
  - name: overrides-only
    match: {hosts: [c]}
    timeout: 2s
default:
  name: rest
  destination: {service: fallback}
`)
	one := tbl.Route("one")
	if d := one.Destination(); d == nil || d.Key() != "a|tags=v2" {
		t.Errorf("one: destination %+v", d)
	}
	if one.Split() != nil {
		t.Errorf("one: split %+v", one.Split())
	}
	if _, ok := one.Canary(); ok {
		t.Error("one: has a canary")
	}

	split := tbl.Route("split")
	if split.Destination() != nil {
		t.Errorf("split: destination %+v", split.Destination())
	}
	arms := split.Split()
	if len(arms) != 2 || arms[0].Key() != "b" || arms[0].Weight != 3 || arms[1].Key() != "b|meta=version=v2" || arms[1].Weight != 1 {
		t.Errorf("split: arms %+v", arms)
	}
	arms[0].Weight = 99 // a copy: the table is unchanged
	if got := split.Split()[0].Weight; got != 3 {
		t.Errorf("split: weight %d after changing the copy", got)
	}

	if r := tbl.Route("overrides-only"); r.Destination() != nil || r.Split() != nil {
		t.Errorf("overrides-only: destination %+v, split %+v", r.Destination(), r.Split())
	}

	def := tbl.Default()
	if def == nil || def.Name() != "rest" || def.Index() != -1 || def.MatchString() != "*" || def.Destination().Service != "fallback" {
		t.Errorf("default: %+v", def)
	}
	if mustCompile(t, "routes: []\n").Default() != nil {
		t.Error("a table without a default has one")
	}
}

const inspectCanaryDoc = `
routes:
  - name: checkout
    match: {hosts: [shop]}
    canary:
      stable: {service: shop, subset: {meta: {version: v1}}}
      canary: {service: shop, subset: {meta: {version: v2}}}
      weight: %v
      %s
`

func TestRouteCanaryFollowsAnalysisAndReloads(t *testing.T) {
	fixed := mustCompile(t, fmt.Sprintf(inspectCanaryDoc, 12.5, ""))
	cs, ok := fixed.Route("checkout").Canary()
	want := route.CanaryStatus{Stable: route.Destination{Service: "shop", Subset: route.Subset{Meta: map[string]string{"version": "v1"}}},
		Canary: route.Destination{Service: "shop", Subset: route.Subset{Meta: map[string]string{"version": "v2"}}}, Weight: 12.5}
	if !ok || cs.Weight != want.Weight || cs.Analyzed || cs.Stable.Key() != want.Stable.Key() || cs.Canary.Key() != want.Canary.Key() ||
		!reflect.DeepEqual(cs.Canary.Subset, want.Canary.Subset) {
		t.Fatalf("fixed canary: %+v, %v", cs, ok)
	}

	analyzed := fmt.Sprintf(inspectCanaryDoc, 0, "analysis: {interval: 1m, step: 25}")
	cfg, err := route.ParseConfig([]byte(analyzed))
	if err != nil {
		t.Fatal(err)
	}
	r, err := route.NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tbl, v := r.Current()
	if v != 1 || tbl != r.Table() {
		t.Fatalf("Current: version %d, table %p, want 1 and %p", v, tbl, r.Table())
	}
	rt := tbl.Route("checkout")
	if cs, _ := rt.Canary(); cs.Weight != 0 || !cs.Analyzed || cs.Analysis != route.AnalysisRunning {
		t.Fatalf("before a step: %+v", cs)
	}
	// A canary at 0 steps up after one interval without judgement.
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rt.Analyzer().Evaluate(t0)
	if _, stepped := rt.Analyzer().Evaluate(t0.Add(time.Minute)); !stepped {
		t.Fatal("no step after an interval")
	}
	if cs, _ := rt.Canary(); cs.Weight != 25 {
		t.Fatalf("after a step: weight %v, want the analyzer's 25", cs.Weight)
	}

	// A reload that leaves the canary as it was keeps the live weight; one that changes it
	// starts over from the configured weight.
	cfg2, err := route.ParseConfig([]byte(analyzed + "  - name: other\n    match: {hosts: [other]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Update(cfg2); err != nil {
		t.Fatal(err)
	}
	tbl, v = r.Current()
	if cs, _ := tbl.Route("checkout").Canary(); v != 2 || cs.Weight != 25 {
		t.Fatalf("after an unrelated reload: version %d, weight %v", v, cs.Weight)
	}
	if err := r.Load([]byte(fmt.Sprintf(inspectCanaryDoc, 5, ""))); err != nil {
		t.Fatal(err)
	}
	tbl, v = r.Current()
	if cs, _ := tbl.Route("checkout").Canary(); v != 3 || cs.Weight != 5 || cs.Analyzed {
		t.Fatalf("after a new canary: version %d, %+v", v, cs)
	}
}

// Current never pairs a table with another table's version, however reloads interleave.
func TestRouterCurrentIsConsistent(t *testing.T) {
	doc := func(i uint64) []byte {
		return []byte(fmt.Sprintf("routes:\n  - name: v%d\n    match: {}\n", i))
	}
	r, err := route.NewRouter(route.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := uint64(2); i <= 200; i++ {
			// The document loaded as version i names its route "v<i>".
			if err := r.Load(doc(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			wg.Wait()
			return
		default:
		}
		tbl, v := r.Current()
		got := "version 1" // the empty table NewRouter built
		if rs := tbl.Routes(); len(rs) > 0 {
			got = rs[0].Name()
		}
		if want := fmt.Sprintf("v%d", v); v == 1 && got != "version 1" || v > 1 && got != want {
			t.Fatalf("version %d paired with the table of %s", v, got)
		}
	}
}

func TestShadowPercentAndFaultConfig(t *testing.T) {
	tbl := mustCompile(t, `
routes:
  - name: mirrored
    match: {}
    shadow: {destination: {service: shadow}, percent: 12.5}
    fault:
      delay: {fixed: 100ms}
      abort: {percent: 5, httpStatus: 502}
  - name: all
    match: {}
    shadow: {destination: {service: shadow}}
    fault:
      delay: {percent: 1, mean: 20ms}
`)
	m := tbl.Route("mirrored")
	if got := m.Shadow().Percent(); got != 12.5 {
		t.Errorf("mirrored: shadow percent %v", got)
	}
	want := route.Fault{
		Delay: &route.DelayFault{Percent: route.Percent(100), Fixed: route.Duration(100 * time.Millisecond)},
		Abort: &route.AbortFault{Percent: route.Percent(5), HTTPStatus: 502, GRPCCode: 14},
	}
	if got := m.Fault().Config(); !reflect.DeepEqual(got, want) {
		t.Errorf("mirrored: fault %+v %+v, want %+v %+v", got.Delay, got.Abort, want.Delay, want.Abort)
	}

	all := tbl.Route("all")
	if got := all.Shadow().Percent(); got != 100 {
		t.Errorf("all: shadow percent %v, want 100 for a configured 0", got)
	}
	want = route.Fault{Delay: &route.DelayFault{Percent: route.Percent(1), Mean: route.Duration(20 * time.Millisecond), Max: route.Duration(200 * time.Millisecond)}}
	if got := all.Fault().Config(); !reflect.DeepEqual(got, want) {
		t.Errorf("all: fault %+v %+v, want %+v", got.Delay, got.Abort, want.Delay)
	}

	// The config an injector reports compiles into an injector that reports it again.
	inj, err := route.NewInjector(m.Fault().Config())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(inj.Config(), m.Fault().Config()) {
		t.Errorf("round trip: %+v", inj.Config())
	}
	var none *route.Injector
	if got := none.Config(); got.Delay != nil || got.Abort != nil {
		t.Errorf("nil injector: %+v", got)
	}
}

// Values of header and query conditions whose names usually carry a secret are redacted in
// MatchString, whatever the name's case and surrounding spaces; other values are shown.
func TestMatchStringRedactsCredentialLikeNames(t *testing.T) {
	for _, name := range []string{"X-Password", "X-Api-Keys", "X-Auth", "X-Amz-Signature", "X-Jwt", "X-Access-Token-V2", "X-Session-Id", "X-Credentials"} {
		tbl := mustCompileInspect(t, "routes: [{name: r, match: {headers: [{name: "+name+", exact: s3cr3t}]}, destination: {service: a}}]")
		got := tbl.Route("r").MatchString()
		if strings.Contains(got, "s3cr3t") || !strings.Contains(got, route.Redacted) {
			t.Errorf("header %s: %s", name, got)
		}
	}
	for _, name := range []string{"password", "sig", "apikey"} {
		tbl := mustCompileInspect(t, "routes: [{name: r, match: {query: [{name: "+name+", exact: s3cr3t}]}, destination: {service: a}}]")
		if got := tbl.Route("r").MatchString(); strings.Contains(got, "s3cr3t") {
			t.Errorf("query %s: %s", name, got)
		}
	}
	tbl := mustCompileInspect(t, "routes: [{name: r, match: {headers: [{name: X-Env, exact: staging}]}, destination: {service: a}}]")
	if got := tbl.Route("r").MatchString(); !strings.Contains(got, "staging") {
		t.Errorf("an ordinary value is hidden: %s", got)
	}
}

func mustCompileInspect(t *testing.T, doc string) *route.Table {
	t.Helper()
	cfg, err := route.ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := route.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}
