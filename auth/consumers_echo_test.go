package auth_test

import (
	"strings"
	"testing"

	"github.com/proxyless/proxyless/auth"
)

// TestConsumersConfigErrorsHideKeys checks that a registry document with a key in clear in
// the wrong shape (a bare value where a list is wanted, a number) is refused with an error
// naming the field but not showing the value: reload errors are logged.
func TestConsumersConfigErrorsHideKeys(t *testing.T) {
	const key = "sk_live_0123456789abcdef"
	for _, doc := range []string{
		"plans: {gold: {}}\nconsumers:\n  - {name: a, plan: gold, keys: " + key + "}\n",
		"plans: {gold: {}}\nconsumers:\n  - {name: a, plan: gold, revokedKeys: " + key + "}\n",
		`{"plans": {"gold": {}}, "consumers": [{"name": "a", "plan": "gold", "keys": "` + key + `"}]}`,
		`{"plans": {"gold": {}}, "consumers": [{"name": "a", "plan": "gold", "keys": [` + "12345678901234567890" + `]}]}`,
	} {
		_, err := auth.ParseConsumersConfig([]byte(doc))
		if err == nil {
			t.Fatalf("%q: accepted", doc)
		}
		msg := err.Error()
		if strings.Contains(msg, "sk_live") || strings.Contains(msg, "1234567890") {
			t.Errorf("error shows the key: %s", msg)
		}
		if !strings.Contains(strings.ToLower(msg), "keys") {
			t.Errorf("error does not name the field: %s", msg)
		}
	}
}
