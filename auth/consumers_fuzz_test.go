package auth_test

import (
	"errors"
	"testing"

	"github.com/proxyless/proxyless/auth"
)

// FuzzConsumersLoad feeds registry documents to Consumers.Load: it must never panic; a refused
// document is a *ConsumersConfigError and leaves the registry as it was (same version, same
// answers); a taken one counts a version and identifies every consumer's subjects, and reads
// back from its own JSON. Fuzz with:
//
//	go test -run '^$' -fuzz FuzzConsumersLoad ./auth/
func FuzzConsumersLoad(f *testing.F) {
	k := auth.HashAPIKey("k")
	for _, seed := range []string{
		doc(),
		"consumers: []",
		"plans: {p: {perSecond: 1.5, burst: 3, perDay: 10, routes: [a, b]}}\nconsumers: [{name: a, plan: p, keys: [" + k + "], subjects: [s]}]",
		`{"plans": {"p": {"perDay": 2147483647}}, "consumers": [{"name": "a@b:c", "plan": "p", "revokedKeys": ["` + k + `"]}]}`,
		"plans: {p: {perSecond: .inf}}",
		"plans: {p: {perSecond: .nan}}",
		"plans: {p: {perDay: 1e30}}",
		"plans: &a {p: {}}\nconsumers: [{name: x, plan: p}]\nextra: *a",
		"consumers: [{name: a, plan: p}]",
		"{\"plans\": {\"p\": {}}, \"consumers\": [{\"name\": \"a\", \"plan\": \"p\", \"subjects\": [\"\"]}]",
		"plans:\n  p: {}\n  p: {}",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		reg, err := auth.NewConsumers(auth.ConsumersConfig{
			Plans:     map[string]auth.Plan{"base": {}},
			Consumers: []auth.ConsumerConfig{{Name: "base", Plan: "base", Keys: []string{auth.HashAPIKey("base-key")}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		err = reg.Load(data)
		if err != nil {
			var ce *auth.ConsumersConfigError
			if !errors.As(err, &ce) || !errors.Is(err, auth.ErrInvalidConsumers) {
				t.Fatalf("error %v (%T) is not a *ConsumersConfigError", err, err)
			}
			if c, lerr := reg.ByKey("base-key"); lerr != nil || c.Name != "base" || reg.Version() != 1 {
				t.Fatalf("a refused document changed the registry: %+v, %v, version %d", c, lerr, reg.Version())
			}
			return
		}
		if reg.Version() != 2 {
			t.Fatalf("version %d after one load", reg.Version())
		}
		cfg := reg.Config()
		for _, cc := range cfg.Consumers {
			for _, s := range cc.Subjects {
				c, err := reg.BySubject(s)
				if err != nil || c.Name != cc.Name || c.Plan != cc.Plan {
					t.Fatalf("subject %q: %+v, %v; want consumer %q", s, c, err, cc.Name)
				}
			}
		}
		j, err := cfg.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := auth.ParseConsumersConfig(j); err != nil && (len(cfg.Plans) != 0 || len(cfg.Consumers) != 0) {
			t.Fatalf("the accepted document does not read back from %s: %v", j, err)
		}
	})
}
