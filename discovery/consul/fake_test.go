package consul

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeConsul is a loopback HTTP server that speaks just enough of Consul's health API
// (GET /v1/health/service/<name>) to produce faults a real agent cannot produce on demand:
// an index that goes backwards or is 0, answers that return at once forever, malformed JSON,
// ports out of range, server errors. It is a fake for that reason only; everything a real
// agent can do is tested against a real agent in integration_test.go.
type fakeConsul struct {
	srv *httptest.Server

	mu      sync.Mutex
	reqs    []fakeReq                         // guarded by mu
	respond func(n int, req fakeReq) fakeResp // guarded by mu; n counts requests from 0
}

type fakeReq struct {
	Service string
	Index   uint64
	Wait    time.Duration
	Stale   bool // the query allowed stale reads
	At      time.Time
}

type fakeResp struct {
	Status int           // default 200
	Index  uint64        // X-Consul-Index
	Body   string        // raw JSON
	Block  time.Duration // hold the answer this long (or the query's wait, or until cancelled)
	Header map[string]string
}

func newFakeConsul(t *testing.T, respond func(n int, req fakeReq) fakeResp) *fakeConsul {
	t.Helper()
	f := &fakeConsul{respond: respond}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeConsul) serve(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	req := fakeReq{Service: name, At: time.Now()}
	req.Index, _ = strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	req.Wait, _ = time.ParseDuration(r.URL.Query().Get("wait"))
	req.Stale = r.URL.Query().Has("stale")
	f.mu.Lock()
	n := len(f.reqs)
	f.reqs = append(f.reqs, req)
	respond := f.respond
	f.mu.Unlock()

	resp := respond(n, req)
	if resp.Block > 0 {
		block := resp.Block
		if req.Wait > 0 && req.Wait < block {
			block = req.Wait
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(block):
		}
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(resp.Index, 10))
	for k, v := range resp.Header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.Status)
	_, _ = w.Write([]byte(resp.Body))
}

func (f *fakeConsul) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.reqs...)
}

// waitRequests polls until the fake has seen n requests.
func (f *fakeConsul) waitRequests(t *testing.T, n int) []fakeReq {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if r := f.requests(); len(r) >= n {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake consul saw %d requests, want %d", len(f.requests()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeConsul) addr() string { return f.srv.Listener.Addr().String() }

// entriesJSON renders health entries for instances at 127.0.0.1 on the given ports.
func entriesJSON(ports ...int) string {
	var b strings.Builder
	b.WriteString("[")
	for i, p := range ports {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"Node":{"Node":"n1","Address":"127.0.0.1","Meta":{"zone":"z-node"}},`+
			`"Service":{"ID":"s-%d","Service":"web","Address":"","Port":%d,"Tags":["v1"],"Meta":{"version":"1"},"Weights":{"Passing":%d,"Warning":1}},`+
			`"Checks":[{"Status":"passing"}]}`, p, p, i+1)
	}
	b.WriteString("]")
	return b.String()
}
