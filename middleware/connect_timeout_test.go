package middleware_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// deadlineDialer is a base dialer that records, per address, whether each dial's context had
// a deadline and how far away it was, and then dials for real.
type deadlineDialer struct {
	mu   sync.Mutex
	seen map[string][]time.Duration // -1: no deadline
}

func (d *deadlineDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	d.mu.Lock()
	d.seen[addr] = append(d.seen[addr], left)
	d.mu.Unlock()
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

// TestConfigConnectTimeoutReachesDialer: a destination's connectTimeout bounds the dial of
// its new connections (the base dialer sees a deadline at most that far), and only its own:
// another destination's dials carry no deadline.
func TestConfigConnectTimeoutReachesDialer(t *testing.T) {
	timed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "timed") }))
	defer timed.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "plain") }))
	defer plain.Close()
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"timed": {{Addr: timed.Listener.Addr().String()}},
		"plain": {{Addr: plain.Listener.Addr().String()}},
	})
	cfg, err := middleware.NewConfig(middleware.Document{Destinations: map[string]middleware.DestinationPolicy{
		"timed": {ConnectTimeout: 700 * time.Millisecond},
	}})
	require.NoError(t, err)
	dd := &deadlineDialer{seen: map[string][]time.Duration{}}
	base := &http.Transport{DialContext: dd.dial, DisableKeepAlives: true}
	tr, err := middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithConfig(cfg),
		middleware.WithTimeout(30*time.Second))
	require.NoError(t, err)
	defer func() { require.NoError(t, tr.Close()) }()
	c := &http.Client{Transport: tr}
	for _, svc := range []string{"timed", "plain", "timed"} {
		resp, err := c.Get("http://" + svc + "/")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, svc, string(b))
	}
	dd.mu.Lock()
	defer dd.mu.Unlock()
	tl := dd.seen[timed.Listener.Addr().String()]
	require.Len(t, tl, 2, "two dials to timed (no keep-alive)")
	for _, left := range tl {
		assert.True(t, left > 0 && left <= 700*time.Millisecond, "timed's dial deadline is the connect timeout, got %v", left)
	}
	pl := dd.seen[plain.Listener.Addr().String()]
	require.Len(t, pl, 1)
	assert.True(t, pl[0] < 0 || pl[0] > 20*time.Second, "plain's dial has no connect timeout (at most the request's 30s), got %v", pl[0])
}

// fullBacklog returns the loopback address of a listening socket that never accepts and whose
// accept queue is full, so that a new connection's handshake never completes; ok false when
// the kernel completes handshakes anyway.
func fullBacklog(t *testing.T) (addr string, ok bool) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr = (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	for range 8 { // fill the queue: dials complete until it is full
		conn, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr, true
		}
		t.Cleanup(func() { _ = conn.Close() })
	}
	return addr, false
}

// TestConfigConnectTimeoutBoundsDial: an endpoint whose handshake never completes (a loopback
// listener with a full accept queue) fails the request with a dial timeout after the
// destination's connectTimeout, long before the request's own timeout.
func TestConfigConnectTimeoutBoundsDial(t *testing.T) {
	addr, ok := fullBacklog(t)
	if !ok {
		// Linux leaves such handshakes incomplete; a machine that completes them cannot
		// show the dial timeout, and the test must say so rather than pass unseen.
		t.Fatal("the loopback listener's full accept queue still completed a handshake: no dial here can time out")
	}
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"dead": {{Addr: addr}}})
	cfg, err := middleware.NewConfig(middleware.Document{Destinations: map[string]middleware.DestinationPolicy{
		"dead": {ConnectTimeout: 150 * time.Millisecond, Retry: &middleware.RetryPolicy{Disable: true}, DisableBreaker: true},
	}})
	require.NoError(t, err)
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(static), middleware.WithConfig(cfg),
		middleware.WithTimeout(10*time.Second))
	require.NoError(t, err)
	defer func() { require.NoError(t, tr.Close()) }()
	// Below the default dialer's own 30s timeout: without the connect timeout, the request's
	// deadline would end the dial.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dead/", nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
	}
	require.Error(t, err, "the dial never completes")
	var ne net.Error
	assert.True(t, errors.As(err, &ne) && ne.Timeout(), "a dial timeout: %v", err)
	assert.True(t, strings.Contains(err.Error(), "dial") && strings.Contains(err.Error(), "i/o timeout"), "%v", err)
	assert.NoError(t, ctx.Err(), "the request's own deadline did not end it: %v", err)
}

// TestConfigConnectTimeoutValidated: a negative connectTimeout is refused naming the field;
// a document sets it as a duration string.
func TestConfigConnectTimeoutValidated(t *testing.T) {
	_, err := middleware.NewConfig(middleware.Document{Destinations: map[string]middleware.DestinationPolicy{
		"svc": {ConnectTimeout: -time.Second},
	}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connectTimeout")

	cfg, err := middleware.NewConfig(middleware.Document{})
	require.NoError(t, err)
	require.NoError(t, cfg.Load([]byte("destinations:\n  svc:\n    connectTimeout: 2s\n")))
	assert.Equal(t, 2*time.Second, cfg.Destinations()["svc"].ConnectTimeout)
	assert.Error(t, cfg.Load([]byte(`{"destinations":{"svc":{"connectTimeout":"-1s"}}}`)), "negative")
}
