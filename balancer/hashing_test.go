package balancer_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
)

var hashingPolicies = []balancer.Policy{balancer.PolicyMaglev, balancer.PolicyRingHash}

// owners returns the endpoint each of keys user-0 ... user-(keys-1) is picked for at t0.
func owners(t *testing.T, b *balancer.Balancer, keys int, info balancer.PickInfo) []string {
	t.Helper()
	out := make([]string, keys)
	for k := range keys {
		info.Now, info.Key = t0, balancer.HashString(fmt.Sprint("user-", k))
		p, err := b.Pick(info)
		require.NoError(t, err)
		p.Done(balancer.DoneInfo{Now: t0})
		out[k] = p.Endpoint.Addr
	}
	return out
}

func TestRingHash(t *testing.T) {
	addrs := make([]string, 10)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.0.%d:80", i+1)
	}
	b := newBalancer(t, balancer.Config{Policy: balancer.PolicyRingHash}, endpoints(addrs...))
	assert.Equal(t, 1030, b.RingSize(), "1024 rounded up so that each of 10 equal endpoints gets a whole number of points")
	const keys = 10000
	before := owners(t, b, keys, balancer.PickInfo{})
	counts := map[string]int{}
	for _, o := range before {
		counts[o]++
	}
	// About 103 points each: an endpoint's share of the ring is a sum of 103 random arcs,
	// whose relative spread is about 1/√103 ≈ 10 %; within ±35 % (3.5 standard deviations).
	// A larger MinimumRingSize spreads keys more evenly.
	for _, a := range addrs {
		assert.InDelta(t, keys/10, counts[a], keys/10*0.35, "%s: %v", a, counts)
	}
	assert.Equal(t, before, owners(t, b, keys, balancer.PickInfo{}), "stable for every key")

	// A joining endpoint takes about 1/11 of the keys. As in Envoy, the ring keeps its size
	// (about MinimumRingSize points), so each old endpoint also gives up a tenth of its points
	// (103 → 94): the keys of those arcs move to the next point, mostly another old endpoint's.
	// That adds about 1/11 more moves; far below the 10/11 that a modulo hash would move.
	b.Update(endpoints(append(addrs, "10.0.0.99:80")...))
	after := owners(t, b, keys, balancer.PickInfo{})
	moved, movedElsewhere := 0, 0
	for k := range keys {
		if after[k] != before[k] {
			moved++
			if after[k] != "10.0.0.99:80" {
				movedElsewhere++
			}
		}
	}
	t.Logf("moved %d of %d, %d between old endpoints", moved, keys, movedElsewhere)
	assert.InDelta(t, 2*keys/11, moved, keys/11*0.6, "moved %d", moved)
	assert.Less(t, movedElsewhere, keys/8, "moved between old endpoints: %d", movedElsewhere)

	// Leaving: the leaver's keys move, and (the ring growing each other endpoint's share of
	// points, 103 → 114) about a tenth of the others'.
	b.Update(endpoints(addrs[1:]...))
	gone := owners(t, b, keys, balancer.PickInfo{})
	stayed, others := 0, 0
	for k := range keys {
		if before[k] == addrs[0] {
			assert.NotEqual(t, addrs[0], gone[k])
			continue
		}
		others++
		if before[k] == gone[k] {
			stayed++
		}
	}
	assert.Greater(t, float64(stayed)/float64(others), 0.85, "%d of %d stayed", stayed, others)
}

func TestRingSize(t *testing.T) {
	cases := []struct {
		name string
		cfg  balancer.RingHashConfig
		eps  []int // weights
		want int
	}{
		{"default, equal", balancer.RingHashConfig{}, []int{1, 1, 1}, 1026},
		{"min", balancer.RingHashConfig{MinimumRingSize: 8}, []int{1, 1}, 8},
		// The lightest endpoint must get a whole point: 1/101 of the weight × 1024 rounds up
		// to 11 points, so the ring has 11 × 101 = 1111.
		{"weighted", balancer.RingHashConfig{}, []int{1, 100}, 1111},
		{"capped", balancer.RingHashConfig{MinimumRingSize: 1024, MaximumRingSize: 2000}, []int{1, 10000}, 2000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eps := endpoints()
			for i, w := range c.eps {
				eps = append(eps, endpoints(fmt.Sprintf("10.0.0.%d:80", i+1))...)
				eps[i].Weight = uint32(w)
			}
			b := newBalancer(t, balancer.Config{Policy: balancer.PolicyRingHash, RingHash: c.cfg}, eps)
			assert.Equal(t, c.want, b.RingSize())
		})
	}
}

// TestHashedPickSkipsUnusable checks, for both hashing policies, that a key whose endpoint is
// ejected, tried already or steered away from goes to one alternative (the same each time)
// while the other keys stay put, and returns when its endpoint does.
func TestHashedPickSkipsUnusable(t *testing.T) {
	for _, pol := range hashingPolicies {
		t.Run(string(pol), func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: pol}, endpoints("a:1", "b:1", "c:1", "d:1"))
			const keys = 400
			before := owners(t, b, keys, balancer.PickInfo{})
			victim := before[0]
			for range 5 {
				p := pickKey(t, b, 0, t0)
				require.Equal(t, victim, p.Endpoint.Addr)
				p.Done(balancer.DoneInfo{Now: t0, Outcome: balancer.OutcomeGatewayFailure})
			}
			require.True(t, stats(b, victim).Ejected(t0))
			during := owners(t, b, keys, balancer.PickInfo{})
			assert.Equal(t, during, owners(t, b, keys, balancer.PickInfo{}), "the alternatives are sticky too")
			for k := range keys {
				if before[k] == victim {
					assert.NotEqual(t, victim, during[k], "key %d", k)
				} else {
					assert.Equal(t, before[k], during[k], "key %d", k)
				}
			}
			// Tried: a retry of key 1 goes elsewhere, and always to the same endpoint.
			first := pickKey(t, b, 1, t0)
			first.Done(balancer.DoneInfo{Now: t0})
			var tried balancer.Tried
			tried.Add(first)
			var retryTo string
			for i := range 20 {
				p, err := b.Pick(balancer.PickInfo{Now: t0, Key: balancer.HashString("user-1"), Tried: tried})
				require.NoError(t, err)
				p.Done(balancer.DoneInfo{Now: t0})
				assert.NotEqual(t, first.Endpoint.Addr, p.Endpoint.Addr)
				if i == 0 {
					retryTo = p.Endpoint.Addr
				}
				assert.Equal(t, retryTo, p.Endpoint.Addr)
			}
			// After the ejection ends, the keys come back.
			later := t0.Add(balancer.DefaultBaseEjectionTime + 1)
			for k := range keys {
				p := pickKey(t, b, k, later)
				p.Done(balancer.DoneInfo{Now: later})
				assert.Equal(t, before[k], p.Endpoint.Addr, "key %d", k)
			}
		})
	}
}

// TestHashedPickAllAvoided: when every endpoint is to be avoided, a hashed pick still picks
// (avoidance is a preference).
func TestHashedPickAllAvoided(t *testing.T) {
	for _, pol := range hashingPolicies {
		b := newBalancer(t, balancer.Config{Policy: pol}, endpoints("a:1", "b:1"))
		var tried balancer.Tried
		for _, a := range []string{"a:1", "b:1"} {
			p := pickOnly(t, b, a, t0)
			tried.Add(p)
			p.Done(balancer.DoneInfo{Now: t0})
		}
		p, err := b.Pick(balancer.PickInfo{Now: t0, Key: 42, Tried: tried})
		require.NoError(t, err, pol)
		p.Done(balancer.DoneInfo{Now: t0})
	}
}

func TestHashedPickWithoutKeyIsRandom(t *testing.T) {
	for _, pol := range hashingPolicies {
		b := newBalancer(t, balancer.Config{Policy: pol}, endpoints("a:1", "b:1", "c:1"))
		got := pickN(t, b, 3000, t0)
		for _, a := range []string{"a:1", "b:1", "c:1"} {
			assert.InDelta(t, 1000, got[a], 200, "%s %v", pol, got)
		}
	}
}

func TestHashRequest(t *testing.T) {
	vals := map[string]string{"a": "alice", "b": "bob"}
	value := func(p *balancer.HashPolicy) (string, bool) {
		v, ok := vals[p.Header]
		return v, ok
	}
	ctx := context.Background()
	h := func(ps ...balancer.HashPolicy) uint64 { return balancer.HashRequest(ctx, ps, value) }
	a, b, missing := balancer.HashPolicy{Header: "a"}, balancer.HashPolicy{Header: "b"}, balancer.HashPolicy{Header: "zz"}

	assert.Zero(t, h(), "no policy: no key")
	assert.Zero(t, h(missing), "nothing yielded: no key")
	assert.Equal(t, balancer.HashString("alice"), h(a))
	assert.Equal(t, h(a), h(missing, a), "a policy that yields nothing does not count")
	both := h(a, b)
	assert.NotEqual(t, h(a), both, "the values of every policy that yields are combined")
	assert.NotEqual(t, h(b, a), both, "in order")
	assert.NotZero(t, h(a, a), "equal values do not cancel out")
	aTerm := a
	aTerm.Terminal = true
	assert.Equal(t, h(a), h(aTerm, b), "a terminal policy that yielded ends the list")
	assert.Equal(t, h(b), h(missing, balancer.HashPolicy{Header: "zz", Terminal: true}, b), "a terminal policy without a key goes on")
	assert.Equal(t, h(a), h(a, balancer.HashPolicy{Header: "zz", Terminal: true}, b), "terminal once an earlier policy made a key")

	ck := balancer.HashPolicy{ContextKey: true}
	assert.Zero(t, h(ck))
	kctx := balancer.WithHashKey(ctx, "tenant-7")
	assert.Equal(t, balancer.HashString("tenant-7"), balancer.HashRequest(kctx, []balancer.HashPolicy{ck}, value))
	assert.Zero(t, balancer.HashRequest(balancer.WithHashKey(ctx, ""), []balancer.HashPolicy{ck}, value), "an empty key is no key")

	// Bounded: only the first MaxHashKeyBytes bytes are hashed.
	long := strings.Repeat("x", balancer.MaxHashKeyBytes)
	vals["a"] = long + "tail-1"
	k1 := h(a)
	vals["a"] = long + "tail-2"
	assert.Equal(t, k1, h(a))
	assert.Equal(t, balancer.HashString(long), k1)
}

func TestHashPolicyValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  balancer.Config
		want string
	}{
		{"not hashing", balancer.Config{HashPolicy: []balancer.HashPolicy{{Header: "x"}}}, "balancer: HashPolicy needs Policy maglev or ring_hash"},
		{"none set", balancer.Config{Policy: balancer.PolicyMaglev, HashPolicy: []balancer.HashPolicy{{Terminal: true}}}, "balancer: HashPolicy[0]: set exactly one of"},
		{"two set", balancer.Config{Policy: balancer.PolicyMaglev, HashPolicy: []balancer.HashPolicy{{Header: "x"}, {Header: "y", SourceIP: true}}}, "balancer: HashPolicy[1]: set exactly one of"},
		{"bad header", balancer.Config{Policy: balancer.PolicyRingHash, HashPolicy: []balancer.HashPolicy{{Header: "x y"}}}, `balancer: HashPolicy[0]: header: "x y" is not a valid name`},
		{"binary metadata", balancer.Config{Policy: balancer.PolicyRingHash, HashPolicy: []balancer.HashPolicy{{Metadata: "x-bin"}}}, "balancer: HashPolicy[0]: metadata:"},
		{"upper metadata", balancer.Config{Policy: balancer.PolicyRingHash, HashPolicy: []balancer.HashPolicy{{Metadata: "X-User"}}}, "balancer: HashPolicy[0]: metadata:"},
		{"too many", balancer.Config{Policy: balancer.PolicyMaglev, HashPolicy: make([]balancer.HashPolicy, balancer.MaxHashPolicies+1)}, "balancer: HashPolicy: 9 policies is over the limit of 8"},
		{"ring min", balancer.Config{Policy: balancer.PolicyRingHash, RingHash: balancer.RingHashConfig{MinimumRingSize: -1}}, "balancer: RingHash.MinimumRingSize must be in"},
		{"ring max", balancer.Config{Policy: balancer.PolicyRingHash, RingHash: balancer.RingHashConfig{MaximumRingSize: 1 << 24}}, "balancer: RingHash.MaximumRingSize must be in"},
		{"ring order", balancer.Config{Policy: balancer.PolicyRingHash, RingHash: balancer.RingHashConfig{MinimumRingSize: 100, MaximumRingSize: 10}}, "balancer: RingHash.MaximumRingSize must not be below RingHash.MinimumRingSize (100), got 10"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := balancer.New(c.cfg)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), c.want), "error %q, want prefix %q", err, c.want)
		})
	}
	b, err := balancer.New(balancer.Config{Policy: balancer.PolicyRingHash, HashPolicy: []balancer.HashPolicy{{Header: "x-user", Terminal: true}, {SourceIP: true}}})
	require.NoError(t, err)
	cfg := b.Config()
	assert.Equal(t, balancer.DefaultMinimumRingSize, cfg.RingHash.MinimumRingSize)
	assert.Equal(t, balancer.DefaultMaximumRingSize, cfg.RingHash.MaximumRingSize)
	assert.Len(t, cfg.HashPolicy, 2)
}

func TestHashedPickAllocatesNothing(t *testing.T) {
	for _, pol := range hashingPolicies {
		b := newBalancer(t, balancer.Config{Policy: pol}, endpoints("a:1", "b:1", "c:1"))
		key := balancer.HashString("k")
		allocs := testing.AllocsPerRun(100, func() {
			p, _ := b.Pick(balancer.PickInfo{Now: t0, Key: key})
			p.Done(balancer.DoneInfo{Now: t0})
		})
		assert.Zero(t, allocs, pol)
	}
}
