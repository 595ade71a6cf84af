package reload_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/route/reload"
)

// TestConsulConsumers follows an auth.Consumers registry from a Consul KV key of a real agent:
// a key moved to revokedKeys is refused once the watcher has loaded the new value, and a bad
// document is refused with its path and line while the last good registry stays.
func TestConsulConsumers(t *testing.T) {
	agent := shared.Agent(t)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("proxyless/consumers/test-%d", time.Now().UnixNano())
	put := func(doc string) {
		t.Helper()
		if _, err := client.KV().Put(&api.KVPair{Key: key, Value: []byte(doc)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	hash := auth.HashAPIKey("acme-key")
	reg, err := auth.NewConsumers(auth.ConsumersConfig{})
	if err != nil {
		t.Fatal(err)
	}
	res := &results{}
	put("plans: {gold: {perSecond: 10}}\nconsumers: [{name: acme, plan: gold, keys: [\"" + hash + "\"]}]\n")
	w, err := reload.Consul(reg, client, key, reload.WithHook(res.add))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	lookup := func() error { _, err := reg.ByKey("acme-key"); return err }
	waitFor(t, "the first registry from Consul", func() bool { return lookup() == nil })

	put("plans: {gold: {perSecond: 10}}\nconsumers: [{name: acme, plan: gold, revokedKeys: [\"" + hash + "\"]}]\n")
	waitFor(t, "the key to be revoked", func() bool { return errors.Is(lookup(), auth.ErrRevokedAPIKey) })
	version := reg.Version()

	put("plans: {gold: {perSecond: 10}}\nconsumers:\n  - {name: acme, plan: silver}\n")
	waitFor(t, "the bad document to be refused", func() bool { return res.errors() >= 1 })
	res.mu.Lock()
	msg := res.all[len(res.all)-1].Err.Error()
	res.mu.Unlock()
	if !strings.Contains(msg, `consumers[0].plan: unknown plan "silver"`) || !strings.Contains(msg, "line 3") {
		t.Fatalf("refusal %q does not name the field and its line", msg)
	}
	if reg.Version() != version || !errors.Is(lookup(), auth.ErrRevokedAPIKey) {
		t.Fatal("a refused document changed the registry")
	}
}
