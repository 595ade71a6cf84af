package route_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyless/proxyless/route"
)

// benchConfig has 100 routes; the benchmark request matches only the last one. With hosts,
// routes spread over 10 hosts (the table's host index narrows the walk); without, every
// request walks all 100.
func benchConfig(withHosts bool) route.Config {
	var cfg route.Config
	for i := range 100 {
		rc := route.RouteConfig{
			Name: fmt.Sprintf("r%d", i),
			Match: route.Match{
				Path:    &route.StringMatch{Prefix: fmt.Sprintf("/api/v%d/", i)},
				Methods: []string{"GET", "POST"},
				Headers: []route.HeaderMatch{{Name: "x-tenant", Regex: fmt.Sprintf("t%d-[a-z]+", i)}},
				Query:   []route.QueryMatch{{Name: "beta", Exact: "1"}},
			},
			Split: []route.WeightedDestination{
				{Destination: route.Destination{Service: fmt.Sprintf("svc%d", i)}, Weight: 90},
				{Destination: route.Destination{Service: fmt.Sprintf("svc%d", i), Subset: route.Subset{Meta: map[string]string{"version": "v2"}}}, Weight: 10},
			},
		}
		if withHosts {
			rc.Match.Hosts = []string{fmt.Sprintf("svc%d.example", i%10)}
		}
		// Every route but the last fails on its path, then its header, so the walk is not
		// decided by the first check alone.
		if i < 99 {
			rc.Match.Path.Prefix = "/api/"
			rc.Match.Headers[0].Regex = "nobody"
		}
		cfg.Routes = append(cfg.Routes, rc)
	}
	return cfg
}

func benchRequest() *http.Request {
	req := httptest.NewRequest("GET", "http://svc9.example/api/v99/items?beta=1&page=2", nil)
	req.Header.Set("X-Tenant", "t99-acme")
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "application/json")
	return req
}

func BenchmarkLookup100Routes(b *testing.B) {
	for _, withHosts := range []bool{false, true} {
		b.Run(fmt.Sprintf("hosts=%v", withHosts), func(b *testing.B) {
			r, err := route.NewRouter(benchConfig(withHosts))
			if err != nil {
				b.Fatal(err)
			}
			req := benchRequest()
			b.ReportAllocs()
			for b.Loop() {
				rq := route.FromHTTP(req)
				d, ok := r.Lookup(&rq)
				if !ok || d.Route.Name() != "r99" {
					b.Fatal("wrong match")
				}
			}
		})
	}
}

// naiveRoute is the baseline: the same rules checked the obvious way, through net/http's
// helpers (Query, Header.Get, lower-casing the host) and a map per request.
type naiveRoute struct {
	name    string
	host    string
	prefix  string
	methods []string
	header  string
	re      *regexp.Regexp
	qname   string
	qval    string
}

func naiveTable(cfg route.Config) []naiveRoute {
	var out []naiveRoute
	for _, rc := range cfg.Routes {
		nr := naiveRoute{name: rc.Name, prefix: rc.Match.Path.Prefix, methods: rc.Match.Methods,
			header: rc.Match.Headers[0].Name, re: regexp.MustCompile("^(?:" + rc.Match.Headers[0].Regex + ")$"),
			qname: rc.Match.Query[0].Name, qval: rc.Match.Query[0].Exact}
		if len(rc.Match.Hosts) > 0 {
			nr.host = rc.Match.Hosts[0]
		}
		out = append(out, nr)
	}
	return out
}

func naiveMatch(routes []naiveRoute, req *http.Request) string {
	host := strings.ToLower(req.Host)
	if i := strings.LastIndex(host, ":"); i >= 0 {
		host = host[:i]
	}
	q := req.URL.Query()
	for _, r := range routes {
		if r.host != "" && r.host != host {
			continue
		}
		if !strings.HasPrefix(req.URL.Path, r.prefix) || !slices.Contains(r.methods, req.Method) {
			continue
		}
		if !r.re.MatchString(req.Header.Get(r.header)) {
			continue
		}
		if q.Get(r.qname) != r.qval {
			continue
		}
		return r.name
	}
	return ""
}

func BenchmarkNaiveLookup100Routes(b *testing.B) {
	for _, withHosts := range []bool{false, true} {
		b.Run(fmt.Sprintf("hosts=%v", withHosts), func(b *testing.B) {
			routes := naiveTable(benchConfig(withHosts))
			req := benchRequest()
			b.ReportAllocs()
			for b.Loop() {
				if naiveMatch(routes, req) != "r99" {
					b.Fatal("wrong match")
				}
			}
		})
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops items)")
	}
	r, err := route.NewRouter(benchConfig(true))
	if err != nil {
		t.Fatal(err)
	}
	req := benchRequest()
	allocs := testing.AllocsPerRun(1000, func() {
		rq := route.FromHTTP(req)
		if d, ok := r.Lookup(&rq); !ok || d.Route.Name() != "r99" {
			t.Fatal("wrong match")
		}
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times per request", allocs)
	}
}

// BenchmarkPrimaryWithHangingShadow compares a primary request's latency with no shadowing
// and with every request mirrored to a shadow that never answers (in the same run). The
// p99-ns metric is each sub-benchmark's 99th-percentile primary latency.
func BenchmarkPrimaryWithHangingShadow(b *testing.B) {
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer primary.Close()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	pol := shadowPolicy(b, hang.Listener.Addr().String(), ", maxConcurrency: 8, timeout: 1m")
	for _, mirror := range []bool{false, true} {
		b.Run(fmt.Sprintf("shadow=%v", mirror), func(b *testing.B) {
			sh := route.NewShadower(hang.Client().Transport, 8)
			defer sh.Close()
			client := primary.Client()
			var lat []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				req, _ := http.NewRequest("GET", primary.URL, nil)
				var p *route.Pending
				if mirror {
					p = sh.Mirror(req, pol)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				p.Primary(resp, err)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
			if st := sh.Stats(); st.MaxInFlight > 8 {
				b.Fatalf("shadow in flight reached %d, over the cap of 8", st.MaxInFlight)
			}
		})
	}
}
