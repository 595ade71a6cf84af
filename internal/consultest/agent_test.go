package consultest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/internal/testenv"
)

var shared Shared

func TestMain(m *testing.M) { goleak.VerifyTestMain(shared.Wrap(m)) }

func httpGet(t *testing.T, url string) (*http.Response, []byte, error) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func leader(t *testing.T, a *Agent) string {
	t.Helper()
	_, body, err := httpGet(t, "http://"+a.HTTPAddr+"/v1/status/leader")
	if err != nil {
		t.Fatalf("leader: %v", err)
	}
	var l string
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("leader: %v in %q", err, body)
	}
	return l
}

// register registers a service through the agent API, which works only once
// the node is in the catalog.
func register(t *testing.T, a *Agent, name string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+a.HTTPAddr+"/v1/agent/service/register",
		strings.NewReader(fmt.Sprintf(`{"Name": %q, "Address": "127.0.0.1", "Port": 8080}`, name)))
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("register: %s", resp.Status)
	}
}

func TestStopRestartClose(t *testing.T) {
	a := ForTest(t)
	if !strings.HasPrefix(a.HTTPAddr, "127.0.0.1:") || !strings.HasPrefix(a.DNSAddr, "127.0.0.1:") {
		t.Fatalf("addresses %s, %s; want loopback", a.HTTPAddr, a.DNSAddr)
	}
	if l := leader(t, a); l == "" {
		t.Fatal("no leader after Start")
	}
	register(t, a, "web")
	pid := a.proc.cmd.Process.Pid

	if err := a.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if alive(pid) {
		t.Errorf("process %d still alive after Stop", pid)
	}
	if a.Running() {
		t.Error("Running() after Stop")
	}
	if c, err := net.DialTimeout("tcp", a.HTTPAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("HTTP port accepts connections after Stop")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Stop: %v, want connection refused", err)
	}
	if err := a.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	httpAddr := a.HTTPAddr
	if err := a.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if a.HTTPAddr != httpAddr {
		t.Errorf("HTTPAddr changed from %s to %s", httpAddr, a.HTTPAddr)
	}
	if l := leader(t, a); l == "" {
		t.Fatal("no leader after Restart")
	}
	register(t, a, "web")
	pid = a.proc.cmd.Process.Pid

	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if alive(pid) {
		t.Errorf("process %d still alive after Close", pid)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := a.Restart(); !errors.Is(err, ErrClosed) {
		t.Errorf("Restart after Close: %v, want ErrClosed", err)
	}
	if !strings.Contains(a.Logs(), "consul") {
		t.Errorf("Logs() has no agent output: %q", a.Logs())
	}
}

func TestSharedAgentAndDNS(t *testing.T) {
	a := shared.Agent(t)
	if b := shared.Agent(t); b != a {
		t.Fatal("Shared.Agent returned two agents")
	}
	if l := leader(t, a); l == "" {
		t.Fatal("no leader")
	}
	// The DNS interface answers for the agent's node.
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, a.DNSAddr)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "proxyless-test.node.consul")
	if err != nil || len(addrs) != 1 || addrs[0] != "127.0.0.1" {
		t.Errorf("node lookup via %s: %v, %v; want [127.0.0.1]", a.DNSAddr, addrs, err)
	}
}

func TestStartFailureReportsOutput(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fake-consul")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'bind: address already in use' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a, err := Start(bin)
	if err == nil {
		a.Close()
		t.Fatal("Start succeeded with a binary that exits")
	}
	var exited *exitedError
	if !errors.As(err, &exited) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("err = %v; want an exitedError with the agent's output", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Start took %v to notice the exit", d)
	}
	if _, err := Start(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Start succeeded with a missing binary")
	}
}

// recorder is a testing.TB that records Fatalf and Skipf instead of ending
// the goroutine.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recorder) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...) }

type fakeM struct{ run func() int }

func (m fakeM) Run() int { return m.run() }

func TestWithoutBinary(t *testing.T) {
	t.Setenv(testenv.ConsulBinEnv, "")

	t.Run("ForTest skips", func(t *testing.T) {
		t.Setenv(testenv.CIEnv, "")
		r := &recorder{TB: t}
		if a := ForTest(r); a != nil || r.skip == "" || r.fatal != "" {
			t.Errorf("agent=%v skip=%q fatal=%q; want a skip", a, r.skip, r.fatal)
		}
	})
	t.Run("ForTest fails in CI", func(t *testing.T) {
		t.Setenv(testenv.CIEnv, "true")
		r := &recorder{TB: t}
		if a := ForTest(r); a != nil || r.fatal == "" {
			t.Errorf("agent=%v skip=%q fatal=%q; want a failure", a, r.skip, r.fatal)
		}
	})
	t.Run("Shared skips", func(t *testing.T) {
		t.Setenv(testenv.CIEnv, "")
		var s Shared
		ran := false
		code := s.Main(fakeM{func() int {
			ran = true
			r := &recorder{TB: t}
			if a := s.Agent(r); a != nil || r.skip == "" {
				t.Errorf("agent=%v skip=%q fatal=%q; want a skip", a, r.skip, r.fatal)
			}
			return 0
		}})
		if !ran || code != 0 {
			t.Errorf("ran=%v code=%d; want the tests to run", ran, code)
		}
	})
	t.Run("Shared fails in CI", func(t *testing.T) {
		t.Setenv(testenv.CIEnv, "true")
		var s Shared
		ran := false
		if code := s.Main(fakeM{func() int { ran = true; return 0 }}); ran || code != 1 {
			t.Errorf("ran=%v code=%d; want exit code 1 without running", ran, code)
		}
	})
	t.Run("Shared not wired", func(t *testing.T) {
		var s Shared
		r := &recorder{TB: t}
		if a := s.Agent(r); a != nil || !strings.Contains(r.fatal, "TestMain") {
			t.Errorf("agent=%v fatal=%q; want a failure pointing at TestMain", a, r.fatal)
		}
	})
}
