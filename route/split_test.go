package route_test

import (
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyless/proxyless/route"
)

func splitDoc(name string) string {
	return fmt.Sprintf(`
routes:
  - name: %s
    match: {hosts: [shop]}
    split:
      - {service: a, weight: 70}
      - {service: b, weight: 20}
      - {service: c, subset: {tags: [v3]}, weight: 10}
`, name)
}

func checkShares(t *testing.T, counts map[string]int, n int, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		got := 100 * float64(counts[k]) / float64(n)
		if math.Abs(got-w) > 2 {
			t.Errorf("%s: %.2f%% of %d, want %.0f%% ± 2 pp", k, got, n, w)
		}
	}
}

func TestSplitProportions(t *testing.T) {
	tbl := mustCompile(t, splitDoc("shop"))
	const n = 20000
	counts := map[string]int{}
	for range n {
		rq := route.Request{Host: "shop", Path: "/"}
		d, ok := tbl.Lookup(&rq)
		if !ok {
			t.Fatal("no match")
		}
		counts[d.Destination.Service]++
	}
	checkShares(t, counts, n, map[string]float64{"a": 70, "b": 20, "c": 10})
}

// TestSplitWhileReloading checks the split over requests spread across ten table reloads a
// second, each request on the table it started with.
func TestSplitWhileReloading(t *testing.T) {
	r, err := route.NewRouter(route.Config{})
	if err != nil {
		t.Fatal(err)
	}
	load := func(i int) {
		cfg, err := route.ParseConfig([]byte(splitDoc(fmt.Sprintf("shop-%d", i))))
		if err != nil {
			t.Error(err)
			return
		}
		if err := r.Update(cfg); err != nil {
			t.Error(err)
		}
	}
	load(0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reloads atomic.Int64
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				load(i)
				reloads.Add(1)
			}
		}
	})
	var mu sync.Mutex
	counts := map[string]int{}
	total := 0
	deadline := time.Now().Add(10 * time.Second)
	for w := range 2 {
		wg.Go(func() {
			local := map[string]int{}
			n := 0
			for reloads.Load() < 10 && time.Now().Before(deadline) {
				for range 100 {
					rq := route.Request{Host: "shop", Path: fmt.Sprint("/", w)}
					d, ok := r.Lookup(&rq)
					if !ok {
						t.Error("no match")
						return
					}
					local[d.Destination.Service]++
					n++
				}
				time.Sleep(time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range local {
				counts[k] += v
			}
			total += n
		})
	}
	for reloads.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if reloads.Load() < 10 {
		t.Fatalf("only %d reloads", reloads.Load())
	}
	if total < 2000 {
		t.Fatalf("only %d requests", total)
	}
	checkShares(t, counts, total, map[string]float64{"a": 70, "b": 20, "c": 10})
	if v := r.Version(); v < 11 {
		t.Errorf("version %d after %d reloads", v, reloads.Load())
	}
}

const canaryDoc = `
routes:
  - name: checkout
    match: {path: {prefix: /checkout}}
    canary:
      stable: {service: checkout, subset: {meta: {version: v1}}}
      canary: {service: checkout, subset: {meta: {version: v2}}}
      weight: 10
      override: {header: x-canary, cookie: canary}
`

func TestCanaryOverrideOnlyFromTrustedCallers(t *testing.T) {
	trusted := route.TrustPrefixes(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"))
	tbl := mustCompile(t, canaryDoc, route.WithTrust(trusted))
	count := func(remote, header, cookie string) (canary, pinned int) {
		for range 1000 {
			rq := route.Request{Path: "/checkout", RemoteAddr: remote, Header: map[string][]string{}}
			if header != "" {
				rq.Header["X-Canary"] = []string{header}
			}
			if cookie != "" {
				rq.Header["Cookie"] = []string{"canary=" + cookie}
			}
			d, _ := tbl.Lookup(&rq)
			if d.Canary {
				canary++
				if d.Destination.Subset.Meta["version"] != "v2" {
					t.Fatal("canary side without the canary destination")
				}
			}
			if d.Pinned {
				pinned++
			}
		}
		return
	}
	if c, p := count("10.1.2.3:5555", "canary", ""); c != 1000 || p != 1000 {
		t.Errorf("trusted header canary: %d canary, %d pinned of 1000", c, p)
	}
	if c, _ := count("[::1]:80", "stable", ""); c != 0 {
		t.Errorf("trusted header stable: %d canary of 1000", c)
	}
	if c, _ := count("10.9.9.9:1", "", "canary"); c != 1000 {
		t.Errorf("trusted cookie: %d canary of 1000", c)
	}
	if c, p := count("203.0.113.7:4444", "canary", "canary"); p != 0 || c > 200 {
		t.Errorf("outside caller: %d canary, %d pinned of 1000; want ~10%%, none pinned", c, p)
	}
	if c, p := count("10.1.2.3:5555", "bogus", ""); p != 0 || c > 200 {
		t.Errorf("unknown override value: %d canary, %d pinned", c, p)
	}

	// Without a trust predicate nobody may pin.
	open := mustCompile(t, canaryDoc)
	rq := route.Request{Path: "/checkout", RemoteAddr: "10.1.2.3:1", Header: map[string][]string{"X-Canary": {"canary"}}}
	if d, _ := open.Lookup(&rq); d.Pinned {
		t.Error("pinned without WithTrust")
	}

	byID := mustCompile(t, canaryDoc, route.WithTrust(route.TrustIdentities("spiffe://qa/tester")))
	rq.Identity = "spiffe://qa/tester"
	if d, _ := byID.Lookup(&rq); !d.Pinned || !d.Canary {
		t.Error("trusted identity not honoured")
	}
	rq.Identity = "spiffe://prod/user"
	if d, _ := byID.Lookup(&rq); d.Pinned {
		t.Error("untrusted identity honoured")
	}
}

func TestCanaryStickiness(t *testing.T) {
	doc := func(weight int) string {
		return fmt.Sprintf(`
routes:
  - name: checkout
    match: {path: {prefix: /}}
    sticky: {key: true, cookie: session}
    canary:
      stable: {service: v1}
      canary: {service: v2}
      weight: %d
`, weight)
	}
	// The cookie below is caller-written: it is honoured for trusted callers only.
	trustAll := route.WithTrust(func(*route.Request) bool { return true })
	t10, t50 := mustCompile(t, doc(10), trustAll), mustCompile(t, doc(50), trustAll)
	const users = 5000
	on10, on50 := 0, 0
	for u := range users {
		key := fmt.Sprintf("user-%d", u)
		var first bool
		for i := range 5 {
			rq := route.Request{Path: "/", Key: key}
			d, _ := t10.Lookup(&rq)
			if i == 0 {
				first = d.Canary
			} else if d.Canary != first {
				t.Fatalf("%s changed side", key)
			}
		}
		rq := route.Request{Path: "/", Key: key}
		d50, _ := t50.Lookup(&rq)
		if first {
			on10++
			if !d50.Canary {
				t.Fatalf("%s left the canary when its weight went up", key)
			}
		}
		if d50.Canary {
			on50++
		}
	}
	if got := 100 * float64(on10) / users; math.Abs(got-10) > 2 {
		t.Errorf("10%% canary holds %.2f%% of users", got)
	}
	if got := 100 * float64(on50) / users; math.Abs(got-50) > 3 {
		t.Errorf("50%% canary holds %.2f%% of users", got)
	}
	// The cookie is the fallback when there is no key.
	var side bool
	for i := range 20 {
		rq := route.Request{Path: "/", Header: map[string][]string{"Cookie": {"session=abc123"}}}
		d, _ := t50.Lookup(&rq)
		if i > 0 && d.Canary != side {
			t.Fatal("cookie stickiness changed side")
		}
		side = d.Canary
	}
}

func TestSplitStickyHeader(t *testing.T) {
	const doc = `
routes:
  - match: {}
    sticky: {header: x-user}
    split: [{service: a, weight: 1}, {service: b, weight: 1}, {service: c, weight: 1}]
`
	// A sticky header is the caller's to write: it is honoured for trusted callers only.
	tbl := mustCompile(t, doc, route.WithTrust(func(*route.Request) bool { return true }))
	for u := range 200 {
		var first string
		for i := range 3 {
			rq := route.Request{Header: map[string][]string{"X-User": {fmt.Sprint(u)}}}
			d, _ := tbl.Lookup(&rq)
			if i == 0 {
				first = d.Destination.Service
			} else if d.Destination.Service != first {
				t.Fatalf("user %d moved", u)
			}
		}
	}
}

// An untrusted caller cannot choose its arm by choosing the value of a sticky header or
// cookie: its requests are split at random, as if it had sent none.
func TestStickyKeyIgnoredForUntrustedCallers(t *testing.T) {
	tbl := mustCompile(t, `
routes:
  - match: {}
    sticky: {header: x-user}
    split: [{service: a, weight: 1}, {service: b, weight: 1}]
`) // no trust predicate: no caller is trusted
	seen := map[string]int{}
	for range 200 {
		rq := route.Request{Header: map[string][]string{"X-User": {"the-same-user"}}}
		d, _ := tbl.Lookup(&rq)
		seen[d.Destination.Service]++
	}
	if seen["a"] < 50 || seen["b"] < 50 {
		t.Fatalf("one header value pinned an untrusted caller's requests: %v", seen)
	}
	// The application's own key (Request.Key) still holds a caller to one arm.
	keyed := mustCompile(t, `
routes:
  - match: {}
    sticky: {key: true}
    split: [{service: a, weight: 1}, {service: b, weight: 1}]
`)
	first := ""
	for i := range 20 {
		rq := route.Request{Key: "user-7"}
		d, _ := keyed.Lookup(&rq)
		if i == 0 {
			first = d.Destination.Service
		} else if d.Destination.Service != first {
			t.Fatal("Request.Key stickiness changed arm")
		}
	}
}
