package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "exe")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env string
		get       func() (string, error)
	}{
		{"consul", ConsulBinEnv, ConsulBinary},
		{"redis", RedisBinEnv, RedisBinary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.env, "")
			_, err := tc.get()
			if !errors.Is(err, ErrUnset) || !strings.Contains(err.Error(), tc.env) {
				t.Errorf("unset: err = %v, want ErrUnset naming %s", err, tc.env)
			}
			for _, bad := range []string{plain, dir, filepath.Join(dir, "missing")} {
				t.Setenv(tc.env, bad)
				if _, err := tc.get(); err == nil || !strings.Contains(err.Error(), tc.env) {
					t.Errorf("%s: err = %v, want an error naming %s", bad, err, tc.env)
				}
			}
			t.Setenv(tc.env, exe)
			if got, err := tc.get(); err != nil || got != exe {
				t.Errorf("got %q, %v; want %q, nil", got, err, exe)
			}
		})
	}
}

func TestRequired(t *testing.T) {
	for val, want := range map[string]bool{"true": true, "": false, "false": false, "1": false} {
		t.Setenv(CIEnv, val)
		if got := Required(); got != want {
			t.Errorf("CI=%q: Required() = %v, want %v", val, got, want)
		}
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

func TestUnavailable(t *testing.T) {
	cause := errors.New("consul missing")

	t.Setenv(CIEnv, "true")
	r := &recorder{TB: t}
	Unavailable(r, cause)
	if r.skip != "" || !strings.Contains(r.fatal, "consul missing") {
		t.Errorf("CI=true: fatal=%q skip=%q; want a failure naming the cause", r.fatal, r.skip)
	}

	t.Setenv(CIEnv, "")
	r = &recorder{TB: t}
	Unavailable(r, cause)
	if r.fatal != "" || !strings.Contains(r.skip, "consul missing") || !strings.Contains(r.skip, "make test") {
		t.Errorf("CI unset: fatal=%q skip=%q; want a skip naming the cause and `make test`", r.fatal, r.skip)
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d not bindable: %v", port, err)
	}
	l.Close()
}

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("duplicate port %d in %v", p, ports)
		}
		seen[p] = true
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("tcp %s: %v", addr, err)
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			l.Close()
			t.Fatalf("udp %s: %v", addr, err)
		}
		l.Close()
		u.Close()
	}
}
