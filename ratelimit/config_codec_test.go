package ratelimit_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/ratelimit"
)

// TestKeyedConfigCamelCase: the keys are camelCase in YAML and JSON, durations are strings,
// and the snake_case spelling of earlier releases is refused rather than read as zero.
func TestKeyedConfigCamelCase(t *testing.T) {
	want := ratelimit.KeyedConfig{
		Default:     ratelimit.Quota{Rate: 5, Burst: 10},
		Overrides:   map[string]ratelimit.Quota{"gold": {Rate: 100}},
		MaxKeys:     500,
		IdleTimeout: 90 * time.Second,
	}
	var y ratelimit.KeyedConfig
	if err := yaml.Unmarshal([]byte("default: {rate: 5, burst: 10}\noverrides: {gold: {rate: 100}}\nmaxKeys: 500\nidleTimeout: 1m30s\n"), &y); err != nil {
		t.Fatal(err)
	}
	var j ratelimit.KeyedConfig
	if err := json.Unmarshal([]byte(`{"default": {"rate": 5, "burst": 10}, "overrides": {"gold": {"rate": 100}}, "maxKeys": 500, "idleTimeout": "1m30s"}`), &j); err != nil {
		t.Fatal(err)
	}
	for _, got := range []ratelimit.KeyedConfig{y, j} {
		if got.IdleTimeout != want.IdleTimeout || got.MaxKeys != want.MaxKeys || got.Default != want.Default || got.Overrides["gold"] != want.Overrides["gold"] {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	var bad ratelimit.KeyedConfig
	err := yaml.Unmarshal([]byte("default: {rate: 1}\nidle_timeout: 1m\n"), &bad)
	if err == nil || !strings.Contains(err.Error(), `unknown field "idle_timeout" (did you mean "idleTimeout"?)`) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("snake_case key: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"idleTimeout": 60000000000}`), &bad); err == nil || !strings.Contains(err.Error(), "idleTimeout") {
		t.Fatalf("nanoseconds accepted: %v", err)
	}
	b, err := json.Marshal(want)
	if err != nil || !strings.Contains(string(b), `"idleTimeout":"1m30s"`) {
		t.Fatalf("%s %v", b, err)
	}
}

// TestKeyedConfigIdleTimeoutHonoured: an idleTimeout read from a document is the one the
// limiter runs with: keys whose buckets have been full for longer are dropped as a new key
// arrives. With the default (1 minute), as a misread key would leave it, they would stay.
func TestKeyedConfigIdleTimeoutHonoured(t *testing.T) {
	var cfg ratelimit.KeyedConfig
	if err := yaml.Unmarshal([]byte("default: {rate: 1000, burst: 1}\nmaxKeys: 10\nshards: 1\nidleTimeout: 2s\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	lim, err := ratelimit.NewKeyed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	lim.AllowAt("a", t0)
	lim.AllowAt("b", t0.Add(1500*time.Millisecond))
	if n := lim.Len(); n != 2 {
		t.Fatalf("%d keys after 1.5 s, want 2 (none idle for 2 s yet)", n)
	}
	lim.AllowAt("c", t0.Add(5*time.Second))
	if n := lim.Len(); n != 1 {
		t.Fatalf("%d keys after 5 s, want 1: a and b idle for over the document's 2 s", n)
	}
}
