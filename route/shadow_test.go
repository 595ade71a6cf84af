package route_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyless/proxyless/route"
)

// shadowPolicy compiles a one-route table whose shadow goes to addr and returns its policy.
func shadowPolicy(t testing.TB, addr, extra string) *route.ShadowPolicy {
	t.Helper()
	tbl := mustCompile(t, fmt.Sprintf(`
routes:
  - name: mirrored
    match: {}
    shadow: {destination: {service: %q}%s}
`, addr, extra))
	return tbl.Routes()[0].Shadow()
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestShadowNeverBlocksPrimaryAndDropsOverCap(t *testing.T) {
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer primary.Close()
	release := make(chan struct{})
	var arrived atomic.Int64
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release) // runs before hang.Close

	pol := shadowPolicy(t, hang.Listener.Addr().String(), ", maxConcurrency: 4, timeout: 30s")
	sh := route.NewShadower(hang.Client().Transport, 100)
	defer sh.Close()

	const n = 50
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		req, _ := http.NewRequestWithContext(ctx, "GET", primary.URL+"/x", nil)
		p := sh.Mirror(req, pol)
		if i < 4 && p == nil {
			t.Fatalf("request %d not mirrored", i)
		}
		resp, err := primary.Client().Do(req)
		if err != nil {
			t.Fatal(err) // the primary finished although every shadow hangs
		}
		p.Primary(resp, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if st := sh.Stats(); st.InFlight > 4 {
			t.Fatalf("in flight %d over the cap of 4", st.InFlight)
		}
	}
	waitFor(t, "4 shadows to arrive", func() bool { return arrived.Load() == 4 })
	st := sh.Stats()
	if st.Mirrored != 4 || st.Dropped != n-4 || st.MaxInFlight != 4 {
		t.Errorf("stats %+v, want 4 mirrored, %d dropped, max in flight 4", st, n-4)
	}
	// Close cancels the hanging copies and waits for them.
	sh.Close()
	st = sh.Stats()
	if st.InFlight != 0 || st.Errors != 4 {
		t.Errorf("after Close: %+v", st)
	}
	if p := sh.Mirror(httptest.NewRequest("GET", "/", nil), pol); p != nil {
		t.Error("mirrored after Close")
	}
}

func TestShadowComparesResponses(t *testing.T) {
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") }))
	defer primary.Close()
	var mu sync.Mutex
	var hosts, marks []string
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		marks = append(marks, r.Header.Get(route.ShadowHeader))
		mu.Unlock()
		switch r.URL.Path {
		case "/same":
			io.WriteString(w, "hello")
		case "/body":
			io.WriteString(w, "HELLO")
		default:
			w.WriteHeader(500)
		}
	}))
	defer shadow.Close()
	pol := shadowPolicy(t, shadow.Listener.Addr().String(), ", compareBody: true")
	sh := route.NewShadower(nil, 0)
	defer sh.Close()
	var heard []string // what OnMismatch reported: route and shadow of each mismatch
	sh.OnMismatch(func(route, shadow string) {
		mu.Lock()
		heard = append(heard, route+" "+shadow)
		mu.Unlock()
	})
	for _, path := range []string{"/same", "/body", "/status"} {
		req, _ := http.NewRequest("GET", primary.URL+path, nil)
		p := sh.Mirror(req, pol)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		p.Primary(resp, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" {
			t.Fatalf("primary body %q: the shadow must not change it", b)
		}
	}
	waitFor(t, "3 comparisons", func() bool { st := sh.Stats(); return st.Matches+st.Mismatches == 3 })
	if st := sh.Stats(); st.Matches != 1 || st.Mismatches != 2 {
		t.Errorf("stats %+v, want 1 match and 2 mismatches", st)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "mirrored " + shadow.Listener.Addr().String()
	if len(heard) != 2 || heard[0] != want || heard[1] != want {
		t.Errorf("OnMismatch heard %q, want %q twice", heard, want)
	}
	wantHost := strings.Replace(strings.TrimPrefix(primary.URL, "http://"), ":", "-shadow:", 1)
	for i := range hosts {
		if hosts[i] != wantHost || marks[i] != "true" {
			t.Errorf("shadow saw Host %q, marker %q; want %q, \"true\"", hosts[i], marks[i], wantHost)
		}
	}
}

func TestShadowBodies(t *testing.T) {
	got := make(chan string, 10)
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer shadow.Close()
	pol := shadowPolicy(t, shadow.Listener.Addr().String(), ", maxBodyBytes: 16, allowNonIdempotent: true")
	sh := route.NewShadower(nil, 0)
	defer sh.Close()

	small, _ := http.NewRequest("POST", "http://primary.invalid/", strings.NewReader("small body"))
	p := sh.Mirror(small, pol)
	if p == nil {
		t.Fatal("small body not mirrored")
	}
	p.Primary(nil, io.ErrUnexpectedEOF) // the primary failed: nothing to compare
	select {
	case b := <-got:
		if b != "small body" {
			t.Errorf("shadow body %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shadow never arrived")
	}
	// The primary can still read its own body.
	if b, _ := io.ReadAll(small.Body); string(b) != "small body" {
		t.Errorf("primary body %q", b)
	}
	big, _ := http.NewRequest("POST", "http://primary.invalid/", bytes.NewReader(make([]byte, 17)))
	if sh.Mirror(big, pol) != nil {
		t.Error("body over the cap mirrored")
	}
	noReplay, _ := http.NewRequest("PUT", "http://primary.invalid/", io.NopCloser(strings.NewReader("x")))
	if sh.Mirror(noReplay, pol) != nil {
		t.Error("body without GetBody mirrored")
	}
	waitFor(t, "the copy to finish", func() bool { return sh.Stats().InFlight == 0 })
	if st := sh.Stats(); st.TooLarge != 2 || st.Unpaired != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestShadowDecision(t *testing.T) {
	tbl := mustCompile(t, `
routes:
  - name: all
    match: {path: {prefix: /all}}
    shadow: {destination: {service: s}, allowNonIdempotent: true}
  - name: sampled
    match: {path: {prefix: /sampled}}
    shadow: {destination: {service: s}, percent: 20}
`)
	count := func(method, path string) int {
		n := 0
		for range 5000 {
			rq := route.Request{Method: method, Path: path}
			if d, _ := tbl.Lookup(&rq); d.Mirror {
				n++
			}
		}
		return n
	}
	if n := count("POST", "/all"); n != 5000 {
		t.Errorf("allowNonIdempotent POST mirrored %d of 5000", n)
	}
	if n := count("POST", "/sampled"); n != 0 {
		t.Errorf("POST mirrored %d times without allowNonIdempotent", n)
	}
	if n := count("GET", "/sampled"); n < 800 || n > 1200 {
		t.Errorf("20%% sample mirrored %d of 5000", n)
	}
}
