package consultest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/proxyless/proxyless/internal/testenv"
)

// Timeouts of the agent's life cycle.
const (
	// ReadyTimeout bounds how long Start and Restart wait for a leader and a
	// registered node.
	ReadyTimeout = 30 * time.Second
	// stopTimeout bounds the wait for the killed process to be reaped.
	stopTimeout = 10 * time.Second
	// maxLogBytes caps the agent output kept in memory; older output is dropped.
	maxLogBytes = 4 << 20
	// startAttempts is how many sets of free ports Start tries, in case
	// another process takes one between the check and the agent's bind.
	startAttempts = 3
)

// ErrClosed is returned by Restart after Close.
var ErrClosed = errors.New("consultest: agent closed")

// Agent is a running (or stopped) consul dev agent bound to 127.0.0.1.
//
// Create one with [Start] or [ForTest]; the zero value is not usable. The
// exported fields are set by Start and never change, also across Restart.
// The methods are safe for concurrent use. Close must be called to end the
// process; ForTest and Shared do it for you.
type Agent struct {
	// HTTPAddr is the HTTP API address, "127.0.0.1:port", the value for
	// api.Config.Address.
	HTTPAddr string
	// DNSAddr is the DNS server address, "127.0.0.1:port" (UDP and TCP).
	DNSAddr string

	bin    string   // immutable
	hcl    []string // immutable: extra -hcl arguments
	ports  ports    // immutable
	member *member  // immutable; nil for a dev agent, else a cluster member's settings
	logs   *logBuffer

	mu     sync.Mutex
	proc   *process // guarded by mu; nil when stopped
	closed bool     // guarded by mu
}

type ports struct{ http, dns, serfLAN, serfWAN, server int }

// process is one run of the consul binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
	err  error         // cmd.Wait's result; read after done
}

// Start runs `consul agent -dev` from the binary bin, bound to 127.0.0.1 on
// free ports for HTTP, DNS, serf LAN, serf WAN and server RPC, with gRPC
// off, and waits up to [ReadyTimeout] until the agent has elected itself
// leader and registered its node in the catalog, so services can be
// registered at once. On failure the error includes the end of the agent's
// output. Call Close when done.
func Start(bin string) (*Agent, error) { return StartHCL(bin) }

// StartHCL is Start with extra agent configuration, each string given to the agent with
// -hcl (for example "connect { enabled = false }").
func StartHCL(bin string, hcl ...string) (*Agent, error) {
	var errs []error
	for range startAttempts {
		p, err := testenv.FreePorts(5)
		if err != nil {
			return nil, fmt.Errorf("consultest: %w", err)
		}
		a := &Agent{
			HTTPAddr: addr(p[0]),
			DNSAddr:  addr(p[1]),
			bin:      bin,
			hcl:      append([]string(nil), hcl...),
			ports:    ports{http: p[0], dns: p[1], serfLAN: p[2], serfWAN: p[3], server: p[4]},
			logs:     &logBuffer{max: maxLogBytes},
		}
		err = a.start()
		if err == nil {
			return a, nil
		}
		errs = append(errs, err)
		var exited *exitedError
		if !errors.As(err, &exited) {
			break // not a port clash: trying other ports will not help
		}
	}
	return nil, errors.Join(errs...)
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func (a *Agent) args() []string {
	if a.member != nil {
		return a.member.args(a.ports)
	}
	args := []string{
		"agent", "-dev",
		"-node", "proxyless-test",
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-http-port", strconv.Itoa(a.ports.http),
		"-dns-port", strconv.Itoa(a.ports.dns),
		"-serf-lan-port", strconv.Itoa(a.ports.serfLAN),
		"-serf-wan-port", strconv.Itoa(a.ports.serfWAN),
		"-server-port", strconv.Itoa(a.ports.server),
		"-grpc-port", "-1",
		"-grpc-tls-port", "-1",
		"-log-level", "info",
		"-hcl", "disable_update_check = true",
		// Room for the scale benchmarks' concurrent blocking queries (one connection each;
		// Consul's default is 200 per client address).
		"-hcl", "limits { http_max_conns_per_client = 16384 }",
	}
	for _, h := range a.hcl {
		args = append(args, "-hcl", h)
	}
	return args
}

// start launches the process and waits until it is ready; on failure the
// process is gone when start returns.
func (a *Agent) start() error {
	cmd := exec.Command(a.bin, a.args()...)
	cmd.Stdout = a.logs
	cmd.Stderr = a.logs
	setProcAttr(cmd)
	fmt.Fprintf(a.logs, "consultest: starting %s %v\n", a.bin, cmd.Args[1:])
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("consultest: start %s: %w", a.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if err := a.waitReady(ctx, p); err != nil {
		_ = kill(p)
		return fmt.Errorf("%w\n--- consul output (tail) ---\n%s", err, a.logs.tail(4096))
	}
	a.proc = p
	return nil
}

// exitedError says the agent exited before it was ready.
type exitedError struct{ err error }

func (e *exitedError) Error() string {
	return fmt.Sprintf("consultest: agent exited before it was ready: %v", e.err)
}
func (e *exitedError) Unwrap() error { return e.err }

// waitReady polls until the agent has a leader and a node in the catalog.
func (a *Agent) waitReady(ctx context.Context, p *process) error {
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		Timeout:   2 * time.Second,
	}
	base := "http://" + a.HTTPAddr
	var last error
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var leader string
		var nodes []json.RawMessage
		last = getJSON(ctx, client, base+"/v1/status/leader", &leader)
		if last == nil && leader == "" {
			last = errors.New("no leader yet")
		}
		if last == nil && a.member != nil {
			var node json.RawMessage
			last = getJSON(ctx, client, base+"/v1/catalog/node/"+a.member.name, &node)
			if last == nil && (len(node) == 0 || string(node) == "null") {
				last = fmt.Errorf("node %s not in the catalog yet", a.member.name)
			}
		} else if last == nil {
			last = getJSON(ctx, client, base+"/v1/catalog/nodes", &nodes)
			if last == nil && len(nodes) == 0 {
				last = errors.New("node not in the catalog yet")
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return &exitedError{err: p.err}
		case <-ctx.Done():
			return fmt.Errorf("consultest: agent not ready after %v: %w", ReadyTimeout, last)
		case <-tick.C:
		}
	}
}

func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// Stop kills the agent process (SIGKILL to its process group, like a crash)
// and waits for it to be reaped. Its ports then refuse connections until
// Restart. Stopping a stopped agent does nothing.
func (a *Agent) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopLocked()
}

func (a *Agent) stopLocked() error {
	if a.proc == nil {
		return nil
	}
	p := a.proc
	a.proc = nil
	fmt.Fprintf(a.logs, "consultest: stopping agent\n")
	return kill(p)
}

// kill ends p's process group and waits, bounded, for the process.
func kill(p *process) error {
	_ = killGroup(p.cmd)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("consultest: agent (pid %d) still running %v after SIGKILL", p.cmd.Process.Pid, stopTimeout)
	}
}

// Restart stops the agent if it is running and starts it again on the same
// ports, waiting until it is ready as Start does. The new agent has none of
// the old one's state (dev mode keeps it in memory). It returns [ErrClosed]
// after Close, and an error if a port was taken meanwhile.
func (a *Agent) Restart() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if err := a.stopLocked(); err != nil {
		return err
	}
	return a.start()
}

// Running reports whether the agent process is running (between a
// successful Start or Restart and Stop or Close).
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc != nil
}

// Close stops the agent for good. It is idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	return a.stopLocked()
}

// Logs returns the agent's output so far (stdout and stderr of every run,
// the last 4 MiB at most), for failure diagnostics.
func (a *Agent) Logs() string { return a.logs.String() }

// logBuffer is an io.Writer keeping the last max bytes written.
type logBuffer struct {
	max int

	mu  sync.Mutex
	buf []byte // guarded by mu
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - l.max; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

func (l *logBuffer) tail(n int) string {
	s := l.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
