package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// FindHAProxy returns the path of the haproxy binary ("" when it is not installed): PATH first,
// then /usr/sbin, where Debian puts it and where a non-root PATH does not look.
func FindHAProxy() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	return ""
}

// haproxyConfig is one HTTP hop in front of the backends: round robin, keep-alive with the
// client and with the servers (idle server connections reused by any client connection), no
// logging, no health checks (the backends are known to be up; checks would add their own
// traffic). Threads are HAProxy's default: one per CPU the process may run on.
var haproxyConfig = template.Must(template.New("haproxy").Parse(`global
    maxconn 4096
    pidfile {{.Dir}}/haproxy.pid

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend fe
    bind {{.Listen}}
    default_backend be

backend be
    balance roundrobin
{{- range $i, $a := .Backends}}
    server s{{$i}} {{$a}}
{{- end}}
`))

// HAProxy is a running haproxy process.
type HAProxy struct {
	Addr    string // where it listens, host:port
	Version string // first line of haproxy -v
	cmd     *exec.Cmd
	done    chan error
	dir     string
	once    sync.Once
	err     error
}

// Pid is haproxy's process id, for reading its CPU time.
func (h *HAProxy) Pid() int { return h.cmd.Process.Pid }

// StartHAProxy writes a configuration for backends into a temporary directory, starts haproxy
// in the foreground on a free loopback port, and waits (at most 10 s) until it accepts
// connections. Stop it with Close.
func StartHAProxy(bin string, backends []string) (*HAProxy, error) {
	dir, err := os.MkdirTemp("", "proxyless-haproxy-")
	if err != nil {
		return nil, err
	}
	h, err := startHAProxy(bin, dir, backends)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return h, nil
}

func startHAProxy(bin, dir string, backends []string) (*HAProxy, error) {
	ver, _ := exec.Command(bin, "-v").Output()
	version, _, _ := strings.Cut(string(ver), "\n")
	var lastErr error
	for range 3 { // the free port may be taken between finding it and haproxy binding it
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg := filepath.Join(dir, "haproxy.cfg")
		f, err := os.Create(cfg)
		if err != nil {
			return nil, err
		}
		err = haproxyConfig.Execute(f, map[string]any{"Dir": dir, "Listen": addr, "Backends": backends})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		if out, err := exec.Command(bin, "-c", "-q", "-f", cfg).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("loadgen: haproxy rejects its configuration: %v: %s", err, out)
		}
		var stderr strings.Builder
		cmd := exec.Command(bin, "-db", "-f", cfg) // -db: stay in the foreground
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		h := &HAProxy{Addr: addr, Version: version, cmd: cmd, done: make(chan error, 1), dir: dir}
		go func() { h.done <- cmd.Wait() }()
		if err := h.waitReady(10 * time.Second); err != nil {
			_ = h.stop()
			lastErr = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
			continue
		}
		return h, nil
	}
	return nil, lastErr
}

func (h *HAProxy) waitReady(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", h.Addr)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case err := <-h.done:
			h.done <- err
			return fmt.Errorf("loadgen: haproxy exited: %v", err)
		case <-ctx.Done():
			return errors.New("loadgen: haproxy did not listen in time")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop ends haproxy: SIGTERM (immediate stop), SIGKILL after 5 s.
func (h *HAProxy) stop() error {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
		return nil
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
		return errors.New("loadgen: haproxy ignored SIGTERM; killed")
	}
}

// Close stops haproxy and removes its directory. It is idempotent.
func (h *HAProxy) Close() error {
	h.once.Do(func() { h.err = errors.Join(h.stop(), os.RemoveAll(h.dir)) })
	return h.err
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
