package route_test

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/route"
)

func ExampleTable_Lookup() {
	cfg, err := route.ParseConfig([]byte(`
routes:
  - name: payments-v2
    match:
      hosts: [payments]
      path: {prefix: /v2/}
      headers: [{name: x-beta, exact: "yes"}]
    destination: {service: payments, subset: {meta: {version: v2}}}
    timeout: 2s
    retry: {maxRetries: 1}
default:
  name: passthrough
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	tbl, err := route.Compile(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	req := httptest.NewRequest("GET", "http://payments/v2/charges", nil)
	req.Header.Set("X-Beta", "yes")
	rq := route.FromHTTP(req)
	d, _ := tbl.Lookup(&rq)
	fmt.Println(d.Route.Name(), d.Destination.Key(), d.Route.Timeout(), d.Route.Retry().MaxRetries)

	rq = route.Request{Host: "payments", Method: "GET", Path: "/v1/charges"}
	d, _ = tbl.Lookup(&rq)
	fmt.Println(d.Route.Name(), d.Destination == nil)
	// Output:
	// payments-v2 payments|meta=version=v2 2s 1
	// passthrough true
}

func ExampleParseConfig_error() {
	_, err := route.ParseConfig([]byte(`
routes:
  - match: {path: {prefix: /a}}
  - match: {path: {regex: "(unclosed"}}
`))
	fmt.Println(err)
	// Output:
	// route: routes[1].match.path.regex: error parsing regexp: missing closing ): `(unclosed`
}

func ExampleSubset_Filter() {
	eps := []discovery.Endpoint{
		{Addr: "10.0.0.1:80", Meta: map[string]string{"version": "v1"}},
		{Addr: "10.0.0.2:80", Meta: map[string]string{"version": "v2"}, Tags: []string{"canary"}},
		{Addr: "10.0.0.3:80", Meta: map[string]string{"version": "v2"}},
	}
	v2 := route.Subset{Meta: map[string]string{"version": "v2"}}
	for _, e := range v2.Filter(eps) {
		fmt.Println(e.Addr)
	}
	fmt.Println(len(route.Subset{Tags: []string{"canary"}}.Filter(eps)))
	// Output:
	// 10.0.0.2:80
	// 10.0.0.3:80
	// 1
}

func ExampleWithTrust() {
	tbl, err := route.Compile(route.Config{Routes: []route.RouteConfig{{
		Name: "checkout",
		Canary: &route.Canary{
			Stable:   route.Destination{Service: "checkout-v1"},
			Canary:   route.Destination{Service: "checkout-v2"},
			Weight:   0,
			Override: &route.CanaryOverride{Header: "X-Canary"},
		},
	}}}, route.WithTrust(route.TrustPrefixes(netip.MustParsePrefix("10.0.0.0/8"))))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, remote := range []string{"10.1.2.3:4000", "198.51.100.7:4000"} {
		rq := route.Request{RemoteAddr: remote, Header: map[string][]string{"X-Canary": {"canary"}}}
		d, _ := tbl.Lookup(&rq)
		fmt.Println(remote, d.Destination.Service, d.Pinned)
	}
	// Output:
	// 10.1.2.3:4000 checkout-v2 true
	// 198.51.100.7:4000 checkout-v1 false
}

func ExampleAnalyzer() {
	tbl, err := route.Compile(route.Config{Routes: []route.RouteConfig{{
		Name: "checkout",
		Canary: &route.Canary{
			Stable: route.Destination{Service: "v1"},
			Canary: route.Destination{Service: "v2"},
			Weight: 10,
			Analysis: &route.Analysis{
				Interval:    route.Duration(time.Minute),
				Step:        45,
				MinRequests: 10,
			},
		},
	}}}, route.WithEvents(func(ev route.Event) {
		fmt.Printf("%s %s %v%% -> %v%%", ev.Route, ev.Kind, ev.From, ev.To)
		if ev.Reason != "" {
			fmt.Print(": ", ev.Reason)
		}
		fmt.Println()
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	a := tbl.Route("checkout").Analyzer()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 20 {
		a.Observe(i%2 == 0, route.Outcome{Latency: 10 * time.Millisecond}, now)
	}
	a.Evaluate(now.Add(time.Minute)) // healthy: step up
	for range 10 {
		a.Observe(false, route.Outcome{Latency: 10 * time.Millisecond}, now.Add(61*time.Second))
		a.Observe(true, route.Outcome{Latency: 10 * time.Millisecond, Failed: true}, now.Add(61*time.Second))
	}
	fmt.Println(a.State(), a.Weight())
	// Output:
	// checkout step 10% -> 55%
	// checkout rollback 55% -> 0%: canary error rate 100.00% is above stable 0.00% + 1.00 pp
	// rolled back 0
}

func ExampleRoute_HashPolicy() {
	cfg, err := route.ParseConfig([]byte(`
routes:
  - name: carts
    match: {path: {prefix: /carts}}
    hashPolicy:
      - {header: x-user-id, terminal: true}
      - {cookie: session}
`))
	if err != nil {
		panic(err)
	}
	tbl, _ := route.Compile(cfg)
	dec, _ := tbl.Lookup(&route.Request{Host: "shop", Path: "/carts/1", Method: "GET"})
	for _, p := range dec.Route.HashPolicy() {
		fmt.Printf("%+v\n", p)
	}
	// Output:
	// {Header:x-user-id Metadata: Cookie: QueryParameter: SourceIP:false ContextKey:false Terminal:true}
	// {Header: Metadata: Cookie:session QueryParameter: SourceIP:false ContextKey:false Terminal:false}
}
