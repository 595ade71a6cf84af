// Command consulmesh shows proxyless services as Connect-native members of a Consul service
// mesh, calling and called by services that keep Consul's own sidecar.
//
// It uses a Consul dev agent (started for the run from $PROXYLESS_CONSUL_BIN unless -consul
// names one) and runs, all on loopback:
//
//   - payments: a proxyless HTTPS server, Connect-native (connect.Mesh: its leaf certificate
//     from the agent, each request authorized by intentions);
//   - legacy: a plain HTTP server behind `consul connect proxy -sidecar-for legacy-1`;
//   - shop: a client behind `consul connect proxy` with an upstream listener for payments;
//   - web: a proxyless client (middleware.NewTransport over the mesh's transport and
//     resolver).
//
// It calls across in both directions, then flips the intention shop => payments from allow to
// deny and back while shop keeps one connection open (payments refuses on that very
// connection, per request), and does the same for web => legacy (the sidecar refuses new
// connections only). Last, web follows payments' discovery chain (connect.Mesh.WatchChains)
// while a service-splitter moves from 90/10 to 50/50 between its versions v1 and v2. It prints
// what happens and exits by itself.
//
//	go run ./examples/consulmesh
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/internal/consultest"
	"github.com/proxyless/proxyless/internal/testenv"
	"github.com/proxyless/proxyless/middleware"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "consulmesh:", err)
		os.Exit(1)
	}
}

type options struct {
	consul    string        // agent address; "" starts one
	consulBin string        // the consul binary, for `consul connect proxy` (and the agent)
	timeout   time.Duration // bound on the whole run
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("consulmesh", flag.ContinueOnError)
	fs.SetOutput(out)
	var o options
	fs.StringVar(&o.consul, "consul", "", "address of a Consul agent with Connect on (default: start a dev agent)")
	fs.StringVar(&o.consulBin, "consul-bin", "", "the consul binary (default: $"+testenv.ConsulBinEnv+")")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.timeout <= 0:
		return errors.New("-timeout must be positive")
	}
	if o.consulBin == "" {
		bin, err := testenv.ConsulBinary()
		if err != nil {
			return fmt.Errorf("no -consul-bin, and %w", err)
		}
		o.consulBin = bin
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, err := example(ctx, o, out)
	return err
}

// summary is what a run saw, for the smoke test.
type summary struct {
	webToLegacy, shopToPayments int    // first calls' statuses
	shopIdentity                string // the identity payments saw for shop
	deniedOnOpenConn            bool   // payments refused shop on the connection opened before the deny
	denyAfter                   time.Duration
	shopAgain                   int  // status after the allow
	webRefusedBySidecar         bool // the sidecar refused web's new connection after the deny
	webAgain                    int
	v2Share                     [2]float64 // the share of payments v2 under the 90/10, then the 50/50 splitter
}

// world is what a run starts, closed in reverse.
type world struct {
	agent   string
	client  *api.Client
	closers []func()
}

func (w *world) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

func example(ctx context.Context, o options, out io.Writer) (summary, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	w := &world{}
	defer w.close()
	if err := w.startAgent(o, out); err != nil {
		return summary{}, err
	}
	payments, err := w.join(ctx, "payments")
	if err != nil {
		return summary{}, err
	}
	web, err := w.join(ctx, "web")
	if err != nil {
		return summary{}, err
	}
	for _, version := range []string{"v1", "v2"} {
		if err := w.servePayments(ctx, payments, version, out); err != nil {
			return summary{}, err
		}
	}
	upstream, err := w.startSidecars(ctx, o.consulBin, out)
	if err != nil {
		return summary{}, err
	}
	return w.scenario(ctx, web, upstream, out)
}

func (w *world) startAgent(o options, out io.Writer) error {
	addr, origin := o.consul, "given by -consul"
	if addr == "" {
		a, err := consultest.Start(o.consulBin)
		if err != nil {
			return err
		}
		w.closers = append(w.closers, func() { _ = a.Close() })
		addr, origin = a.HTTPAddr, "a dev agent started for this run"
	}
	fmt.Fprintf(out, "consul agent %s (%s)\n", addr, origin)
	w.agent = addr
	c, err := consul.NewAPIClient(consul.Config{Address: addr})
	w.client = c
	return err
}

func (w *world) join(ctx context.Context, service string) (*connect.Mesh, error) {
	m, err := connect.New(ctx, connect.Config{Consul: consul.Config{Address: w.agent, RetryMax: time.Second}, Service: service})
	if err != nil {
		return nil, err
	}
	w.closers = append(w.closers, func() { _ = m.Close() })
	return m, nil
}

// servePayments runs an instance of payments, Connect-native (the mesh's TLS, intentions per
// request), with the metadata version=<version>.
func (w *world) servePayments(ctx context.Context, m *connect.Mesh, version string, out io.Writer) error {
	hello := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		p, _ := auth.PeerFromContext(r.Context()) // the authorizer put the caller there
		fmt.Fprintf(rw, "payments %s: hello %s", version, p.SPIFFEID)
	})
	h, err := middleware.NewHandler(hello, middleware.WithMesh(m))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, TLSConfig: m.ServerTLS(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	w.closers = append(w.closers, func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	dereg, err := m.Register(ctx, consul.Registration{Address: "127.0.0.1", Port: port,
		Meta:  map[string]string{"version": version},
		Check: &consul.Check{TCP: ln.Addr().String(), Interval: time.Second}})
	if err != nil {
		return err
	}
	w.closers = append(w.closers, func() { _ = dereg(context.Background()) })
	fmt.Fprintf(out, "payments  %s: proxyless, Connect-native, https://%s as %s\n", version, ln.Addr(), m.Identity().URI())
	return nil
}

// startSidecars runs legacy (plain HTTP) and shop (a client), each with
// `consul connect proxy`, and returns shop's upstream address for payments.
func (w *world) startSidecars(ctx context.Context, bin string, out io.Writer) (string, error) {
	ports, err := testenv.FreePorts(4)
	if err != nil {
		return "", err
	}
	legacy, err := w.plainServer("legacy: hello")
	if err != nil {
		return "", err
	}
	upstream := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
	regs := []*api.AgentServiceRegistration{
		sidecarred("legacy-1", "legacy", legacy, ports[0], nil),
		sidecarred("shop-1", "shop", ports[3], ports[1], []api.Upstream{
			{DestinationName: "payments", LocalBindAddress: "127.0.0.1", LocalBindPort: ports[2]}}),
	}
	for _, reg := range regs {
		if err := w.client.Agent().ServiceRegister(reg); err != nil {
			return "", err
		}
		id := reg.ID
		w.closers = append(w.closers, func() { _ = w.client.Agent().ServiceDeregister(id) })
		if err := w.proxy(ctx, bin, id); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(out, "legacy    plain HTTP on port %d behind `consul connect proxy` (public listener port %d)\n", legacy, ports[0])
	fmt.Fprintf(out, "shop      a client behind `consul connect proxy`, payments at http://%s\n", upstream)
	return upstream, nil
}

func sidecarred(id, name string, port, sidecarPort int, ups []api.Upstream) *api.AgentServiceRegistration {
	return &api.AgentServiceRegistration{ID: id, Name: name, Address: "127.0.0.1", Port: port,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Address: "127.0.0.1", Port: sidecarPort, Proxy: &api.AgentServiceConnectProxyConfig{Upstreams: ups}}}}
}

func (w *world) plainServer(body string) (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(rw, body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	w.closers = append(w.closers, func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proxy runs `consul connect proxy -sidecar-for id` until the run ends.
func (w *world) proxy(ctx context.Context, bin, id string) error {
	pctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(pctx, bin, "connect", "proxy", "-sidecar-for", id, "-http-addr", w.agent)
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	w.closers = append(w.closers, func() { cancel(); <-done })
	return nil
}
