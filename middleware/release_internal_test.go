package middleware

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyless/proxyless/discovery"
)

// A sweep's release forgets the service in the discovery cache after it dropped the
// transport's lock: a destination made for the same service in between, from the set the
// cache had then, must keep following the service (it re-follows it), not freeze on that
// set. Found by a review; it calls release directly to race it with requests.
func TestReleaseRacingANewDestinationKeepsFollowing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	stale := 0
	for range 100 {
		st := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: addr}}})
		tr, err := NewTransport(nil, WithResolver(st))
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Transport: tr}
		get := func() {
			if resp, err := c.Get("http://svc/"); err == nil {
				resp.Body.Close()
			}
		}
		get()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); tr.release(func(*destination) bool { return true }) }()
		go func() {
			defer wg.Done()
			for range 20 {
				get()
			}
		}()
		wg.Wait()
		get()
		st.Set("svc", []discovery.Endpoint{{Addr: addr}, {Addr: "127.0.0.1:1"}})
		ok := false
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if len(tr.Endpoints("svc")) == 2 {
				ok = true
				break
			}
		}
		if !ok {
			stale++
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if stale > 0 {
		t.Fatalf("destinations that never saw the endpoint update: %d of 100", stale)
	}
}
