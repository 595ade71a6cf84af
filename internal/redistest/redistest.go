// Package redistest starts a real redis-server on a free loopback port for tests.
//
// The binary comes from the environment variable PROXYLESS_REDIS_BIN and is
// never guessed from PATH, so a test run uses exactly the Redis the build
// asked for. [ForTest] is the usual entry point: it skips when the binary is
// not configured, except under CI=true where a missing Redis fails the test.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/proxyless/proxyless/internal/testenv"
)

// EnvBin names the environment variable that holds the path of redis-server.
const EnvBin = testenv.RedisBinEnv

// startTimeout bounds how long Start and Restart wait for PING to answer.
const startTimeout = 10 * time.Second

// Binary returns the redis-server path from PROXYLESS_REDIS_BIN. It fails,
// naming the variable, when the variable is unset or does not name an
// executable file. It never searches PATH.
func Binary() (string, error) { return testenv.RedisBinary() }

// Server is a redis-server process listening on 127.0.0.1. It keeps its port
// across Stop and Restart so that clients can reconnect after an outage.
//
// Create one with [Start] or [ForTest]; the zero value is not usable. Its
// methods are safe for concurrent use. Close (or Stop) must be called to end
// the process; ForTest registers Close with tb.Cleanup.
type Server struct {
	bin   string   // immutable
	port  int      // immutable
	dir   string   // immutable; working directory, removed by Close
	conf  string   // immutable; config file contents written to dir/redis.conf, if any
	extra []string // immutable; arguments after the standard ones

	mu     sync.Mutex
	cmd    *exec.Cmd     // guarded by mu; nil when stopped
	exited chan struct{} // guarded by mu; closed once cmd has been waited for
}

// Start launches bin on a free loopback port with persistence off
// (redis-server --port N --bind 127.0.0.1 --save "" --appendonly no) and
// returns once PING answers, or an error after a bounded wait.
func Start(bin string) (*Server, error) { return start(bin, "") }

// start launches a server with a configuration file, when conf is not empty,
// and extra arguments after the standard ones.
func start(bin, conf string, extra ...string) (*Server, error) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	var lastErr error
	// A free port can be taken by someone else between our probe and
	// redis-server's bind; try a few ports before giving up.
	for range 3 {
		port, err := testenv.FreePort()
		if err != nil {
			lastErr = fmt.Errorf("redistest: %w", err)
			continue
		}
		s := &Server{bin: bin, port: port, dir: dir, conf: conf, extra: extra}
		if err := s.start(); err != nil {
			lastErr = err
			continue
		}
		return s, nil
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// ForTest starts a Redis for tb and stops it in tb.Cleanup. When the binary
// is not configured it skips the test, unless the environment variable CI is
// "true", in which case it fails the test: CI must never silently skip.
func ForTest(tb testing.TB) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		testenv.Unavailable(tb, err) // skips, or fails under CI=true
		return nil                   // reached only with a testing.TB whose Fatalf/Skipf return
	}
	s, err := Start(bin)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// Addr returns the server's host:port on 127.0.0.1.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Stop kills the process and waits for it to exit. It is idempotent; the
// server can be started again on the same port with Restart.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Kill() // SIGKILL also ends a paused (SIGSTOPped) process
	<-s.exited
	s.cmd, s.exited = nil, nil
	return nil
}

// Restart stops the server if it runs and starts it again on the same port,
// with an empty data set. It returns once PING answers.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.stopLocked()
	return s.startLocked()
}

func (s *Server) signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("redistest: server is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	return nil
}

// Close stops the server and removes its working directory. It is idempotent.
func (s *Server) Close() error {
	err := s.Stop()
	if rmErr := os.RemoveAll(s.dir); err == nil && rmErr != nil {
		err = fmt.Errorf("redistest: %w", rmErr)
	}
	return err
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

func (s *Server) startLocked() error {
	log := &limitedWriter{max: 64 << 10}
	var args []string
	if s.conf != "" {
		// Written once: Sentinel and cluster nodes rewrite their files, and a
		// restarted node must find what it wrote.
		path := filepath.Join(s.dir, "redis.conf")
		if _, err := os.Stat(path); err != nil {
			if err := os.WriteFile(path, []byte(s.conf), 0o600); err != nil {
				return fmt.Errorf("redistest: %w", err)
			}
		}
		args = append(args, path)
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
	)
	cmd := exec.Command(s.bin, append(args, s.extra...)...)
	cmd.Dir = s.dir
	cmd.Stdout = log
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	deadline := time.Now().Add(startTimeout)
	for {
		if ping(s.Addr(), 200*time.Millisecond) == nil {
			return nil
		}
		select {
		case <-exited:
			s.cmd, s.exited = nil, nil
			return fmt.Errorf("redistest: redis-server on port %d exited during start: %s", s.port, tail(log.String()))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.stopLocked()
			return fmt.Errorf("redistest: redis-server on port %d did not answer PING within %v: %s", s.port, startTimeout, tail(log.String()))
		}
	}
}

// ping sends an inline PING and expects +PONG, all within timeout.
func ping(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("redistest: unexpected PING reply %q", line)
	}
	return nil
}

func tail(s string) string {
	const n = 2000
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// limitedWriter keeps the first max bytes written to it; the process must
// never block on a full pipe, so excess output is dropped silently.
type limitedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
	max int          // immutable
}

func (w *limitedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
