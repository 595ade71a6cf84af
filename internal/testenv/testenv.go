package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
)

// Environment variables read by this package.
const (
	// ConsulBinEnv names the variable holding the path of the consul binary.
	ConsulBinEnv = "PROXYLESS_CONSUL_BIN"
	// RedisBinEnv names the variable holding the path of the redis-server binary.
	RedisBinEnv = "PROXYLESS_REDIS_BIN"
	// ChromiumBinEnv names the variable holding the path of Debian's chromium, for the test
	// that renders the status page in a browser.
	ChromiumBinEnv = "PROXYLESS_CHROMIUM_BIN"
	// CIEnv names the variable that, set to "true", makes missing binaries fatal.
	CIEnv = "CI"
)

// ErrUnset is wrapped by the errors of [ConsulBinary], [RedisBinary] and [ChromiumBinary] when
// the environment variable is unset or empty.
var ErrUnset = errors.New("testenv: environment variable not set")

// ConsulBinary returns the path of the consul binary named by
// PROXYLESS_CONSUL_BIN. It returns an error naming the variable when the
// variable is unset or the file is not an executable regular file.
func ConsulBinary() (string, error) { return binary(ConsulBinEnv) }

// RedisBinary returns the path of the redis-server binary named by
// PROXYLESS_REDIS_BIN. It returns an error naming the variable when the
// variable is unset or the file is not an executable regular file.
func RedisBinary() (string, error) { return binary(RedisBinEnv) }

// ChromiumBinary returns the path in PROXYLESS_CHROMIUM_BIN, or an error naming the variable
// when it is unset or not an executable file.
func ChromiumBinary() (string, error) { return binary(ChromiumBinEnv) }

func binary(env string) (string, error) {
	path := os.Getenv(env)
	if path == "" {
		return "", fmt.Errorf("%w: %s", ErrUnset, env)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("testenv: %s=%q: %w", env, path, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("testenv: %s=%q: not an executable file", env, path)
	}
	return path, nil
}

// Required reports whether external dependencies are mandatory, that is
// whether the environment variable CI is "true".
func Required() bool { return os.Getenv(CIEnv) == "true" }

// Unavailable reports that a dependency the test needs is missing, err saying
// which. Under CI=true it fails the test with tb.Fatalf; otherwise it skips
// it with tb.Skipf and a hint to run `make test`. Either way it does not
// return (it calls runtime.Goexit through the testing package).
func Unavailable(tb testing.TB, err error) {
	tb.Helper()
	if Required() {
		tb.Fatalf("required dependency missing under %s=true: %v", CIEnv, err)
		return
	}
	tb.Skipf("skipping: %v; run `make test` to build and provide it", err)
}

// FreePorts returns n distinct ports on 127.0.0.1, each free for both TCP
// and UDP a moment ago (servers such as Consul bind both for DNS and serf).
// Like [FreePort], it cannot reserve them.
func FreePorts(n int) ([]int, error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	ports := make([]int, 0, n)
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts >= 10*n+10 {
			return nil, fmt.Errorf("testenv: no %d free TCP+UDP ports found", n)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testenv: free port: %w", err)
		}
		closers = append(closers, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // UDP twin taken; keep the TCP listener so it is not picked again
		}
		closers = append(closers, u)
		ports = append(ports, port)
	}
	return ports, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before FreePort returns, so another process may take it;
// callers that need certainty should retry on a bind failure.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
