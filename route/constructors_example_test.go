package route_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/proxyless/proxyless/route"
)

func ExampleCompile() {
	tbl, err := route.Compile(route.Config{Routes: []route.RouteConfig{{
		Name:  "orders",
		Match: route.Match{Path: &route.StringMatch{Prefix: "/orders/"}},
		Split: []route.WeightedDestination{
			{Destination: route.Destination{Service: "orders-v1"}, Weight: 9},
			{Destination: route.Destination{Service: "orders-v2"}, Weight: 1},
		},
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, arm := range tbl.Route("orders").Split() {
		fmt.Println(arm.Service, arm.Weight)
	}

	// An invalid document is refused with the path of the bad field.
	_, err = route.Compile(route.Config{Routes: []route.RouteConfig{{
		Split: []route.WeightedDestination{{Destination: route.Destination{Service: "a"}}},
	}}})
	fmt.Println(errors.Is(err, route.ErrInvalidConfig))
	// Output:
	// orders-v1 9
	// orders-v2 1
	// true
}

func ExampleNewRouter() {
	r, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Name:        "search",
		Match:       route.Match{Hosts: []string{"search"}},
		Destination: &route.Destination{Service: "search-v1"},
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	rq := route.Request{Host: "search", Method: "GET", Path: "/q"}
	d, _ := r.Lookup(&rq)
	fmt.Println(r.Version(), d.Destination.Service)

	// A new table takes over atomically; requests in flight keep the one they started with.
	err = r.Load([]byte(`
routes:
  - name: search
    match: {hosts: [search]}
    destination: {service: search-v2}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	d, _ = r.Lookup(&rq)
	fmt.Println(r.Version(), d.Destination.Service)

	// An invalid one is refused, and the current table stays.
	err = r.Load([]byte(`routes: [{name: search, destination: {}}]`))
	d, _ = r.Lookup(&rq)
	fmt.Println(err != nil, r.Version(), d.Destination.Service)
	// Output:
	// 1 search-v1
	// 2 search-v2
	// true 2 search-v2
}

func ExampleNewHeaderMatcher() {
	m, err := route.NewHeaderMatcher(route.HeaderMatch{Name: "x-tenant", Regex: "team-[a-z]+"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, v := range []string{"team-blue", "team-42", ""} {
		h := http.Header{}
		if v != "" {
			h.Set("X-Tenant", v)
		}
		fmt.Printf("%q %t\n", v, m.Match(h))
	}
	_, err = route.NewHeaderMatcher(route.HeaderMatch{Name: "x-tenant"})
	fmt.Println(err)
	// Output:
	// "team-blue" true
	// "team-42" false
	// "" false
	// route: header: set exactly one of exact, prefix, regex, present and absent
}

func ExampleNewInjector() {
	// Every request is aborted with 503; none is delayed.
	inj, err := route.NewInjector(route.Fault{Abort: &route.AbortFault{HTTPStatus: http.StatusServiceUnavailable}})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = inj.Inject(context.Background()) // client side: before sending
	var abort *route.AbortError
	fmt.Println(errors.As(err, &abort), abort.HTTPStatus)

	// Server side: the handler answers the abort itself.
	h := inj.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "never reached")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	fmt.Println(rec.Code)
	// Output:
	// true 503
	// 503
}

func ExampleNewShadower() {
	// The shadow (a new version) answers differently from the primary.
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "v2 answer")
	}))
	defer shadow.Close()

	tbl, err := route.Compile(route.Config{Routes: []route.RouteConfig{{
		Name: "catalog",
		Shadow: &route.Shadow{
			Destination: route.Destination{Service: strings.TrimPrefix(shadow.URL, "http://")},
			CompareBody: true,
		},
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	s := route.NewShadower(nil, 0) // copies go through http.DefaultTransport
	defer s.Close()
	mismatched := make(chan string, 1)
	s.OnMismatch(func(route, shadow string) { mismatched <- route })

	req := httptest.NewRequest("GET", "http://catalog/items", nil)
	rq := route.FromHTTP(req)
	d, _ := tbl.Lookup(&rq)
	pending := s.Mirror(req, d.Route.Shadow()) // returns at once

	// The primary's answer, as the caller's transport got it.
	resp := &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("v1 answer"))}
	pending.Primary(resp, nil)
	_, _ = io.Copy(io.Discard, resp.Body) // the body is compared as the caller reads it
	resp.Body.Close()

	select {
	case r := <-mismatched:
		fmt.Println("mismatch on route", r, "- mirrored", s.Stats().Mirrored)
	case <-time.After(5 * time.Second):
		fmt.Println("no comparison")
	}
	// Output:
	// mismatch on route catalog - mirrored 1
}
