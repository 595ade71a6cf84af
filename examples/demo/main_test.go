package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo runs, bounded, and shows what it claims: the proxyless client keeps nearly every
// request succeeding while the bare client loses those sent to the failing backends.
func TestDemoSmoke(t *testing.T) {
	var out bytes.Buffer
	o := options{duration: 3 * time.Second, rate: 100, workers: 16, quiet: true, slow: 100 * time.Millisecond, flapEvery: 500 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := demo(ctx, o, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"success rate", "p99 latency", "share healthy", "retries", "ejections", "breaker openings"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if s.bareRequests < 100 || s.meshReqs < 100 {
		t.Fatalf("too little load: %d bare, %d proxyless requests", s.bareRequests, s.meshReqs)
	}
	if s.meshSuccess < 0.99 {
		t.Errorf("proxyless success %.3f, want ≥ 0.99", s.meshSuccess)
	}
	if s.bareSuccess >= s.meshSuccess {
		t.Errorf("bare success %.3f not below proxyless %.3f: the scenario shows nothing", s.bareSuccess, s.meshSuccess)
	}
}

func TestFlagsAreValidated(t *testing.T) {
	for _, args := range [][]string{{"-duration", "0s"}, {"-rate", "0"}, {"-workers", "-1"}, {"-nope"}} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
