package middleware_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
)

// swapDoc routes host "front" to the service to and gives to three attempts and the other
// service one: a request routed by one document and run under the other's destination
// policies makes one attempt instead of three.
func swapDoc(t *testing.T, to, other string) middleware.Document {
	t.Helper()
	doc, err := middleware.ParseDocument([]byte(`
routes:
  - match: {hosts: [front]}
    destination: {service: ` + to + `}
destinations:
  ` + to + `:
    disableBreaker: true
    retry: {maxRetries: 2, backoffBase: 1ms, backoffMax: 1ms}
  ` + other + `:
    disableBreaker: true
    retry: {disable: true}
`))
	require.NoError(t, err)
	return doc
}

// TestConfigUpdateSwapsRoutesAndDestinationsTogether swaps a Config between two documents
// whose route and destination policy must agree while requests run, and checks that every
// request made exactly the attempts its route's document gives its destination.
func TestConfigUpdateSwapsRoutesAndDestinationsTogether(t *testing.T) {
	a, b := faultbackend.New(t), faultbackend.New(t)
	a.Set(faultbackend.Status(503))
	b.Set(faultbackend.Status(503))
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"svca": {{Addr: a.Addr()}}, "svcb": {{Addr: b.Addr()}},
	})
	docA, docB := swapDoc(t, "svca", "svcb"), swapDoc(t, "svcb", "svca")
	cfg, err := middleware.NewConfig(docA)
	require.NoError(t, err)
	base := &http.Transport{MaxIdleConnsPerHost: 16}
	tr, err := middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithConfig(cfg),
		middleware.WithRetry(middleware.RetryPolicy{BudgetRatio: 1, MinRetriesPerSecond: 1e6}))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, tr.Close())
		base.CloseIdleConnections()
	})
	client := &http.Client{Transport: tr}

	const workers, perWorker = 4, 60
	var done atomic.Bool
	var swaps atomic.Int64
	swapped := make(chan struct{})
	go func() {
		defer close(swapped)
		for i := 0; !done.Load(); i++ {
			doc := docA
			if i%2 == 1 {
				doc = docB
			}
			if err := cfg.Update(doc); err != nil {
				t.Error(err)
				return
			}
			swaps.Add(1)
		}
	}()
	var wg sync.WaitGroup
	var responses atomic.Int64
	for range workers {
		wg.Go(func() {
			for range perWorker {
				req, err := http.NewRequestWithContext(ctxFor(t, 20*time.Second), "GET", "http://front/", nil)
				if !assert.NoError(t, err) {
					return
				}
				resp, err := client.Do(req)
				if !assert.NoError(t, err) {
					return
				}
				resp.Body.Close()
				assert.Equal(t, 503, resp.StatusCode)
				responses.Add(1)
			}
		})
	}
	wg.Wait()
	done.Store(true)
	<-swapped
	require.EqualValues(t, workers*perWorker, responses.Load())
	assert.Greater(t, swaps.Load(), int64(10), "the documents were swapped while requests ran")
	assert.Zero(t, a.Attempts()%3, "svca: every request routed there made the three attempts of its document")
	assert.Zero(t, b.Attempts()%3, "svcb: every request routed there made the three attempts of its document")
	assert.EqualValues(t, 3*workers*perWorker, a.Attempts()+b.Attempts(), "no request ran under the other document's policies")
}
