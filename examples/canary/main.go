// Command canary shows a canary release driven by a route file, guarded by automated canary
// analysis, with a shadow of a third version on the side.
//
// It starts three versions of a service, "shop", on loopback: v1 (stable) and v2 (the canary),
// two endpoints of the service tagged by version, and v3, a service of its own, "shop-v3",
// that receives a mirrored copy of a quarter of the requests. v3 has a bug: it prices every
// fifth item differently, which the shadow comparison counts as mismatches; its answers never
// reach the client.
//
// A proxyless client (middleware.NewTransport) routes with a route.Router that a
// reload.File watcher keeps in step with a route file the program writes in a temporary
// directory. The program then edits the file as an operator would, moving the canary's
// share from 1 % to 50 % to 100 %, and sends a batch of requests after each edit, printing
// the shares it observed. Then v2 starts failing: the canary analysis sees its error rate
// and rolls the canary back to 0 % by itself, while the file still says 100 %. A last batch
// shows every request back on v1. The shadow's counts (copies mirrored, answers that matched
// the primary's or differed) are read from the client's Transport.Stats().Shadow.
//
// It listens on 127.0.0.1 only and exits by itself within about 20 seconds.
//
//	go run ./examples/canary
//	go run ./examples/canary -requests 2000
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
		fmt.Fprintln(os.Stderr, "canary:", err)
		os.Exit(1)
	}
}

// options are what the flags set.
type options struct {
	requests int           // requests per phase
	workers  int           // concurrent clients
	timeout  time.Duration // bound on the whole run
}

func run(args []string, out io.Writer) error {
	o, err := parseFlags(args, out)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, err = canary(ctx, o, out)
	return err
}

func parseFlags(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("canary", flag.ContinueOnError)
	fs.SetOutput(out)
	var o options
	fs.IntVar(&o.requests, "requests", 1000, "requests sent in each phase")
	fs.IntVar(&o.workers, "workers", 4, "concurrent clients")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.requests < 100:
		return o, errors.New("-requests must be at least 100")
	case o.workers < 1 || o.workers > 64:
		return o, errors.New("-workers must be between 1 and 64")
	case o.timeout <= 0:
		return o, errors.New("-timeout must be positive")
	}
	return o, nil
}
