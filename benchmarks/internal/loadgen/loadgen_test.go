package loadgen

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/benchmarks/internal/backend"
)

func TestMain(m *testing.M) {
	backend.ServeIfChild() // the backends' child process is this test binary again
	goleak.VerifyTestMain(m)
}

// TestSmoke runs the harness for about a second: bare and proxyless, and HAProxy when it is
// installed. Under CI=true a missing haproxy fails the test rather than skipping it.
func TestSmoke(t *testing.T) {
	setups := []string{Bare, Proxyless}
	if FindHAProxy() != "" {
		setups = append(setups, HAProxyS)
	} else if os.Getenv("CI") == "true" {
		t.Fatal("haproxy is not installed (apt-get install -y haproxy); CI=true requires it")
	} else {
		t.Log("haproxy is not installed: skipping its setup")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var log strings.Builder
	rep, err := Compare(ctx, Config{
		Setups:      setups,
		Concurrency: []int{2},
		Duration:    250 * time.Millisecond,
		Warmup:      50 * time.Millisecond,
		MaxRequests: 20_000,
		Rounds:      1,
		Log:         &log,
	})
	t.Log("\n" + log.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != len(setups) {
		t.Fatalf("%d runs, want %d", len(rep.Runs), len(setups))
	}
	for _, r := range rep.Runs {
		if r.Requests == 0 || r.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors", r.Setup, r.Requests, r.Errors)
		}
		if r.Requests > 20_000 {
			t.Errorf("%s: %d requests, over the cap", r.Setup, r.Requests)
		}
		if !(r.P50 > 0 && r.P50 <= r.P99 && r.P99 <= r.P999 && r.P999 <= r.Max) {
			t.Errorf("%s: percentiles out of order: %+v", r.Setup, r)
		}
		if r.ClientCPU <= 0 {
			t.Errorf("%s: client CPU per request %v", r.Setup, r.ClientCPU)
		}
	}
	md := rep.Markdown()
	for _, s := range setups {
		if !strings.Contains(md, "| "+s+" |") {
			t.Errorf("markdown lacks %s:\n%s", s, md)
		}
	}
	t.Log("\n" + md)
}

// TestMaxRequests checks the request cap stops a run before its duration.
func TestMaxRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	rep, err := Compare(ctx, Config{Setups: []string{Bare}, Concurrency: []int{3}, Duration: 20 * time.Second, MaxRequests: 300, Warmup: 10 * time.Millisecond, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Runs[0].Requests; got != 300 {
		t.Errorf("%d requests, want 300", got)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v: the cap did not stop the run", d)
	}
}

func TestProcCPU(t *testing.T) {
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if d, err := selfCPU(); err != nil || d <= 0 {
		t.Fatalf("selfCPU = %v, %v", d, err)
	}
}
