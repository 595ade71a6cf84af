package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBinary(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, val string
	}{
		{"unset", ""},
		{"missing", filepath.Join(dir, "nope")},
		{"directory", dir},
		{"not executable", notExec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvBin, tc.val)
			_, err := Binary()
			if err == nil || !strings.Contains(err.Error(), EnvBin) {
				t.Fatalf("Binary() error = %v, want one naming %s", err, EnvBin)
			}
		})
	}
}

// fakeTB records Fatalf and Skipf instead of stopping the goroutine.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, a ...any) { f.fatal = fmt.Sprintf(format, a...) }
func (f *fakeTB) Skipf(format string, a ...any)  { f.skip = fmt.Sprintf(format, a...) }

func TestForTestWithoutBinary(t *testing.T) {
	t.Setenv(EnvBin, "")

	t.Setenv("CI", "")
	var local fakeTB
	if s := ForTest(&local); s != nil || local.fatal != "" || !strings.Contains(local.skip, "make test") {
		t.Fatalf("outside CI: server %v, fatal %q, skip %q; want a skip saying run make test", s, local.fatal, local.skip)
	}

	t.Setenv("CI", "true")
	var ci fakeTB
	if s := ForTest(&ci); s != nil || ci.skip != "" || !strings.Contains(ci.fatal, EnvBin) {
		t.Fatalf("under CI: server %v, fatal %q, skip %q; want a failure naming %s", s, ci.fatal, ci.skip, EnvBin)
	}
}

func TestServerLifecycle(t *testing.T) {
	s := ForTest(t)
	addr := s.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want a 127.0.0.1 address", addr)
	}
	if err := ping(addr, time.Second); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}

	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := ping(addr, 100*time.Millisecond); err == nil {
		t.Fatal("PING answered while paused")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := ping(addr, time.Second); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil { // idempotent
		t.Fatalf("second Stop: %v", err)
	}
	if err := ping(addr, 100*time.Millisecond); err == nil {
		t.Fatal("PING answered after Stop")
	}
	if err := s.Pause(); err == nil {
		t.Fatal("Pause of a stopped server succeeded")
	}

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	if err := ping(addr, time.Second); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if err := s.Restart(); err != nil { // restart of a running server
		t.Fatal(err)
	}

	// Stop a paused server: SIGKILL must still end it.
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Fatalf("working directory %s still exists after Close (err %v)", s.dir, err)
	}
}

func TestStartBadBinary(t *testing.T) {
	if _, err := Start("/bin/false"); err == nil {
		t.Fatal("Start(/bin/false) succeeded")
	}
}
