// Command loadgen runs the sidecar comparison (see package internal/loadgen): a bare client, a
// proxyless client and a bare client through HAProxy against the same loopback backends. It is
// bounded: every run stops at -duration or -max-requests, whichever comes first.
//
//	go run ./cmd/loadgen -out out            # writes out/sidecar.json and out/sidecar.md
//	go run ./cmd/loadgen -rounds 2 -duration 1s -concurrency 1,8
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/proxyless/proxyless/benchmarks/internal/backend"
	"github.com/proxyless/proxyless/benchmarks/internal/loadgen"
)

func main() {
	backend.ServeIfChild() // the backends run in this same executable, in a child process
	var (
		setups   = flag.String("setups", "bare,proxyless,haproxy", "setups to compare (bare always runs)")
		concs    = flag.String("concurrency", "1,8", "closed-loop workers, one load level each")
		duration = flag.Duration("duration", 3*time.Second, "measured time of each run")
		maxReq   = flag.Int("max-requests", 300_000, "measured requests of each run at most")
		warmup   = flag.Duration("warmup", 200*time.Millisecond, "unmeasured time before each run")
		rounds   = flag.Int("rounds", 3, "rounds; every setup runs once per round and concurrency")
		haproxy  = flag.String("haproxy", "", "haproxy binary (default: PATH, then /usr/sbin/haproxy)")
		out      = flag.String("out", "", "directory for sidecar.json and sidecar.md (default: stdout only)")
	)
	flag.Parse()
	cfg := loadgen.Config{
		Setups: strings.Split(*setups, ","), Duration: *duration, MaxRequests: *maxReq,
		Warmup: *warmup, Rounds: *rounds, HAProxy: *haproxy, Log: os.Stderr,
	}
	for _, c := range strings.Split(*concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil {
			fatal(fmt.Errorf("-concurrency: %w", err))
		}
		cfg.Concurrency = append(cfg.Concurrency, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := loadgen.Compare(ctx, cfg)
	if err != nil {
		fatal(err)
	}
	md := rep.Markdown()
	fmt.Print(md)
	if *out == "" {
		return
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatal(err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "sidecar.json"), append(js, '\n'), 0o644); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "sidecar.md"), []byte(md), 0o644); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(1)
}
