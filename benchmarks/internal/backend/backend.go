// Package backend runs the sidecar comparison's HTTP backends in a child process of their own,
// so that the load generator's CPU accounting (getrusage of its own process) holds the client's
// work only, and the backends' CPU is read separately from /proc/<pid>/stat, as HAProxy's is.
//
// The child is the running executable itself, started again with an environment variable set:
// a program (or a TestMain) calls ServeIfChild first thing, which serves and never returns in
// the child and does nothing in the parent. No second binary is built or installed.
package backend

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

const envChild = "PROXYLESS_BENCH_BACKEND" // the number of listeners; set only in the child

// ServeIfChild serves the backends and exits when the process was started by Start; otherwise
// it returns at once.
func ServeIfChild() {
	v := os.Getenv(envChild)
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 64 {
		fmt.Fprintf(os.Stderr, "backend: bad %s=%q\n", envChild, v)
		os.Exit(2)
	}
	if err := serve(n, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Body is what every backend answers to every request, with status 200.
var Body = []byte("ok\n")

// serve listens on n loopback ports, writes "ports p1 p2 ...\n" to out, and serves until in
// reaches EOF (the parent closed it, or died).
func serve(n int, in io.Reader, out io.Writer) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(Body)))
		_, _ = w.Write(Body)
	})
	var srvs []*http.Server
	var ports []string
	var wg sync.WaitGroup
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
		srvs = append(srvs, srv)
		ports = append(ports, strconv.Itoa(lis.Addr().(*net.TCPAddr).Port))
		wg.Go(func() { _ = srv.Serve(lis) })
	}
	if _, err := fmt.Fprintf(out, "ports %s\n", strings.Join(ports, " ")); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, in) // until the parent closes our stdin
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range srvs {
		_ = s.Shutdown(ctx)
	}
	wg.Wait()
	return nil
}

// Process is a running backend child.
type Process struct {
	Addrs []string // host:port of each backend
	cmd   *exec.Cmd
	stdin io.WriteCloser
	once  sync.Once
	err   error
}

// Pid is the child's process id, for reading its CPU time.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Start runs n backends in a child process (this executable again) and waits, at most 10 s,
// until they listen. Stop it with Close.
func Start(n int) (*Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envChild+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		f := strings.Fields(s)
		if len(f) != n+1 || f[0] != "ports" {
			_ = p.Close()
			return nil, fmt.Errorf("backend: child said %q", s)
		}
		for _, port := range f[1:] {
			p.Addrs = append(p.Addrs, "127.0.0.1:"+port)
		}
		return p, nil
	case <-time.After(10 * time.Second):
		_ = p.Close()
		return nil, errors.New("backend: child did not listen within 10s")
	}
}

// Close stops the child: closing its stdin asks it to shut down; after 5 s it is killed.
// Close is idempotent.
func (p *Process) Close() error {
	p.once.Do(func() {
		_ = p.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case p.err = <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			p.err = <-done
		}
	})
	return p.err
}
