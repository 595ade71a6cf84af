// Command gateway shows the north-south half of proxyless: an edge API gateway, built from
// the same packages as the mesh client, in front of two internal services.
//
// It starts two internal services on loopback, "catalog" (two versions, v1 and v2, told apart
// by their discovery tags) and "orders", and finds them through discovery: a static resolver
// holding their loopback addresses, where a deployment would use Consul (discovery/consul).
// The gateway (middleware.NewGateway) is a reverse proxy over the mesh client
// (middleware.NewTransport, with a route table that sends /orders/ to orders and puts a
// canary at 10 % on catalog), with the edge stages in front: CORS, a request body limit,
// per-route edge settings, and consumers on plans.
//
// The consumers are three, on two plans: alice and bob on "gold", carol on "free". Their API
// keys are generated at start and stored hashed in a registry document the program writes in
// a temporary directory; a route/reload.File watcher keeps the registry in step with the
// file, so that revoking a key is a file edit.
//
// A short scripted load then prints one row per scenario: normal traffic, a consumer over
// quota (429 naming the plan), a revoked key (401 after one reload), a CORS preflight from
// an allowed and from a refused origin, a forged X-Forwarded-For, an oversized body (413),
// and the canary's observed share.
//
// It listens on 127.0.0.1 only and exits by itself within about 15 seconds.
//
//	go run ./examples/gateway
//	go run ./examples/gateway -canary-requests 2000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// options are what the flags set.
type options struct {
	canaryRequests int           // requests sent to measure the canary's share
	timeout        time.Duration // bound on the whole run
}

func run(args []string, out io.Writer) error {
	o, err := parseFlags(args, out)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, err = gateway(ctx, o, out)
	return err
}

func parseFlags(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(out)
	var o options
	fs.IntVar(&o.canaryRequests, "canary-requests", 1000, "requests sent to measure the canary's share")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.canaryRequests < 100 || o.canaryRequests > 100000:
		return o, errors.New("-canary-requests must be between 100 and 100000")
	case o.timeout <= 0:
		return o, errors.New("-timeout must be positive")
	}
	return o, nil
}
