package reload_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route/reload"
)

// TestConsulConfig follows a middleware.Config, routes and destination policies together,
// from a Consul KV key of a real agent: a good document is applied, a bad one (a duration
// written as nanoseconds) refused with its path and line while the last good one stays.
func TestConsulConfig(t *testing.T) {
	agent := shared.Agent(t)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("proxyless/config/test-%d", time.Now().UnixNano())
	put := func(doc string) {
		t.Helper()
		if _, err := client.KV().Put(&api.KVPair{Key: key, Value: []byte(doc)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := middleware.NewConfig(middleware.Document{})
	if err != nil {
		t.Fatal(err)
	}
	res := &results{}
	put("routes: [{name: r, destination: {service: v1}}]\ndestinations:\n  v1:\n    timeout: 2s\n    retry: {maxRetries: 4}\n")
	w, err := reload.Consul(cfg, client, key, reload.WithHook(res.add))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	timeout := func() time.Duration { return cfg.Destinations()["v1"].Timeout }
	waitFor(t, "the first document from Consul", func() bool { return timeout() == 2*time.Second && service(cfg.Router()) == "v1" })
	if got := cfg.Destinations()["v1"].Retry.MaxRetries; got != 4 {
		t.Fatalf("maxRetries %d, want 4", got)
	}
	put("routes: [{name: r, destination: {service: v2}}]\ndestinations:\n  v1:\n    timeout: 3000000000\n")
	waitFor(t, "the bad document to be refused", func() bool { return res.errors() >= 1 })
	res.mu.Lock()
	msg := res.all[len(res.all)-1].Err.Error()
	res.mu.Unlock()
	if !strings.Contains(msg, "destinations.v1.timeout: want a duration string") || !strings.Contains(msg, "line 4") {
		t.Fatalf("refusal %q does not name the field and its line", msg)
	}
	if timeout() != 2*time.Second || service(cfg.Router()) != "v1" {
		t.Fatal("a refused document changed the configuration")
	}
	put(`{"routes": [{"name": "r", "destination": {"service": "v2"}}], "destinations": {"v1": {"timeout": "5s"}}}`)
	waitFor(t, "the JSON document from Consul", func() bool { return timeout() == 5*time.Second && service(cfg.Router()) == "v2" })
}
