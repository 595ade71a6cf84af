package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/internal/redistest"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	rlredis "github.com/proxyless/proxyless/ratelimit/redis"
	"github.com/proxyless/proxyless/route/reload"
)

var _ reload.Target = (*auth.Consumers)(nil)

// keyStatus makes one request with consumer's key and returns its status, or an error for
// anything but 200 and 429. It may run outside the test's goroutine.
func keyStatus(c *http.Client, url, consumer string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-Key", apiKey(consumer))
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
		return 0, fmt.Errorf("%s: status %d", consumer, resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// send is keyStatus for the test's goroutine: it fails the test on an error.
func send(t *testing.T, c *http.Client, url, consumer string) int {
	t.Helper()
	code, err := keyStatus(c, url, consumer)
	require.NoError(t, err)
	return code
}

// Three consumers on two plans, each sending faster than its plan allows for 10 s: each gets
// its plan's rate × 10 s plus its burst, within one request, whatever the others do.
func TestConsumersPerSecondQuotasOver10s(t *testing.T) {
	reg := newRegistry(t, `plans:
  gold: {perSecond: 10, burst: 5}
  silver: {perSecond: 4, burst: 2}
consumers:
  - {name: alice, plan: gold, keys: ["{alice}"]}
  - {name: bob, plan: gold, keys: ["{bob}"]}
  - {name: carol, plan: silver, keys: ["{carol}"]}
`, "alice", "bob", "carol")
	srv := startHTTP(t, consumerApp, middleware.WithConsumers(reg, middleware.ConsumerPolicy{}))
	want := map[string]int{"alice": 10*10 + 5, "bob": 10*10 + 5, "carol": 4*10 + 2}

	const window = 10 * time.Second
	const maxRequests = 4000 // per consumer: 200/s at most
	var mu sync.Mutex
	admitted, sent := map[string]int{}, map[string]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for name := range want {
		wg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			n, ok := 0, 0
			for ; n < maxRequests; n++ {
				elapsed := time.Since(start)
				if elapsed >= window+20*time.Millisecond {
					break
				}
				if elapsed >= window-10*time.Millisecond {
					// The last request goes just after the window, so that the 10 s of
					// refill are all there to take.
					time.Sleep(window + 20*time.Millisecond - elapsed)
				}
				code, err := keyStatus(srv.Client(), srv.URL, name)
				if err != nil {
					t.Error(err)
					break
				}
				if code == http.StatusOK {
					ok++
				}
				<-tick.C
			}
			mu.Lock()
			admitted[name], sent[name] = ok, n
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("admitted %v of %v sent in %v", admitted, sent, time.Since(start).Round(time.Millisecond))
	for name, w := range want {
		assert.InDelta(t, w, admitted[name], 1, "%s: %d admitted of %d sent; want rate × 10 s + burst = %d", name, admitted[name], sent[name], w)
		assert.Greater(t, sent[name], 2*w, "%s sent faster than its plan allows", name)
	}
}

// redisDaily returns a DailyLimiter keeping each plan's daily quota in Redis at addr, through
// a client of its own (one per gateway instance).
func redisDaily(t *testing.T, addr string, cfg rlredis.Config) func(string, ratelimit.Quota) (ratelimit.Limiter, error) {
	client := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	return func(plan string, q ratelimit.Quota) (ratelimit.Limiter, error) {
		c := cfg
		c.Default, c.Prefix = q, "test:consumers:day:"+plan+":"
		return rlredis.New(client, c)
	}
}

// hammer sends requests for consumer from workers goroutines to each server until each
// worker has seen 20 refusals in a row (or maxEach requests), and returns the requests each
// server admitted.
func hammer(t *testing.T, servers []*httptest.Server, consumer string, workers, maxEach int) []int {
	admitted := make([]int, len(servers))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, srv := range servers {
		for range workers {
			wg.Go(func() {
				ok, streak := 0, 0
				for n := 0; n < maxEach && streak < 20; n++ {
					code, err := keyStatus(srv.Client(), srv.URL, consumer)
					if err != nil {
						t.Error(err)
						break
					}
					if code == http.StatusOK {
						ok, streak = ok+1, 0
					} else {
						streak++
					}
				}
				mu.Lock()
				admitted[i] += ok
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return admitted
}

// Two gateway instances share each consumer's daily quota through one Redis: together they
// admit the plan's PerDay (±2 %), where two local quotas admit twice as much.
func TestConsumersDailyQuotaSharedThroughRedis(t *testing.T) {
	const perDay = 400
	doc := fmt.Sprintf("plans: {metered: {perDay: %d}}\nconsumers:\n- {name: alice, plan: metered, keys: [\"{alice}\"]}\n- {name: bob, plan: metered, keys: [\"{bob}\"]}\n", perDay)
	reg := newRegistry(t, doc, "alice", "bob")
	newGateways := func(daily func() func(string, ratelimit.Quota) (ratelimit.Limiter, error)) []*httptest.Server {
		var out []*httptest.Server
		for range 2 {
			out = append(out, startHTTP(t, consumerApp, middleware.WithConsumers(reg, middleware.ConsumerPolicy{DailyLimiter: daily()})))
		}
		return out
	}

	t.Run("redis", func(t *testing.T) {
		r := redistest.ForTest(t)
		gateways := newGateways(func() func(string, ratelimit.Quota) (ratelimit.Limiter, error) {
			return redisDaily(t, r.Addr(), rlredis.Config{Timeout: time.Second})
		})
		got := hammer(t, gateways, "alice", 2, 3*perDay)
		total := got[0] + got[1]
		t.Logf("admitted by the two instances through Redis: %v", got)
		assert.InEpsilon(t, perDay, total, 0.02, "admitted %v by the two instances", got)
		assert.Positive(t, got[0], "both instances served alice")
		assert.Positive(t, got[1], "both instances served alice")
		assert.Equal(t, http.StatusOK, send(t, gateways[0].Client(), gateways[0].URL, "bob"), "bob's daily quota is his own")
	})
	t.Run("local", func(t *testing.T) {
		// The control: without Redis each instance keeps a quota of its own.
		gateways := newGateways(func() func(string, ratelimit.Quota) (ratelimit.Limiter, error) { return nil })
		got := hammer(t, gateways, "alice", 2, 3*perDay)
		t.Logf("admitted by the two instances, each on its own: %v", got)
		assert.InEpsilon(t, 2*perDay, got[0]+got[1], 0.02, "admitted %v by the two instances", got)
	})
}

// With Redis stopped, the gateway keeps serving: the daily quota is decided by the Redis
// limiter's local fallback, which still limits; once Redis is back, it decides again.
func TestConsumersRedisDownKeepsServing(t *testing.T) {
	r := redistest.ForTest(t)
	reg := newRegistry(t, "plans: {metered: {perDay: 30}}\nconsumers: [{name: alice, plan: metered, keys: [\"{alice}\"]}]", "alice")
	srv := startHTTP(t, consumerApp, middleware.WithConsumers(reg, middleware.ConsumerPolicy{
		DailyLimiter: redisDaily(t, r.Addr(), rlredis.Config{Timeout: 200 * time.Millisecond, ProbeInterval: 100 * time.Millisecond}),
	}))
	check := goredis.NewClient(&goredis.Options{Addr: r.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = check.Close() })
	ctx := ctxFor(t, 30*time.Second)
	bucketInRedis := func() bool {
		n, err := check.Exists(ctx, "test:consumers:day:metered:alice").Result()
		return err == nil && n == 1
	}

	for range 10 {
		require.Equal(t, http.StatusOK, send(t, srv.Client(), srv.URL, "alice"))
	}
	require.True(t, bucketInRedis(), "Redis decided while it was up")

	require.NoError(t, r.Stop())
	codes := map[int]int{}
	for range 40 {
		codes[send(t, srv.Client(), srv.URL, "alice")]++
	}
	assert.Equal(t, map[int]int{http.StatusOK: 30, http.StatusTooManyRequests: 10}, codes,
		"served by the local fallback, a full quota of its own that still limits")

	require.NoError(t, r.Restart()) // an empty Redis: alice's bucket there is full again
	require.Eventually(t, func() bool {
		return send(t, srv.Client(), srv.URL, "alice") == http.StatusOK && bucketInRedis()
	}, 10*time.Second, 50*time.Millisecond, "Redis decides again once it is back")
}

// A key moved to revokedKeys in the registry file is refused from the next reload on; a bad
// file is refused and the last good registry keeps serving.
func TestConsumersRevokedKeyRefusedWithinOneReload(t *testing.T) {
	const v1 = "plans: {gold: {perSecond: 1000}}\nconsumers:\n- {name: alice, plan: gold, keys: [\"{alice}\"]}\n"
	const v2 = "plans: {gold: {perSecond: 1000}}\nconsumers:\n- {name: alice, plan: gold, keys: [\"{alice-new}\"], revokedKeys: [\"{alice}\"]}\n"
	names := []string{"alice", "alice-new"}
	path := filepath.Join(t.TempDir(), "consumers.yaml")
	write := func(doc string) { // as editors and ConfigMaps do: a new file renamed over the old
		tmp := path + ".tmp"
		require.NoError(t, os.WriteFile(tmp, []byte(doc), 0o600))
		require.NoError(t, os.Rename(tmp, path))
	}
	write(registryDoc(v1, names...))

	reg, err := auth.NewConsumers(auth.ConsumersConfig{})
	require.NoError(t, err)
	results := make(chan reload.Result, 16)
	w, err := reload.File(reg, path, reload.WithHook(func(r reload.Result) { results <- r }))
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	srv := startHTTP(t, consumerApp, middleware.WithConsumers(reg, middleware.ConsumerPolicy{}))
	get := func(who string) int {
		code, _, _ := do(t, srv.Client(), srv.URL, "X-API-Key", apiKey(who))
		return code
	}
	require.Equal(t, http.StatusOK, get("alice"))
	require.Equal(t, http.StatusUnauthorized, get("alice-new"))

	next := func() reload.Result {
		select {
		case r := <-results:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("no reload within 10 s")
			return reload.Result{}
		}
	}
	write(registryDoc(v2, names...))
	res := next()
	require.NoError(t, res.Err)
	assert.EqualValues(t, 3, res.Version)
	assert.Equal(t, http.StatusUnauthorized, get("alice"), "revoked by the one reload")
	assert.Equal(t, http.StatusOK, get("alice-new"))

	write("consumers:\n- {name: alice, plan: platinum}\n")
	res = next()
	require.ErrorIs(t, res.Err, auth.ErrInvalidConsumers)
	assert.Contains(t, res.Err.Error(), `consumers[0].plan: unknown plan "platinum"`)
	assert.Equal(t, http.StatusOK, get("alice-new"), "the last good registry serves")
	assert.Equal(t, http.StatusUnauthorized, get("alice"))
}
