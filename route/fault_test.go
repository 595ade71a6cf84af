package route_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/proxyless/proxyless/route"
)

func TestFaultAbortPercentage(t *testing.T) {
	inj, err := route.NewInjector(route.Fault{Abort: &route.AbortFault{Percent: route.Percent(10), HTTPStatus: 500, GRPCCode: 8}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	aborted := 0
	for range n {
		err := inj.Inject(context.Background())
		var ab *route.AbortError
		switch {
		case err == nil:
		case errors.As(err, &ab):
			aborted++
			if ab.HTTPStatus != 500 || ab.GRPCCode != 8 || !errors.Is(err, route.ErrAborted) {
				t.Fatalf("abort %+v", ab)
			}
		default:
			t.Fatal(err)
		}
	}
	if got := 100 * float64(aborted) / n; math.Abs(got-10) > 1 {
		t.Errorf("aborted %.2f%%, want 10%% ± 1 pp", got)
	}
}

func TestFaultDelayPercentageAndDistributions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tests := []struct {
			name     string
			d        route.DelayFault
			min, max time.Duration
		}{
			{"fixed", route.DelayFault{Percent: route.Percent(25), Fixed: route.Duration(time.Second)}, time.Second, time.Second},
			{"uniform", route.DelayFault{Percent: route.Percent(25), Min: route.Duration(time.Second), Max: route.Duration(3 * time.Second)}, time.Second, 3 * time.Second},
			{"exponential", route.DelayFault{Percent: route.Percent(25), Mean: route.Duration(time.Second), Max: route.Duration(4 * time.Second)}, 0, 4 * time.Second},
		}
		for _, tc := range tests {
			inj, err := route.NewInjector(route.Fault{Delay: &tc.d})
			if err != nil {
				t.Fatal(err)
			}
			const n = 2000
			delayed := 0
			var sum time.Duration
			for range n {
				d, ab := inj.Sample()
				if ab != nil {
					t.Fatal("abort without an abort fault")
				}
				if d > 0 {
					delayed++
					sum += d
					if d < tc.min || d > tc.max {
						t.Fatalf("%s: delay %v outside [%v, %v]", tc.name, d, tc.min, tc.max)
					}
				}
			}
			// 2,000 draws at 25 %: one standard deviation is 0.97 points; 4 points is over 4.
			if got := 100 * float64(delayed) / n; math.Abs(got-25) > 4 {
				t.Errorf("%s: delayed %.1f%%, want 25%%", tc.name, got)
			}
			// Inject really waits (in the bubble's fake time): 100 injections, of which none is
			// delayed once in 10^12 runs.
			start := time.Now()
			for range 100 {
				if err := inj.Inject(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if time.Since(start) == 0 && tc.min > 0 {
				t.Errorf("%s: 100 injections took no time", tc.name)
			}
		}
	})
}

func TestFaultDelayGivesUpWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inj, err := route.NewInjector(route.Fault{Delay: &route.DelayFault{Fixed: route.Duration(10 * time.Second)}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		err = inj.Inject(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("gave up after %v, want 2s", took)
		}
		// A done context returns at once.
		if err := inj.Inject(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestNilInjector(t *testing.T) {
	var inj *route.Injector
	if err := inj.Inject(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestServerSideFaults(t *testing.T) {
	r, err := route.NewRouter(mustParse(t, `
routes:
  - name: broken
    match: {path: {prefix: /broken}}
    fault: {abort: {httpStatus: 418, grpcCode: 9}}
  - name: slow
    match: {path: {prefix: /slow}}
    fault: {delay: {fixed: 10s}}
`))
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewServer(r.FaultHandler(ok))
	defer srv.Close()

	get := func(ctx context.Context, path string, hdr ...string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		if len(hdr) == 2 {
			req.Header.Set(hdr[0], hdr[1])
		}
		return srv.Client().Do(req)
	}
	resp, err := get(context.Background(), "/fine")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("fine: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = get(context.Background(), "/broken")
	if err != nil || resp.StatusCode != 418 {
		t.Fatalf("broken: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = get(context.Background(), "/broken", "Content-Type", "application/grpc")
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "9" {
		t.Fatalf("broken gRPC: %v %v", resp, err)
	}
	resp.Body.Close()
	// The slow route's handler gives up when the client does; srv.Close waits for it.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := get(ctx, "/slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow: %v", err)
	}
}

func TestFaultDelayLimits(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"routes: [{fault: {delay: {fixed: 11s}}}]", "route: routes[0].fault.delay.fixed: 11s is over limits.maxFaultDelay (10s)"},
		{"routes: [{fault: {delay: {mean: 11s}}}]", "route: routes[0].fault.delay.mean: 11s is over limits.maxFaultDelay (10s)"},
		{"routes: [{fault: {delay: {max: 2s}}}, {fault: {delay: {max: 1m}}}]", "route: routes[1].fault.delay.max: 1m0s is over limits.maxFaultDelay (10s)"},
		{"limits: {maxFaultDelay: 1s}\nroutes: [{fault: {delay: {fixed: 2s}}}]", "route: routes[0].fault.delay.fixed: 2s is over limits.maxFaultDelay (1s)"},
		{"limits: {maxFaultDelay: -1s}\nroutes: []", "route: limits.maxFaultDelay: must not be negative, got -1s"},
		{"limits: {maxDelayedRequests: -1}\nroutes: []", "route: limits.maxDelayedRequests: must not be negative, got -1"},
		{"routes: [{fault: {abort: {percent: 101}}}]", "route: routes[0].fault.abort.percent: must be a percentage from 0 to 100, got 101"},
	} {
		_, err := route.ParseConfig([]byte(tc.doc))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v, want %s", tc.doc, err, tc.want)
		}
	}
	// A larger limit admits a longer delay; an exponential delay without a max is capped.
	cfg, err := route.ParseConfig([]byte("limits: {maxFaultDelay: 1m}\nroutes: [{fault: {delay: {fixed: 30s}}}, {fault: {delay: {mean: 9s}}}]"))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := route.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.Routes()[1].Fault().Config().Delay.Max; got != route.Duration(time.Minute) {
		t.Errorf("exponential cap %v, want the 1m limit", got)
	}
}

func TestCallerMatchedFaultOnlyForTrustedCallers(t *testing.T) {
	cfg := mustParse(t, `
routes:
  - name: by-header
    match: {headers: [{name: x-chaos, present: true}]}
    destination: {service: chaos}
    fault: {abort: {}}
  - name: for-all
    match: {hosts: [all]}
    fault: {abort: {}, allCallers: true}
  - name: by-path
    match: {path: {prefix: /p}}
    fault: {abort: {}}
`)
	trusted := func(r *route.Request) bool { return r.Identity == "ops" }
	tb, err := route.Compile(cfg, route.WithTrust(trusted))
	if err != nil {
		t.Fatal(err)
	}
	chaos := http.Header{"X-Chaos": {"1"}}
	for _, tc := range []struct {
		name      string
		req       route.Request
		route     string
		withFault bool
	}{
		{"untrusted header", route.Request{Host: "svc", Path: "/", Header: chaos}, "by-header", false},
		{"trusted header", route.Request{Host: "svc", Path: "/", Header: chaos, Identity: "ops"}, "by-header", true},
		{"allCallers", route.Request{Host: "all", Path: "/"}, "for-all", true},
		{"path only", route.Request{Host: "svc", Path: "/p"}, "by-path", true},
	} {
		rt := tb.Match(&tc.req)
		if rt == nil || rt.Name() != tc.route || (rt.Fault() != nil) != tc.withFault {
			t.Errorf("%s: route %v, fault %v; want %s, fault %v", tc.name, rt.Name(), rt.Fault() != nil, tc.route, tc.withFault)
			continue
		}
		if dec, _ := tb.Lookup(&tc.req); dec.Destination != rt.Destination() || (dec.Route.Fault() != nil) != tc.withFault {
			t.Errorf("%s: Lookup disagrees with Match", tc.name)
		}
	}
	// The untrusted caller still goes where the route says.
	if dec, _ := tb.Lookup(&route.Request{Host: "svc", Header: chaos}); dec.Destination == nil || dec.Destination.Service != "chaos" {
		t.Errorf("untrusted caller's destination %v", dec.Destination)
	}
}
