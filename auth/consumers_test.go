package auth_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/auth"
)

const consumersDoc = `plans:
  gold: {perSecond: 100, burst: 200, perDay: 100000}
  silver:
    perSecond: 10
    routes: [catalog]
consumers:
  - name: acme
    plan: gold
    keys: ["%acme%"]
    revokedKeys: ["%old%"]
  - name: reports-job
    plan: silver
    keys: ["%reports%"]
    subjects: ["spiffe://example.org/reports"]
`

// doc returns consumersDoc with the placeholders replaced by the hashes of the keys.
func doc() string {
	return strings.NewReplacer(
		"%acme%", auth.HashAPIKey("k-acme"),
		"%old%", auth.HashAPIKey("k-acme-old"),
		"%reports%", auth.HashAPIKey("k-reports"),
	).Replace(consumersDoc)
}

func TestHashAPIKey(t *testing.T) {
	// SHA-256 of "test", from FIPS 180 test tools.
	assert.Equal(t, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", auth.HashAPIKey("test"))
}

func TestConsumersLookups(t *testing.T) {
	cfg, err := auth.ParseConsumersConfig([]byte(doc()))
	require.NoError(t, err)
	reg, err := auth.NewConsumers(cfg)
	require.NoError(t, err)
	assert.EqualValues(t, 1, reg.Version())

	c, err := reg.ByKey("k-acme")
	require.NoError(t, err)
	assert.Equal(t, "acme", c.Name)
	assert.Equal(t, "gold", c.Plan)
	assert.Equal(t, auth.Plan{PerSecond: 100, Burst: 200, PerDay: 100000}, c.Limits)

	for _, tc := range []struct {
		key  string
		want error
	}{
		{"k-acme-old", auth.ErrRevokedAPIKey},
		{"k-nobody", auth.ErrUnknownAPIKey},
		{"", auth.ErrUnknownAPIKey},
		{auth.HashAPIKey("k-acme"), auth.ErrUnknownAPIKey}, // the stored hash is not a key
		{strings.Repeat("k", auth.MaxAPIKeyBytes+1), auth.ErrUnknownAPIKey},
	} {
		c, err := reg.ByKey(tc.key)
		assert.ErrorIs(t, err, tc.want, "key %.20q", tc.key)
		assert.Zero(t, c)
	}

	c, err = reg.BySubject("spiffe://example.org/reports")
	require.NoError(t, err)
	assert.Equal(t, "reports-job", c.Name)
	assert.Equal(t, []string{"catalog"}, c.Limits.Routes)
	_, err = reg.BySubject("spiffe://example.org/other")
	assert.ErrorIs(t, err, auth.ErrUnknownSubject)
	_, err = reg.BySubject("")
	assert.ErrorIs(t, err, auth.ErrUnknownSubject)

	// The registry copied the document: changing it changes nothing.
	cfg.Plans["gold"] = auth.Plan{PerSecond: 1}
	cfg.Consumers[0].Name = "mallory"
	c, err = reg.ByKey("k-acme")
	require.NoError(t, err)
	assert.Equal(t, "acme", c.Name)
	assert.EqualValues(t, 100, c.Limits.PerSecond)
}

// A bad document is refused with the field's path and line, and the registry keeps the last
// good one.
func TestConsumersLoadKeepsLastGood(t *testing.T) {
	reg, err := auth.NewConsumers(auth.ConsumersConfig{Plans: map[string]auth.Plan{"p": {}}})
	require.NoError(t, err)
	require.NoError(t, reg.Load([]byte(doc())))
	assert.EqualValues(t, 2, reg.Version())

	bad := strings.Replace(doc(), "plan: silver", "plan: platinum", 1)
	err = reg.Load([]byte(bad))
	require.ErrorIs(t, err, auth.ErrInvalidConsumers)
	assert.Contains(t, err.Error(), `consumers[1].plan: unknown plan "platinum"`)
	assert.Contains(t, err.Error(), "(line 12, column 11)")
	for _, empty := range []string{"", "  \n# nothing\n", "{}", "null"} {
		assert.ErrorIs(t, reg.Load([]byte(empty)), auth.ErrInvalidConsumers, "%q", empty)
	}
	assert.EqualValues(t, 2, reg.Version())
	_, err = reg.ByKey("k-reports")
	assert.NoError(t, err, "the last good registry still serves")

	require.NoError(t, reg.Load([]byte("consumers: []")), "an empty registry, said so")
	_, err = reg.ByKey("k-reports")
	assert.ErrorIs(t, err, auth.ErrUnknownAPIKey)
}

func TestConsumersConfigErrors(t *testing.T) {
	k := auth.HashAPIKey("k")
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown field", "plans: {p: {perMinute: 3}}", "plans.p.perMinute: unknown field \"perMinute\" (line 1, column 13)"},
		{"snake case", "consumers: [{name: a, plan: p, revoked_keys: []}]", `did you mean "revokedKeys"`},
		{"negative per second", "plans:\n  p: {perSecond: -1}\n", "plans.p.perSecond: -1 is outside 0 (no limit) to 1e+06 (line 2, column 18)"},
		{"negative per day", "plans:\n  p:\n    perDay: -5\n", "plans.p.perDay: -5 is outside 0 (no daily quota) to 2147483647 (line 3, column 13)"},
		{"negative burst", "plans: {p: {perSecond: 1, burst: -2}}", "plans.p.burst: -2 is outside"},
		{"burst alone", "plans: {p: {burst: 2}}", "plans.p.burst: is set without perSecond"},
		{"slow refill", "plans: {p: {perSecond: 0.000001, burst: 100}}", "over a year to refill"},
		{"bad plan name", `plans: {"a b": {}}`, `plans["a b"]: plan name "a b"`},
		{"route twice", "plans: {p: {routes: [a, a]}}", `plans.p.routes[1]: route "a" is listed twice`},
		{"empty route", "plans: {p: {routes: [\"\"]}}", `plans.p.routes[0]: empty route name`},
		{"no name", "plans: {p: {}}\nconsumers: [{plan: p}]", "consumers[0].name: consumer name"},
		{"bad name", "plans: {p: {}}\nconsumers: [{name: \"a\\nb\", plan: p}]", "consumers[0].name"},
		{"same name", "plans: {p: {}}\nconsumers: [{name: a, plan: p}, {name: a, plan: p}]", `consumers[1].name: consumer "a" is also consumers[0]`},
		{"no plan", "plans: {p: {}}\nconsumers: [{name: a}]", `consumers[0].plan: unknown plan ""`},
		{"key in clear", "plans: {p: {}}\nconsumers: [{name: a, plan: p, keys: [secret-key-123]}]", "consumers[0].keys[0]: want a key hash \"sha256:<64 hex digits>\" (auth.HashAPIKey), not a key (line 2, column 39)"},
		{"short hash", "plans: {p: {}}\nconsumers: [{name: a, plan: p, keys: [\"sha256:abcd\"]}]", "consumers[0].keys[0]: want a key hash"},
		{"not hex", "plans: {p: {}}\nconsumers: [{name: a, plan: p, keys: [\"sha256:" + strings.Repeat("zz", 32) + "\"]}]", "consumers[0].keys[0]: want a key hash"},
		{"hash without prefix", "plans: {p: {}}\nconsumers:\n- {name: a, plan: p, keys: [" + k + "]}\n- {name: b, plan: p, keys: [" + strings.ToUpper(k[7:]) + "]}", "consumers[1].keys[0]: want a key hash"},
		{"key twice", "plans: {p: {}}\nconsumers:\n- {name: a, plan: p, keys: [" + k + "]}\n- {name: b, plan: p, keys: [\"sha256:" + strings.ToUpper(k[7:]) + "\"]}", "consumers[1].keys[0]: the same key is at consumers[0].keys[0]: a key belongs to one consumer, once (line 4, column 29)"},
		{"revoked and active", "plans: {p: {}}\nconsumers:\n- {name: a, plan: p, keys: [" + k + "], revokedKeys: [" + k + "]}", "consumers[0].revokedKeys[0]: the same key is at consumers[0].keys[0]"},
		{"subject twice", "plans: {p: {}}\nconsumers:\n- {name: a, plan: p, subjects: [s]}\n- {name: b, plan: p, subjects: [s]}", `consumers[1].subjects[0]: subject "s" is also consumers[0]'s`},
		{"empty subject", "plans: {p: {}}\nconsumers: [{name: a, plan: p, subjects: [\"\"]}]", "consumers[0].subjects[0]: want a subject"},
		{"json", `{"plans": {"p": {}}, "consumers": [{"name": "a", "plan": "q"}]}`, `consumers[0].plan: unknown plan "q" (plans: p) (line 1, column 58)`},
		{"json number as name", `{"plans": {"p": {}}, "consumers": [{"name": 5, "plan": "p"}]}`, `consumers[0].name: want a string`},
		{"repeated key", "plans: {p: {}}\nplans: {}", "plans: repeated field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.ParseConsumersConfig([]byte(tc.doc))
			require.Error(t, err)
			assert.ErrorIs(t, err, auth.ErrInvalidConsumers)
			var ce *auth.ConsumersConfigError
			require.True(t, errors.As(err, &ce))
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "auth: "), err.Error())
			assert.NotContains(t, err.Error(), "secret-key-123", "a key in clear is never echoed")
		})
	}
}

// Update is the same validation without a document: errors name the path, without a line.
func TestConsumersUpdate(t *testing.T) {
	reg, err := auth.NewConsumers(auth.ConsumersConfig{})
	require.NoError(t, err)
	err = reg.Update(auth.ConsumersConfig{Consumers: []auth.ConsumerConfig{{Name: "a", Plan: "p"}}})
	require.ErrorIs(t, err, auth.ErrInvalidConsumers)
	assert.Equal(t, `auth: consumers[0].plan: unknown plan "p" (plans: )`, err.Error())
	assert.EqualValues(t, 1, reg.Version())

	_, err = auth.NewConsumers(auth.ConsumersConfig{Plans: map[string]auth.Plan{"p": {PerSecond: -1}}})
	assert.ErrorContains(t, err, "plans.p.perSecond")
}

// Lookups during a stream of updates see a whole document: each consumer's key and plan
// come from the same one.
func TestConsumersSwapIsAtomic(t *testing.T) {
	mk := func(plan string) auth.ConsumersConfig {
		return auth.ConsumersConfig{
			Plans:     map[string]auth.Plan{plan: {PerSecond: 1}},
			Consumers: []auth.ConsumerConfig{{Name: "c-" + plan, Plan: plan, Keys: []string{auth.HashAPIKey("k-" + plan)}}},
		}
	}
	reg, err := auth.NewConsumers(mk("a"))
	require.NoError(t, err)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			require.NoError(t, reg.Update(mk([]string{"a", "b"}[i%2])))
		}
	})
	for range 20000 {
		for _, p := range []string{"a", "b"} {
			c, err := reg.ByKey("k-" + p)
			if err == nil && (c.Name != "c-"+p || c.Plan != p) {
				t.Fatalf("mixed lookup: %+v for key k-%s", c, p)
			}
		}
	}
	close(stop)
	wg.Wait()
}
