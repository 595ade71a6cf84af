package middleware_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/route/reload"
)

// The first document: a policy of each kind set one way...
const dynamicDoc1 = `
routes: []
destinations:
  flaky:
    retry: {maxRetries: 1, backoffBase: 1ms, backoffMax: 2ms}
  slow:
    timeout: 50ms
  hedged:
    retry: {maxRetries: 1, backoffBase: 1ms, backoffMax: 2ms}
  brk:
    disableBreaker: true
    retry: {disable: true}
  lb:
    balancer: {policy: peak_ewma}
`

// ...and the second, the other way.
const dynamicDoc2 = `
routes: []
destinations:
  flaky:
    retry: {maxRetries: 3, backoffBase: 1ms, backoffMax: 2ms}
  slow:
    timeout: 5s
  hedged:
    hedge: {delay: 20ms}
  brk:
    breaker: {minimumVolume: 2, failureRateThreshold: 50, openDelay: 1m}
    retry: {disable: true}
  lim:
    limits: {rate: 0.01, burst: 1}
  lb:
    balancer: {policy: round_robin}
  inflight:
    balancer: {policy: round_robin}
    timeout: 10s
`

type dynamicFixture struct {
	flaky, slow, hedgedA, hedgedB, brk, lim, lbSlow, lbFast, inflight *faultbackend.Backend
	tr                                                                *middleware.Transport
	client                                                            *http.Client
	results                                                           chan reload.Result
	path                                                              string
}

func newDynamicFixture(t *testing.T) *dynamicFixture {
	f := &dynamicFixture{
		flaky: faultbackend.New(t), slow: faultbackend.New(t), hedgedA: faultbackend.New(t), hedgedB: faultbackend.New(t),
		brk: faultbackend.New(t), lim: faultbackend.New(t), lbSlow: faultbackend.New(t), lbFast: faultbackend.New(t),
		inflight: faultbackend.New(t), results: make(chan reload.Result, 16),
	}
	f.flaky.Set(faultbackend.Status(503))
	f.slow.Set(faultbackend.Slow(300 * time.Millisecond))
	f.hedgedA.Set(faultbackend.Slow(150 * time.Millisecond))
	f.hedgedB.Set(faultbackend.Slow(150 * time.Millisecond))
	f.brk.Set(faultbackend.Status(503))
	f.lbSlow.Set(faultbackend.Slow(150 * time.Millisecond))
	f.inflight.Set(faultbackend.Slow(500 * time.Millisecond))
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"flaky": {{Addr: f.flaky.Addr()}}, "slow": {{Addr: f.slow.Addr()}},
		"hedged": {{Addr: f.hedgedA.Addr()}, {Addr: f.hedgedB.Addr()}},
		"brk":    {{Addr: f.brk.Addr()}}, "lim": {{Addr: f.lim.Addr()}},
		"lb":       {{Addr: f.lbSlow.Addr()}, {Addr: f.lbFast.Addr()}},
		"inflight": {{Addr: f.inflight.Addr()}},
	})
	f.path = filepath.Join(t.TempDir(), "mesh.yaml")
	require.NoError(t, os.WriteFile(f.path, []byte(dynamicDoc1), 0o600))
	cfg, err := middleware.NewConfig(middleware.Document{})
	require.NoError(t, err)
	w, err := reload.File(cfg, f.path, reload.WithHook(func(r reload.Result) { f.results <- r }))
	require.NoError(t, err)
	base := &http.Transport{MaxIdleConnsPerHost: 16}
	f.tr, err = middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithConfig(cfg))
	require.NoError(t, err)
	f.client = &http.Client{Transport: f.tr}
	t.Cleanup(func() {
		require.NoError(t, w.Close())
		require.NoError(t, f.tr.Close())
		base.CloseIdleConnections()
	})
	return f
}

func (f *dynamicFixture) get(t *testing.T, service string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t, 20*time.Second), "GET", "http://"+service+"/", nil)
	require.NoError(t, err)
	resp, err := f.client.Do(req)
	if resp != nil {
		resp.Body.Close()
	}
	return resp, err
}

func (f *dynamicFixture) status(t *testing.T, service string) int {
	t.Helper()
	resp, err := f.get(t, service)
	require.NoError(t, err, service)
	return resp.StatusCode
}

// write replaces the watched file with doc and returns the reloader's report of it.
func (f *dynamicFixture) write(t *testing.T, doc string) reload.Result {
	t.Helper()
	tmp := f.path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(doc), 0o600))
	require.NoError(t, os.Rename(tmp, f.path))
	select {
	case r := <-f.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the file reloader reported nothing within 10 s")
		return reload.Result{}
	}
}

// TestConfigReloadAppliesDestinationPolicies loads one document with a policy of each kind
// (retries, timeout, hedging, breaker, limits, balancer) from a file, checks that live
// traffic to real loopback servers runs under it, rewrites the file with every policy
// changed while requests are in flight, and checks that new requests run under the new
// policies, that the requests in flight all finish, and that an invalid document is refused
// with the last good policies kept.
func TestConfigReloadAppliesDestinationPolicies(t *testing.T) {
	f := newDynamicFixture(t)

	// Under the first document.
	assert.Equal(t, 503, f.status(t, "flaky"))
	assert.EqualValues(t, 2, f.flaky.Attempts(), "maxRetries 1: two attempts")
	_, err := f.get(t, "slow")
	assert.Error(t, err, "timeout 50ms against a 300ms answer")
	assert.Equal(t, 200, f.status(t, "hedged"))
	assert.Zero(t, f.tr.Stats().Hedges, "no hedging yet")
	for range 3 {
		assert.Equal(t, 503, f.status(t, "brk"), "breakers off: every request reaches the server")
	}
	for range 3 {
		assert.Equal(t, 200, f.status(t, "lim"), "no limit yet")
	}
	for range 4 { // let peak EWMA measure both endpoints
		f.status(t, "lb")
	}
	f.lbSlow.Reset()
	f.lbFast.Reset()
	for range 10 {
		assert.Equal(t, 200, f.status(t, "lb"))
	}
	assert.LessOrEqual(t, f.lbSlow.Attempts(), int64(3), "peak EWMA avoids the 150ms endpoint")

	// Requests in flight on a destination whose balancer the reload replaces.
	var wg sync.WaitGroup
	inflight := make([]int, 4)
	errs := make([]error, 4)
	for i := range inflight {
		wg.Go(func() {
			resp, err := f.get(t, "inflight")
			errs[i] = err
			if resp != nil {
				inflight[i] = resp.StatusCode
			}
		})
	}
	require.NoError(t, f.inflight.Wait(ctxFor(t, 10*time.Second), func(s faultbackend.Stats) bool { return s.Attempts == 4 }))

	res := f.write(t, dynamicDoc2)
	require.NoError(t, res.Err)
	assert.EqualValues(t, 3, res.Version, "NewConfig's document, the file's first, its second")

	wg.Wait()
	for i := range inflight {
		assert.NoError(t, errs[i], "request %d in flight during the reload", i)
		assert.Equal(t, 200, inflight[i], "request %d in flight during the reload", i)
	}
	assert.EqualValues(t, 4, f.inflight.Attempts(), "in-flight requests were neither lost nor sent again")

	checkSecondDocument(t, f)

	// An invalid document is refused, naming the field and its line; the policies stay.
	bad := strings.Replace(dynamicDoc2, "hedge: {delay: 20ms}", "hedge: {delay: 20ms, attempts: 2}", 1)
	res = f.write(t, bad)
	require.Error(t, res.Err)
	assert.Contains(t, res.Err.Error(), `destinations.hedged.hedge.attempts: unknown field "attempts"`)
	assert.Contains(t, res.Err.Error(), "line 9")
	assert.True(t, errors.Is(res.Err, route.ErrInvalidConfig))
	_, err = f.get(t, "lim")
	assert.ErrorIs(t, err, ratelimit.ErrLimited, "the last good limits stay")
	flaky := f.flaky.Attempts()
	assert.Equal(t, 503, f.status(t, "flaky"))
	assert.EqualValues(t, 4, f.flaky.Attempts()-flaky, "the last good retries stay")
}

// checkSecondDocument checks that new requests run under dynamicDoc2.
func checkSecondDocument(t *testing.T, f *dynamicFixture) {
	flaky := f.flaky.Attempts()
	assert.Equal(t, 503, f.status(t, "flaky"))
	assert.EqualValues(t, 4, f.flaky.Attempts()-flaky, "maxRetries 3: four attempts")

	assert.Equal(t, 200, f.status(t, "slow"), "timeout 5s")

	assert.Equal(t, 200, f.status(t, "hedged"))
	assert.GreaterOrEqual(t, f.tr.Stats().Hedges, int64(1), "hedge after 20ms against 150ms answers")

	brk := f.brk.Attempts()
	for range 2 {
		assert.Equal(t, 503, f.status(t, "brk"))
	}
	_, err := f.get(t, "brk")
	assert.ErrorIs(t, err, breaker.ErrOpen, "the breaker opens after 2 failures of 2")
	assert.EqualValues(t, 2, f.brk.Attempts()-brk, "the open breaker kept the third request from the server")

	assert.Equal(t, 200, f.status(t, "lim"))
	_, err = f.get(t, "lim")
	assert.ErrorIs(t, err, ratelimit.ErrLimited, "rate 0.01/s, burst 1")

	f.lbSlow.Reset()
	f.lbFast.Reset()
	for range 10 {
		assert.Equal(t, 200, f.status(t, "lb"))
	}
	assert.EqualValues(t, 5, f.lbSlow.Attempts(), "round robin: every other request, slow or not")
	assert.EqualValues(t, 5, f.lbFast.Attempts())
}

func TestParseDocumentErrors(t *testing.T) {
	for doc, want := range map[string]string{
		"destinations:\n  payments:\n    retry: {maxRetries: 2}\n    breaker: {openDelay: 5000000000}\n": `destinations.payments.breaker.openDelay: want a duration string such as "250ms" or "2s", got the bare number 5000000000 (write the unit) (line 4`,
		"destinations:\n  payments:\n    retry: {budgetRatio: 0.5}\n":                                    "destinations.payments.retry: the retry budget",
		"destinations:\n  payments:\n    limits: {burst: 3}\n":                                           "destinations.payments.limits: set rate or maxConcurrent",
		"destinations:\n  payments:\n    balancer: {policy: fastest}\n":                                  "destinations.payments.balancer: balancer: Policy must be one of",
		"destinations:\n  payments:\n    timeout: -1s\n":                                                 "destinations.payments.timeout: must not be negative",
		"routes: [{split: [{service: a, weight: 1.5}]}]\n":                                               "routes[0].split[0].weight: must be a whole number",
		"{}": "empty document",
	} {
		_, err := middleware.ParseDocument([]byte(doc))
		if assert.Error(t, err, doc) {
			assert.Contains(t, err.Error(), want, doc)
			assert.ErrorIs(t, err, route.ErrInvalidConfig, doc)
		}
	}
	doc, err := middleware.ParseDocument([]byte(dynamicDoc2))
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, doc.Destinations["slow"].Timeout)
	b, err := doc.MarshalJSON()
	require.NoError(t, err)
	assert.Contains(t, string(b), `"timeout":"5s"`)
	again, err := middleware.ParseDocument(b)
	require.NoError(t, err, string(b))
	assert.Equal(t, doc.Destinations, again.Destinations)
}
