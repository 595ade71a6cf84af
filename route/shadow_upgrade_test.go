package route_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyless/proxyless/route"
)

// switchingServer answers every request with 101 Switching Protocols and then holds the
// connection open, sending nothing, until the test ends.
func switchingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var seen atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		<-done
	}))
	t.Cleanup(func() {
		close(done)
		wg.Wait()
		srv.Close()
	})
	return srv, &seen
}

// closeWithin runs sh.Close and fails the test when it takes longer than d.
func closeWithin(t *testing.T, sh *route.Shadower, d time.Duration) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		sh.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(d):
		t.Errorf("Shadower.Close still waiting after %v", d) // the hijacked connections close at cleanup
		<-closed
	}
}

// TestShadowNeverReadsASwitchingProtocolsBody: a shadow answering 101 is not read past the
// status line, so the copy ends within its timeout and Close does not wait on the connection.
func TestShadowNeverReadsASwitchingProtocolsBody(t *testing.T) {
	srv, seen := switchingServer(t)
	primary := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer primary.Close()
	pol := shadowPolicy(t, srv.Listener.Addr().String(), ", timeout: 200ms, compareBody: true")
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	sh := route.NewShadower(base, 4)
	req, _ := http.NewRequestWithContext(context.Background(), "GET", primary.URL+"/", nil)
	p := sh.Mirror(req, pol)
	if p == nil {
		t.Fatal("a plain GET was not mirrored")
	}
	p.Primary(&http.Response{StatusCode: 200, Body: http.NoBody}, nil)
	waitFor(t, "the copy to reach the shadow", func() bool { return seen.Load() == 1 })
	waitFor(t, "the copy to finish", func() bool { return sh.Stats().InFlight == 0 })
	if st := sh.Stats(); st.Mismatches != 1 {
		t.Errorf("stats %+v, want the 101 counted as a mismatch", st)
	}
	closeWithin(t, sh, 5*time.Second)
}

// TestShadowNeverMirrorsAnUpgrade: a request asking to switch protocols is not mirrored, so no
// second connection is opened and handed over behind the caller's back.
func TestShadowNeverMirrorsAnUpgrade(t *testing.T) {
	srv, seen := switchingServer(t)
	pol := shadowPolicy(t, srv.Listener.Addr().String(), ", timeout: 200ms")
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	sh := route.NewShadower(base, 4)
	for _, conn := range []string{"Upgrade", "keep-alive, Upgrade", "upgrade"} {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://primary.invalid/ws", nil)
		req.Header.Set("Connection", conn)
		req.Header.Set("Upgrade", "websocket")
		if p := sh.Mirror(req, pol); p != nil {
			t.Errorf("Connection: %s: an upgrade request was mirrored", conn)
			p.Primary(nil, net.ErrClosed)
		}
	}
	closeWithin(t, sh, 5*time.Second)
	if n := seen.Load(); n != 0 {
		t.Errorf("the shadow saw %d upgrade requests", n)
	}
	if st := sh.Stats(); st.Mirrored != 0 || st.Dropped != 3 {
		t.Errorf("stats %+v, want 3 dropped and none mirrored", st)
	}
}
