package route_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/proxyless/proxyless/route"
)

func TestFallbackIsTheStableDestination(t *testing.T) {
	tbl := mustCompile(t, canaryDoc, route.WithTrust(func(*route.Request) bool { return true }))
	var canary, stable int
	for range 2000 {
		rq := route.Request{Path: "/checkout"}
		d, _ := tbl.Lookup(&rq)
		if d.Canary {
			canary++
			if d.Fallback == nil || d.Fallback.Subset.Meta["version"] != "v1" {
				t.Fatalf("canary side falls back to %+v, want the stable v1", d.Fallback)
			}
		} else {
			stable++
			if d.Fallback != nil {
				t.Fatalf("the stable side has a fallback: %+v", d.Fallback)
			}
		}
	}
	if canary == 0 || stable == 0 {
		t.Fatalf("canary %d, stable %d: both sides must be drawn", canary, stable)
	}
	// A trusted caller pinned to the canary does not fall back: it asked for the canary.
	rq := route.Request{Path: "/checkout", Header: map[string][]string{"X-Canary": {"canary"}}}
	if d, _ := tbl.Lookup(&rq); !d.Pinned || !d.Canary || d.Fallback != nil {
		t.Fatalf("pinned decision %+v", d)
	}

	off := mustCompile(t, strings.Replace(canaryDoc, "    canary:\n", "    fallback: false\n    canary:\n", 1))
	if fb := off.Routes()[0].Fallback(); fb != nil {
		t.Fatalf("fallback: false still falls back to %+v", fb)
	}
	for range 200 {
		rq := route.Request{Path: "/checkout"}
		if d, _ := off.Lookup(&rq); d.Fallback != nil {
			t.Fatal("a decision of a route with fallback: false has a fallback")
		}
	}
}

func TestFallbackOfSplitIsHeaviestArm(t *testing.T) {
	tbl := mustCompile(t, splitDoc("shop"))
	if fb := tbl.Routes()[0].Fallback(); fb == nil || fb.Service != "a" {
		t.Fatalf("split fallback %+v, want the heaviest arm a", fb)
	}
	for range 1000 {
		rq := route.Request{Host: "shop"}
		d, _ := tbl.Lookup(&rq)
		switch want := d.Destination.Service != "a"; {
		case want && (d.Fallback == nil || d.Fallback.Service != "a"):
			t.Fatalf("arm %s falls back to %+v", d.Destination.Service, d.Fallback)
		case !want && d.Fallback != nil:
			t.Fatalf("the heaviest arm itself falls back to %+v", d.Fallback)
		}
	}
}

func TestFallbackOnlyWithSplitOrCanary(t *testing.T) {
	cfg, err := route.ParseConfig([]byte("routes:\n  - match: {hosts: [a]}\n    destination: {service: a}\n    fallback: true\n"))
	if err == nil {
		_, err = route.Compile(cfg)
	}
	var ce *route.ConfigError
	if !errors.As(err, &ce) || ce.Path != "routes[0].fallback" || !errors.Is(err, route.ErrInvalidConfig) {
		t.Fatalf("got %v, want a ConfigError at routes[0].fallback", err)
	}
	// camelCase JSON works too.
	if _, err := route.ParseConfig([]byte(`{"routes":[{"fallback":false,"canary":{"stable":{"service":"a"},"canary":{"service":"b"},"weight":5}}]}`)); err != nil {
		t.Fatal(err)
	}
}

// WithServiceCheck refuses, at load and at every reload, a table naming a service the check
// refuses, naming its path; the table in force stays.
func TestServiceCheckAtLoadAndReload(t *testing.T) {
	known := map[string]bool{"a": true, "b": true}
	check := route.WithServiceCheck(func(s string) error {
		if !known[s] {
			return errors.New("unknown service " + s)
		}
		return nil
	})
	good := "routes:\n  - canary: {stable: {service: a}, canary: {service: b}, weight: 5}\n"
	bad := "routes:\n  - canary: {stable: {service: a}, canary: {service: ghost}, weight: 5}\n"
	cfg, err := route.ParseConfig([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	_, err = route.NewRouter(cfg, check)
	var ce *route.ConfigError
	if !errors.As(err, &ce) || ce.Path != "routes[0].canary.canary.service" || !strings.Contains(err.Error(), "unknown service ghost") {
		t.Fatalf("NewRouter: %v", err)
	}
	cfg, _ = route.ParseConfig([]byte(good))
	r, err := route.NewRouter(cfg, check)
	if err != nil {
		t.Fatal(err)
	}
	v := r.Version()
	if err := r.Load([]byte(bad)); !errors.As(err, &ce) || ce.Path != "routes[0].canary.canary.service" {
		t.Fatalf("reload: %v", err)
	}
	if r.Version() != v {
		t.Fatal("the refused reload replaced the table")
	}
	shadow := "routes:\n  - shadow: {destination: {service: nope}}\n"
	if err := r.Load([]byte(shadow)); !errors.As(err, &ce) || ce.Path != "routes[0].shadow.destination.service" {
		t.Fatalf("shadow: %v", err)
	}
}
