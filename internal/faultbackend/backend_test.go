package faultbackend_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/internal/faultbackend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client returns a client with a transport of its own, so that every test
// starts without pooled connections, and no transport retries a request on
// a reused connection behind the test's back.
func client(t *testing.T, timeout time.Duration) *http.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// waitStats waits at most 5 s for cond.
func waitStats(t *testing.T, b *faultbackend.Backend, what string, cond func(faultbackend.Stats) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Wait(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v; stats %+v", what, err, b.Stats())
	}
}

func TestOK(t *testing.T) {
	b := faultbackend.New(t)
	c := client(t, 5*time.Second)

	resp, body, err := get(t, c, b.URL()+"/hello?x=1")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}

	b.Set(faultbackend.OK("second"))
	if _, body, err = get(t, c, b.URL()+"/again"); err != nil || body != "second" {
		t.Fatalf("got %q, %v; want \"second\"", body, err)
	}

	st := b.Stats()
	if st.Attempts != 2 || st.NewConnections != 1 || st.Cancellations != 0 {
		t.Errorf("stats = %+v; want 2 attempts on 1 connection, no cancellation", st)
	}
	reqs := b.Requests()
	if len(reqs) != 2 {
		t.Fatalf("recorded %d requests, want 2", len(reqs))
	}
	if r := reqs[0]; r.Method != "GET" || r.Path != "/hello" || r.RawQuery != "x=1" || r.BodyLen != 0 ||
		r.BodySHA256 != sha256.Sum256(nil) || r.Proto != "HTTP/1.1" || r.Behavior != "status 200" {
		t.Errorf("first request = %+v", r)
	}
	if reqs[0].RemoteAddr != reqs[1].RemoteAddr {
		t.Errorf("requests came from %s and %s, want one reused connection", reqs[0].RemoteAddr, reqs[1].RemoteAddr)
	}
}

func TestStatusWithHeaders(t *testing.T) {
	b := faultbackend.New(t)
	b.Set(faultbackend.Status(503).WithBody("busy").WithHeader("Retry-After", "2"))
	resp, body, err := get(t, client(t, 5*time.Second), b.URL())
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || body != "busy" || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("got %d %q Retry-After=%q; want 503 \"busy\" 2", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
}

func TestRecordsRequestBodiesAndHeaders(t *testing.T) {
	b := faultbackend.New(t)
	c := client(t, 5*time.Second)
	bodies := []string{"alpha", strings.Repeat("b", 100_000)}
	for i, s := range bodies {
		req, _ := http.NewRequest("POST", b.URL()+"/upload", strings.NewReader(s))
		req.Header.Set("X-Attempt", string(rune('0'+i)))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	reqs := b.Requests()
	if len(reqs) != 2 {
		t.Fatalf("recorded %d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if r.Method != "POST" || r.BodyLen != int64(len(bodies[i])) || r.BodySHA256 != sha256.Sum256([]byte(bodies[i])) || r.BodyErr != nil {
			t.Errorf("request %d: %s len=%d err=%v; hash match=%v", i, r.Method, r.BodyLen, r.BodyErr, r.BodySHA256 == sha256.Sum256([]byte(bodies[i])))
		}
		if got := r.Header.Get("X-Attempt"); got != string(rune('0'+i)) {
			t.Errorf("request %d: X-Attempt = %q", i, got)
		}
	}
	// Requests returns copies.
	reqs[0].Header.Set("X-Attempt", "changed")
	if got := b.Requests()[0].Header.Get("X-Attempt"); got != "0" {
		t.Errorf("mutating a returned header changed the record: %q", got)
	}
}

func TestHangCountsCancellation(t *testing.T) {
	b := faultbackend.New(t)
	b.Set(faultbackend.Hang())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", b.URL(), nil)
	_, err := client(t, 0).Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	waitStats(t, b, "one cancellation", func(s faultbackend.Stats) bool { return s.Cancellations == 1 })
	if got := b.Attempts(); got != 1 {
		t.Errorf("attempts = %d, want 1", got)
	}
}

func TestSlow(t *testing.T) {
	b := faultbackend.New(t)
	c := client(t, 5*time.Second)

	b.Set(faultbackend.Slow(50 * time.Millisecond))
	start := time.Now()
	resp, body, err := get(t, c, b.URL())
	if err != nil || resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %v %q, %v; want 200 \"ok\"", resp, body, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("answered after %v, want at least 50ms", d)
	}

	b.Set(faultbackend.Slow(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", b.URL(), nil)
	if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	waitStats(t, b, "one cancellation", func(s faultbackend.Stats) bool { return s.Cancellations == 1 })
}

func TestResetBeforeHeaders(t *testing.T) {
	b := faultbackend.New(t)
	b.Set(faultbackend.ResetBeforeHeaders())
	_, _, err := get(t, client(t, 5*time.Second), b.URL())
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("err = %v, want ECONNRESET", err)
	}
	if got := b.Attempts(); got != 1 {
		t.Errorf("attempts = %d, want 1", got)
	}
	waitStats(t, b, "no active connection", func(s faultbackend.Stats) bool { return s.ActiveConnections == 0 })
}

func TestResetAfterHeaders(t *testing.T) {
	b := faultbackend.New(t)
	b.Set(faultbackend.ResetAfterHeaders().WithHeader("X-Partial", "yes"))
	resp, err := client(t, 5*time.Second).Get(b.URL())
	if err != nil {
		t.Fatalf("headers: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 1024 || resp.Header.Get("X-Partial") != "yes" {
		t.Errorf("got %d, Content-Length %d, X-Partial %q", resp.StatusCode, resp.ContentLength, resp.Header.Get("X-Partial"))
	}
	body, err := io.ReadAll(resp.Body)
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("body read err = %v, want ECONNRESET or unexpected EOF", err)
	}
	if len(body) > 512 {
		t.Errorf("read %d body bytes, want at most 512", len(body))
	}
}

func TestCloseBeforeHeaders(t *testing.T) {
	b := faultbackend.New(t)
	b.Set(faultbackend.CloseBeforeHeaders())
	_, _, err := get(t, client(t, 5*time.Second), b.URL())
	if !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want io.EOF", err)
	}
	if got := b.Attempts(); got != 1 {
		t.Errorf("attempts = %d, want 1", got)
	}
}

func TestTLSBadCertificate(t *testing.T) {
	b := faultbackend.NewTLS(t)
	if !strings.HasPrefix(b.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL = %s", b.URL())
	}
	_, _, err := get(t, client(t, 5*time.Second), b.URL())
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	if !errors.As(err, &unknown) || !errors.As(err, &verify) {
		t.Fatalf("err = %v, want a certificate verification error (unknown authority)", err)
	}
	st := b.Stats()
	if st.Attempts != 0 || st.NewConnections != 1 {
		t.Errorf("stats = %+v; want 1 connection and no attempt", st)
	}

	// A client that trusts the certificate gets through, and sees faults.
	roots := x509.NewCertPool()
	roots.AddCert(b.Certificate())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if resp, body, err := get(t, c, b.URL()); err != nil || resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("trusting client: %v %q %v", resp, body, err)
	}
	b.Set(faultbackend.ResetBeforeHeaders())
	if _, err := c.Get(b.URL()); err == nil {
		t.Fatal("reset over TLS: no error")
	}
}

func TestHandlerAndFailNext(t *testing.T) {
	b := faultbackend.New(t)
	c := client(t, 5*time.Second)
	b.SetHandler(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusTeapot)
		w.Write(append([]byte("echo:"), body...))
	})
	resp, err := c.Post(b.URL(), "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || string(body) != "echo:hi" {
		t.Errorf("handler: got %d %q", resp.StatusCode, body)
	}

	b.Set(faultbackend.OK("ok"))
	b.FailNext(2, faultbackend.Status(500))
	var codes []int
	for range 4 {
		resp, _, err := get(t, c, b.URL())
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.StatusCode)
	}
	if want := []int{500, 500, 200, 200}; !equal(codes, want) {
		t.Errorf("codes = %v, want %v", codes, want)
	}

	b.FailNext(5, faultbackend.Status(502))
	b.FailNext(0, faultbackend.Behavior{})
	if resp, _, _ := get(t, c, b.URL()); resp == nil || resp.StatusCode != 200 {
		t.Errorf("after FailNext(0): %v, want 200", resp)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReset(t *testing.T) {
	b := faultbackend.New(t)
	c := client(t, 5*time.Second)
	if _, _, err := get(t, c, b.URL()); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if st := b.Stats(); st.Attempts != 0 || st.NewConnections != 0 || st.Cancellations != 0 || len(b.Requests()) != 0 {
		t.Errorf("after Reset: %+v, %d requests", st, len(b.Requests()))
	}
	if got := b.ActiveConnections(); got != 1 {
		t.Errorf("active connections = %d, want the idle keep-alive one", got)
	}
}

func TestCloseWithHungRequests(t *testing.T) {
	b, err := faultbackend.Start()
	if err != nil {
		t.Fatal(err)
	}
	b.Set(faultbackend.Hang())
	c := client(t, 10*time.Second)
	const n = 3
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.Get(b.URL())
			errs <- err
		}()
	}
	waitStats(t, b, "3 attempts", func(s faultbackend.Stats) bool { return s.Attempts == n })

	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with hung requests, want prompt", d)
	}
	for range n {
		if err := <-errs; err == nil {
			t.Error("hung request succeeded after Close")
		}
	}
	if got := b.Cancellations(); got != 0 {
		t.Errorf("cancellations = %d; requests cut by Close must not count", got)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		t.Error("port still accepts connections after Close")
	}
}

func TestConcurrentSwitching(t *testing.T) {
	b := faultbackend.New(t)
	c := client(t, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		behaviours := []faultbackend.Behavior{faultbackend.OK("a"), faultbackend.Status(500), faultbackend.CloseBeforeHeaders()}
		for i := 0; ctx.Err() == nil; i++ {
			b.Set(behaviours[i%len(behaviours)])
			b.FailNext(1, faultbackend.Status(503))
			_ = b.Stats()
			_ = b.Requests()
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if resp, err := c.Get(b.URL()); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	if got := b.Attempts(); got < 80 {
		t.Errorf("attempts = %d, want at least 80", got)
	}
}

func TestBehaviorString(t *testing.T) {
	for _, tc := range []struct {
		b    faultbackend.Behavior
		want string
	}{
		{faultbackend.Behavior{}, "status 200"},
		{faultbackend.Status(503).WithHeader("Retry-After", "1"), "status 503 with headers Retry-After"},
		{faultbackend.Slow(time.Second), "status 200 after 1s"},
		{faultbackend.Hang(), "hang"},
		{faultbackend.ResetBeforeHeaders(), "reset before headers"},
		{faultbackend.ResetAfterHeaders(), "reset after headers (status 200)"},
		{faultbackend.CloseBeforeHeaders(), "close before headers"},
	} {
		if got := tc.b.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}
