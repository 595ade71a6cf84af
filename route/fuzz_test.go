package route_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/proxyless/proxyless/route"
)

// fuzzInputBound is how long one input may take to parse and compile.
const fuzzInputBound = time.Second

// FuzzCompile feeds documents to ParseConfig and compiles what it accepts, failing when one
// input takes over fuzzInputBound, and checks that the compiled table answers a lookup. Its
// seeds run under go test; fuzz it with:
//
//	go test -run '^$' -fuzz FuzzCompile ./route/
func FuzzCompile(f *testing.F) {
	for _, seed := range []string{
		"",
		"routes: []",
		"{}",
		"routes: [{match: {hosts: [a, b, \"*.c\"], path: {regex: \"/v[0-9]+/.*\"}}, destination: {service: a}}]",
		"routes: [{split: [{service: a, weight: 3}, {service: b, weight: 1}], sticky: {header: x-user}}]",
		"routes: [{split: [{service: a, weight: 1.5}]}]",
		"routes: [{split: [{service: a}, {service: b}]}]",
		"routes: [{match: {path: {regex: \"x{1000}\"}}}]",
		"routes: [{match: {path: {regex: \"((a*)*)*b\"}}}]",
		"routes: [{match: {headers: [{name: x-chaos, exact: on}]}, fault: {delay: {fixed: 1h}}}]",
		"routes: [{fault: {delay: {mean: 1s}, abort: {percent: 0}}}]",
		"limits: {maxFaultDelay: 1m, maxDelayedRequests: 5, maxRegexProgramSize: 1000}\nroutes: [{fault: {delay: {fixed: 30s}}}]",
		"routes: [{requestHeaders: {set: {x-a: \"a\\x01b\"}}}]",
		"routes: [{canary: {stable: {service: a}, canary: {service: b}, weight: 5, override: {header: x-canary}, analysis: {}}}]",
		"routes: [{fallback: false, canary: {stable: {service: a}, canary: {service: b}, weight: 5}}, {fallback: true, destination: {service: a}}]",
		"routes: [{shadow: {destination: {service: s}, percent: 10}}]",
		"routes: [{rewrite: {regex: \"^/a/(.*)\", substitution: \"/b/$1\"}}]",
		"default: {destination: {service: d}}",
		"routes: [{hashPolicy: [{header: x-user, terminal: true}, {cookie: s}, {queryParameter: q}, {sourceIP: true}, {contextKey: true}, {metadata: x-m}]}]",
		"routes: [{hashPolicy: [{header: x-user, cookie: s}]}]",
		`{"routes": [{"hashPolicy": [{"metadata": "x-bin"}, {}]}]}`,
		`{"routes": [{"match": {"hosts": ["a"]}, "destination": {"service": "a"}}]}`,
		`{"routes": [{"split": [{"service": "a", "weight": 1e3}]}]}`,
		"a: &a [*a, *a, *a, *a]\nroutes: *a",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		// An input that never finishes would only stall the fuzzer: a watchdog fails it
		// (crashing the process, so that the fuzzer records the input).
		watchdog := time.AfterFunc(2*fuzzInputBound, func() {
			panic(fmt.Sprintf("route: fuzz input still running after %v: %q", 2*fuzzInputBound, truncated(doc)))
		})
		defer watchdog.Stop()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		cfg, err := route.ParseConfig(doc)
		if err == nil {
			var tbl *route.Table
			if tbl, err = route.Compile(cfg); err != nil {
				t.Fatalf("ParseConfig accepted what Compile refuses: %v", err)
			}
			rq := route.Request{Host: "a", Path: "/v1/x", Method: "GET"}
			tbl.Lookup(&rq)
		}
		if took := time.Since(start); took > fuzzInputBound {
			t.Fatalf("input of %d bytes took %v", len(doc), took)
		}
		// And bounded memory: what parsing and compiling allocated, in all, stays within a
		// fixed allowance plus a multiple of the input (an alias bomb or a regex that
		// compiles to a huge program would not).
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if grew, bound := after.TotalAlloc-before.TotalAlloc, fuzzMemBound(len(doc)); grew > bound {
			t.Fatalf("input of %d bytes allocated %d bytes (bound %d)", len(doc), grew, bound)
		}
	})
}

func truncated(b []byte) []byte {
	if len(b) > 4096 {
		return b[:4096]
	}
	return b
}

// fuzzMemBound is the most one fuzz input may allocate: 64 MiB, plus 4 KiB per input byte.
func fuzzMemBound(n int) uint64 { return 64<<20 + 4096*uint64(n) }
