package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

var hashingPolicies = []balancer.Policy{balancer.PolicyMaglev, balancer.PolicyRingHash}

// hashRig is a proxyless HTTP client of the service "svc" over real loopback servers, each
// of which answers with its name; the test chooses how many of them the service lists.
type hashRig struct {
	static  *discovery.Static
	servers []*httptest.Server
	failing []atomic.Bool // server i answers 500 while failing[i] is set
	tr      *middleware.Transport
	client  *http.Client
}

func newHashRig(t *testing.T, n int, opts ...middleware.TransportOption) *hashRig {
	t.Helper()
	h := &hashRig{static: discovery.MustNewStatic(nil), failing: make([]atomic.Bool, n)}
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if h.failing[i].Load() {
				w.WriteHeader(http.StatusInternalServerError)
			}
			_, _ = io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		h.servers = append(h.servers, srv)
	}
	base := &http.Transport{MaxIdleConnsPerHost: 16}
	var err error
	h.tr, err = middleware.NewTransport(base, append([]middleware.TransportOption{middleware.WithResolver(h.static)}, opts...)...)
	require.NoError(t, err)
	h.client = &http.Client{Transport: h.tr}
	t.Cleanup(func() {
		require.NoError(t, h.tr.Close())
		base.CloseIdleConnections()
	})
	h.use(t, n)
	return h
}

// use lists the first k servers as the endpoints of svc and waits until the transport's
// balancer holds them (the first call makes the destination).
func (h *hashRig) use(t *testing.T, k int) {
	t.Helper()
	eps := make([]discovery.Endpoint, k)
	for i := range k {
		eps[i] = discovery.Endpoint{Addr: h.servers[i].Listener.Addr().String()}
	}
	h.static.Set("svc", eps)
	deadline := time.Now().Add(10 * time.Second)
	for len(h.tr.Endpoints("svc")) != k {
		if st := h.tr.Endpoints("svc"); st == nil {
			h.send(t, "/", nil) // the first request makes the destination
			continue
		}
		require.True(t, time.Now().Before(deadline), "the transport never saw %d endpoints", k)
		time.Sleep(5 * time.Millisecond)
	}
}

// send sends GET http://svc<path>, edited by edit, and returns the name of the server that
// answered 200.
func (h *hashRig) send(t *testing.T, path string, edit func(*http.Request)) string {
	t.Helper()
	name, code := h.sendStatus(t, path, edit)
	require.Equal(t, http.StatusOK, code, "from %s", name)
	return name
}

// sendStatus is send for any status: it returns the server's name and the status.
func (h *hashRig) sendStatus(t *testing.T, path string, edit func(*http.Request)) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc"+path, nil)
	require.NoError(t, err)
	if edit != nil {
		edit(req)
	}
	resp, err := h.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b), resp.StatusCode
}

func header(name, value string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set(name, value) }
}

func hashing(pol balancer.Policy, hp ...balancer.HashPolicy) middleware.ClientOption {
	return middleware.WithBalancer(balancer.Config{Policy: pol, HashPolicy: hp})
}

// stickyThenJoin sends keys × reps requests through three endpoints, asserting that each key
// sticks to one, then lists a fourth and returns the share of moveKeys keys (the first keys
// among them) whose endpoint changed, and of those the share that moved to the newcomer.
// send sends key k's request and returns the name of the server that answered.
func stickyThenJoin(t *testing.T, join func(), send func(k int) string, keys, reps, moveKeys int) (moved, toNew float64) {
	t.Helper()
	owner := make([]string, moveKeys)
	sticky, spread := 0, map[string]int{}
	for k := range keys {
		counts := map[string]int{}
		for range reps {
			counts[send(k)]++
		}
		best := ""
		for name, c := range counts {
			if c > counts[best] {
				best = name
			}
		}
		sticky += counts[best]
		owner[k] = best
		spread[best]++
	}
	// ≥ 99 % of each key's requests went to its endpoint (here, in fact, all of them).
	assert.GreaterOrEqual(t, float64(sticky)/float64(keys*reps), 0.99, "sticky %d of %d", sticky, keys*reps)
	assert.Len(t, spread, 3, "the keys spread over the three endpoints: %v", spread)
	for k := keys; k < moveKeys; k++ {
		owner[k] = send(k)
	}
	join()
	nMoved, nNew := 0, 0
	for k := range moveKeys {
		if now := send(k); now != owner[k] {
			nMoved++
			if now == "s3" {
				nNew++
			}
		}
	}
	t.Logf("moved %d of %d keys, %d of them to the new endpoint", nMoved, moveKeys, nNew)
	return float64(nMoved) / float64(moveKeys), float64(nNew) / float64(max(nMoved, 1))
}

// assertMoveBounds checks the share of keys that moved when a fourth endpoint joined three.
// Ideal consistent hashing moves 1/4 of the keys, all to the newcomer. Maglev comes close
// (its table is rebuilt, but each endpoint keeps most of its preferred slots): measured 23 to
// 28 % over random endpoint addresses, nearly all to the newcomer; with 1,000 keys the
// sampling adds ±3 % (two standard deviations), so 15 to 35 %. Ring hash, sized as Envoy's
// (about 1,024 points whatever the number of endpoints), also takes a quarter of each old
// endpoint's points away (342 → 256 points each), and some keys of those arcs land on another
// old endpoint: measured 32 to 38 %, so 15 to 45 %. A hash that ignored the key's history (a
// modulo over the endpoints) would move 3/4.
func assertMoveBounds(t *testing.T, pol balancer.Policy, moved, toNew float64) {
	t.Helper()
	hi, minNew := 0.35, 0.9
	if pol == balancer.PolicyRingHash {
		hi, minNew = 0.45, 0.5
	}
	assert.GreaterOrEqual(t, moved, 0.15)
	assert.LessOrEqual(t, moved, hi)
	assert.GreaterOrEqual(t, toNew, minNew, "most moved keys went to the newcomer")
}

func TestHTTPHashingStickyAndMinimalMove(t *testing.T) {
	for _, pol := range hashingPolicies {
		t.Run(string(pol), func(t *testing.T) {
			h := newHashRig(t, 4, hashing(pol, balancer.HashPolicy{Header: "x-user"}))
			h.use(t, 3)
			send := func(k int) string { return h.send(t, "/", header("X-User", fmt.Sprint("user-", k))) }
			moved, toNew := stickyThenJoin(t, func() { h.use(t, 4) }, send, 200, 10, 1000)
			assertMoveBounds(t, pol, moved, toNew)
		})
	}
}

// TestHTTPHashPolicies checks each HTTP hash policy on real requests: a key's requests stick
// to one endpoint, different keys spread, and requests without the value are spread at
// random (so it is the key, not chance or a constant, that sticks).
func TestHTTPHashPolicies(t *testing.T) {
	cases := []struct {
		name   string
		policy balancer.HashPolicy
		set    func(r *http.Request, key string) *http.Request
	}{
		{"header", balancer.HashPolicy{Header: "x-user"}, func(r *http.Request, k string) *http.Request {
			r.Header.Add("X-User", k)
			return r
		}},
		{"metadata name on HTTP", balancer.HashPolicy{Metadata: "x-user"}, func(r *http.Request, k string) *http.Request {
			r.Header.Set("X-User", k)
			return r
		}},
		{"cookie", balancer.HashPolicy{Cookie: "session"}, func(r *http.Request, k string) *http.Request {
			r.AddCookie(&http.Cookie{Name: "other", Value: "same-for-all"})
			r.AddCookie(&http.Cookie{Name: "session", Value: k})
			return r
		}},
		{"query", balancer.HashPolicy{QueryParameter: "tenant"}, func(r *http.Request, k string) *http.Request {
			r.URL.RawQuery = "a=1&tenant=" + k + "&b=2"
			return r
		}},
		{"context key", balancer.HashPolicy{ContextKey: true}, func(r *http.Request, k string) *http.Request {
			return r.WithContext(balancer.WithHashKey(r.Context(), k))
		}},
		{"source IP", balancer.HashPolicy{SourceIP: true}, func(r *http.Request, k string) *http.Request {
			// A forwarded server request keeps its RemoteAddr: the port does not count.
			r.RemoteAddr = fmt.Sprintf("10.9.%s:%d", k, 1000+len(r.Header))
			return r
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHashRig(t, 3, hashing(balancer.PolicyMaglev, c.policy))
			owners := map[string]bool{}
			for k := range 30 {
				key := fmt.Sprintf("%d.%d", k/8, k%8+1) // also a valid IP tail for "source IP"
				var first string
				for i := range 3 {
					got := h.send(t, "/", func(r *http.Request) {
						if i == 1 {
							r.Header.Set("X-Noise", "1") // other parts of the request do not count
						}
						*r = *c.set(r, key)
					})
					if i == 0 {
						first = got
					}
					assert.Equal(t, first, got, "key %s", key)
				}
				owners[first] = true
			}
			assert.Greater(t, len(owners), 1, "30 keys all on one endpoint")
			unkeyed := map[string]bool{}
			for range 30 {
				unkeyed[h.send(t, "/", nil)] = true
			}
			assert.Greater(t, len(unkeyed), 1, "requests without a key are spread at random")
		})
	}
}

// TestHTTPRouteHashPolicyOverridesDestination: a route's hashPolicy replaces the
// destination's for the requests it matches; the others keep the destination's.
func TestHTTPRouteHashPolicyOverridesDestination(t *testing.T) {
	cfg, err := route.ParseConfig([]byte(`
routes:
  - name: by-b
    match: {path: {prefix: /r}}
    hashPolicy: [{header: x-b}]
`))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	h := newHashRig(t, 4, hashing(balancer.PolicyRingHash, balancer.HashPolicy{Header: "x-a"}), middleware.WithRoutes(router))
	both := func(a, b string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("X-A", a); r.Header.Set("X-B", b) }
	}
	spread := func(path string, vary func(i int) func(*http.Request)) int {
		seen := map[string]bool{}
		for i := range 40 {
			seen[h.send(t, path, vary(i))] = true
		}
		return len(seen)
	}
	fixedB := func(i int) func(*http.Request) { return both(fmt.Sprint("a", i), "b") }
	fixedA := func(i int) func(*http.Request) { return both("a", fmt.Sprint("b", i)) }
	assert.Equal(t, 1, spread("/r/x", fixedB), "the route hashes on x-b only")
	assert.Greater(t, spread("/r/x", fixedA), 1, "the route ignores x-a")
	assert.Equal(t, 1, spread("/other", fixedA), "unrouted requests hash on the destination's x-a")
	assert.Greater(t, spread("/other", fixedB), 1, "unrouted requests ignore x-b")
}

// TestHTTPHashingSkipsDownEndpoint: when the endpoint a key maps to is down, its requests
// still succeed (the retry, and once the endpoint is ejected the first attempt, walk on to
// the next endpoint of the table), all on one alternative, while the other keys stay put.
func TestHTTPHashingSkipsDownEndpoint(t *testing.T) {
	for _, pol := range hashingPolicies {
		t.Run(string(pol), func(t *testing.T) {
			h := newHashRig(t, 3, hashing(pol, balancer.HashPolicy{Header: "x-user"}), middleware.WithoutBreaker())
			const keys = 60
			before := make([]string, keys)
			send := func(k int) string { return h.send(t, "/", header("X-User", fmt.Sprint("user-", k))) }
			for k := range keys {
				before[k] = send(k)
			}
			victim := before[0]
			h.servers[victim[1]-'0'].Close() // connections to it are refused from now on
			alt := map[int]string{}
			for range 3 {
				for k := range keys {
					got := send(k)
					if before[k] != victim {
						assert.Equal(t, before[k], got, "key %d", k)
						continue
					}
					assert.NotEqual(t, victim, got)
					if a, ok := alt[k]; ok {
						assert.Equal(t, a, got, "key %d sticks to one alternative", k)
					}
					alt[k] = got
				}
			}
			assert.NotEmpty(t, alt)
		})
	}
}

// TestHTTPHashingSkipsBreakerOpenEndpoint: once the breaker of a key's endpoint opens (the
// endpoint answers 500, which neither ejects it nor is retried by default), the key's requests
// go to the next endpoint of the table or ring, all to one alternative, and the open endpoint
// gets none; the other keys stay put.
func TestHTTPHashingSkipsBreakerOpenEndpoint(t *testing.T) {
	for _, pol := range hashingPolicies {
		t.Run(string(pol), func(t *testing.T) {
			h := newHashRig(t, 3, hashing(pol, balancer.HashPolicy{Header: "x-user"}),
				middleware.WithBreaker(breaker.Config{MinimumVolume: 3, OpenDelay: time.Minute}))
			const keys = 60
			before := make([]string, keys)
			key := func(k int) func(*http.Request) { return header("X-User", fmt.Sprint("user-", k)) }
			for k := range keys {
				before[k] = h.send(t, "/", key(k))
			}
			victim := before[0]
			h.failing[victim[1]-'0'].Store(true)
			// Until the breaker opens, key 0's requests reach the victim and get its 500.
			deadline := time.Now().Add(10 * time.Second)
			for {
				name, code := h.sendStatus(t, "/", key(0))
				if code == http.StatusOK {
					require.NotEqual(t, victim, name)
					break
				}
				require.Equal(t, victim, name)
				require.True(t, time.Now().Before(deadline), "the breaker never opened")
			}
			alt := map[int]string{}
			for range 3 {
				for k := range keys {
					got := h.send(t, "/", key(k))
					if before[k] != victim {
						assert.Equal(t, before[k], got, "key %d", k)
						continue
					}
					assert.NotEqual(t, victim, got)
					if a, ok := alt[k]; ok {
						assert.Equal(t, a, got, "key %d sticks to one alternative", k)
					}
					alt[k] = got
				}
			}
			assert.NotEmpty(t, alt)
		})
	}
}
