package balancer_test

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the injected clock's origin; tests move time by adding to it, never by sleeping.
var t0 = time.Unix(1767225600, 0) // 2026-01-01T00:00:00Z, in the local zone as the balancer reports times

func at(d time.Duration) time.Time { return t0.Add(d) }

func endpoints(addrs ...string) []discovery.Endpoint {
	eps := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = discovery.Endpoint{Addr: a}
	}
	return eps
}

func newBalancer(t *testing.T, cfg balancer.Config, eps []discovery.Endpoint) *balancer.Balancer {
	t.Helper()
	b, err := balancer.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	b.Update(eps)
	return b
}

// pickN picks n times at now, reporting success with 1ms latency, and counts picks by address.
func pickN(t *testing.T, b *balancer.Balancer, n int, now time.Time) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		p, err := b.Pick(balancer.PickInfo{Now: now})
		require.NoError(t, err)
		counts[p.Endpoint.Addr]++
		p.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond})
	}
	return counts
}

// report picks until addr comes up and reports outcome for it; other picks succeed in 1ms.
func report(t *testing.T, b *balancer.Balancer, addr string, now time.Time, outcome balancer.Outcome) {
	t.Helper()
	for range 10000 {
		p, err := b.Pick(balancer.PickInfo{Now: now})
		require.NoError(t, err)
		if p.Endpoint.Addr == addr {
			p.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond, Outcome: outcome})
			return
		}
		p.Done(balancer.DoneInfo{Now: now, Latency: time.Millisecond})
	}
	t.Fatalf("%s never picked", addr)
}

// pickOnly picks addr by listing every other endpoint as tried, and returns the pick.
func pickOnly(t *testing.T, b *balancer.Balancer, addr string, now time.Time) balancer.Pick {
	t.Helper()
	info := balancer.PickInfo{Now: now}
	for range 1000 {
		p, err := b.Pick(info)
		require.NoError(t, err)
		if p.Endpoint.Addr == addr {
			return p
		}
		info.Tried.Add(p)
		p.Done(balancer.DoneInfo{Now: now, Outcome: balancer.OutcomeIgnore})
	}
	t.Fatalf("%s never picked", addr)
	return balancer.Pick{}
}

func stats(b *balancer.Balancer, addr string) balancer.EndpointStats {
	for _, s := range b.Endpoints() {
		if s.Addr == addr {
			return s
		}
	}
	return balancer.EndpointStats{}
}

func TestConfigDefaults(t *testing.T) {
	b, err := balancer.New(balancer.Config{})
	require.NoError(t, err)
	defer b.Close()
	c := b.Config()
	assert.Equal(t, balancer.PolicyPeakEWMA, c.Policy)
	assert.Equal(t, 10*time.Second, c.DecayTime)
	assert.Equal(t, 5, c.Outlier.ConsecutiveGatewayFailure)
	assert.Equal(t, 30*time.Second, c.Outlier.BaseEjectionTime)
	assert.Equal(t, 300*time.Second, c.Outlier.MaxEjectionTime)
	assert.Equal(t, 50.0, c.Outlier.MaxEjectionPercent)
	assert.Equal(t, 50.0, c.PanicThreshold)
	assert.Equal(t, 70.0, c.Zone.MinHealthyPercent)
	assert.Equal(t, time.Duration(0), c.SlowStart.Window)
	assert.Nil(t, c.HealthCheck)

	b2, err := balancer.New(balancer.Config{HealthCheck: &balancer.HealthCheck{}})
	require.NoError(t, err)
	defer b2.Close()
	hc := b2.Config().HealthCheck
	require.NotNil(t, hc)
	assert.Equal(t, balancer.HealthCheck{Kind: "http", Path: "/healthz", Scheme: "http", Interval: 10 * time.Second,
		Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3,
		ExpectedStatuses: []balancer.StatusRange{{Start: 200, End: 300}}}, *hc)
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  balancer.Config
		want string
	}{
		{"policy", balancer.Config{Policy: "fastest"}, `balancer: Policy must be one of peak_ewma, round_robin, weighted_round_robin, random, least_request, maglev, ring_hash, got "fastest"`},
		{"max ejection percent", balancer.Config{Outlier: balancer.OutlierConfig{MaxEjectionPercent: 140}}, "balancer: Outlier.MaxEjectionPercent must be in [0,100], got 140"},
		{"negative ejection", balancer.Config{Outlier: balancer.OutlierConfig{BaseEjectionTime: -time.Second}}, "balancer: Outlier.BaseEjectionTime must not be negative, got -1s"},
		{"max below base", balancer.Config{Outlier: balancer.OutlierConfig{BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second}}, "balancer: Outlier.MaxEjectionTime must not be below"},
		{"failures", balancer.Config{Outlier: balancer.OutlierConfig{ConsecutiveGatewayFailure: -1}}, "balancer: Outlier.ConsecutiveGatewayFailure"},
		{"panic", balancer.Config{PanicThreshold: 101}, "balancer: PanicThreshold"},
		{"panic NaN", balancer.Config{PanicThreshold: math.NaN()}, "balancer: PanicThreshold"},
		{"zone percent", balancer.Config{Zone: balancer.ZoneConfig{MinHealthyPercent: -1}}, "balancer: Zone.MinHealthyPercent"},
		{"zone repeat", balancer.Config{Zone: balancer.ZoneConfig{Local: "a", Failover: []string{"b", "a"}}}, "balancer: Zone.Failover[1]"},
		{"slow start", balancer.Config{SlowStart: balancer.SlowStartConfig{Window: -1}}, "balancer: SlowStart.Window"},
		{"slow start floor", balancer.Config{SlowStart: balancer.SlowStartConfig{MinWeightPercent: 200}}, "balancer: SlowStart.MinWeightPercent"},
		{"decay", balancer.Config{DecayTime: -1}, "balancer: DecayTime"},
		{"retry after", balancer.Config{MaxRetryAfter: -1}, "balancer: MaxRetryAfter"},
		{"maglev", balancer.Config{MaglevTableSize: 1000}, "balancer: MaglevTableSize must be a prime, got 1000"},
		{"hc path", balancer.Config{HealthCheck: &balancer.HealthCheck{Path: "healthz"}}, "balancer: HealthCheck.Path"},
		{"hc scheme", balancer.Config{HealthCheck: &balancer.HealthCheck{Scheme: "ftp"}}, "balancer: HealthCheck.Scheme"},
		{"hc timeout", balancer.Config{HealthCheck: &balancer.HealthCheck{Interval: time.Second, Timeout: 2 * time.Second}}, "balancer: HealthCheck.Timeout must be below HealthCheck.Interval"},
		{"hc threshold", balancer.Config{HealthCheck: &balancer.HealthCheck{HealthyThreshold: -2}}, "balancer: HealthCheck.HealthyThreshold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := balancer.New(tt.cfg)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.True(t, strings.HasPrefix(err.Error(), tt.want), "error %q, want prefix %q", err, tt.want)
		})
	}
}

func TestNoEndpoints(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(p.String(), func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: p}, nil)
			_, err := b.Pick(balancer.PickInfo{Now: t0})
			assert.ErrorIs(t, err, balancer.ErrNoEndpoints)
			assert.EqualError(t, err, "balancer: no endpoints")
			b.Update(endpoints("a:1"))
			_, err = b.Pick(balancer.PickInfo{Now: t0})
			assert.NoError(t, err)
			b.Update([]discovery.Endpoint{})
			_, err = b.Pick(balancer.PickInfo{})
			assert.ErrorIs(t, err, balancer.ErrNoEndpoints)
		})
	}
}

var allPolicies = []balancer.Policy{
	balancer.PolicyPeakEWMA, balancer.PolicyRoundRobin, balancer.PolicyWeightedRoundRobin,
	balancer.PolicyRandom, balancer.PolicyLeastRequest, balancer.PolicyMaglev, balancer.PolicyRingHash,
}

func TestDistribution(t *testing.T) {
	weighted := []discovery.Endpoint{{Addr: "a:1", Weight: 1}, {Addr: "b:1", Weight: 2}, {Addr: "c:1", Weight: 3}, {Addr: "d:1", Weight: 0}}
	tests := []struct {
		name   string
		policy balancer.Policy
		eps    []discovery.Endpoint
		picks  int
		want   map[string]int
		tol    float64 // allowed relative deviation per endpoint
	}{
		{"round robin is exact", balancer.PolicyRoundRobin, endpoints("a:1", "b:1", "c:1"), 3000,
			map[string]int{"a:1": 1000, "b:1": 1000, "c:1": 1000}, 0},
		{"round robin ignores weights", balancer.PolicyRoundRobin, weighted, 400,
			map[string]int{"a:1": 100, "b:1": 100, "c:1": 100, "d:1": 100}, 0},
		{"weighted round robin is proportional", balancer.PolicyWeightedRoundRobin, weighted, 7000,
			map[string]int{"a:1": 1000, "b:1": 2000, "c:1": 3000, "d:1": 1000}, 0.01},
		{"random is roughly uniform", balancer.PolicyRandom, endpoints("a:1", "b:1", "c:1", "d:1"), 40000,
			map[string]int{"a:1": 10000, "b:1": 10000, "c:1": 10000, "d:1": 10000}, 0.05},
		{"random is weighted", balancer.PolicyRandom, weighted, 70000,
			map[string]int{"a:1": 10000, "b:1": 20000, "c:1": 30000, "d:1": 10000}, 0.05},
		{"least request spreads idle load", balancer.PolicyLeastRequest, endpoints("a:1", "b:1", "c:1"), 30000,
			map[string]int{"a:1": 10000, "b:1": 10000, "c:1": 10000}, 0.05},
		{"peak ewma with equal latency", balancer.PolicyPeakEWMA, endpoints("a:1", "b:1", "c:1"), 30000,
			map[string]int{"a:1": 10000, "b:1": 10000, "c:1": 10000}, 0.10},
		{"maglev without key is random", balancer.PolicyMaglev, endpoints("a:1", "b:1"), 20000,
			map[string]int{"a:1": 10000, "b:1": 10000}, 0.05},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: tt.policy}, tt.eps)
			got := pickN(t, b, tt.picks, t0)
			for addr, want := range tt.want {
				assert.InDelta(t, want, got[addr], float64(want)*tt.tol, "picks of %s: %v", addr, got)
			}
		})
	}
}

func TestWeightedRoundRobinIsSmooth(t *testing.T) {
	// Weights 1 and 4: within any window of 5 consecutive picks, a gets exactly one.
	b := newBalancer(t, balancer.Config{Policy: balancer.PolicyWeightedRoundRobin},
		[]discovery.Endpoint{{Addr: "a:1", Weight: 1}, {Addr: "b:1", Weight: 4}})
	var seq []string
	for range 100 {
		p, err := b.Pick(balancer.PickInfo{Now: t0})
		require.NoError(t, err)
		seq = append(seq, p.Endpoint.Addr)
		p.Done(balancer.DoneInfo{Now: t0})
	}
	for i := 0; i+5 <= len(seq); i++ {
		n := 0
		for _, a := range seq[i : i+5] {
			if a == "a:1" {
				n++
			}
		}
		assert.Equal(t, 1, n, "window %d: %v", i, seq[i:i+5])
	}
}

func TestLeastRequestAvoidsBusy(t *testing.T) {
	b := newBalancer(t, balancer.Config{Policy: balancer.PolicyLeastRequest}, endpoints("a:1", "b:1", "c:1"))
	// Hold 5 requests open on a: exclude b and c through Tried to steer picks to a.
	info := balancer.PickInfo{Now: t0}
	for info.Tried.Len() < 2 {
		p, err := b.Pick(info)
		require.NoError(t, err)
		if p.Endpoint.Addr != "a:1" {
			info.Tried.Add(p)
		}
		p.Done(balancer.DoneInfo{Now: t0})
	}
	var held []balancer.Pick
	for range 5 {
		p, err := b.Pick(info)
		require.NoError(t, err)
		require.Equal(t, "a:1", p.Endpoint.Addr)
		held = append(held, p)
	}
	// P2C draws two distinct endpoints, and a always loses against an idle one.
	got := pickN(t, b, 300, t0)
	assert.Zero(t, got["a:1"], "%v", got)
	assert.Equal(t, int64(5), stats(b, "a:1").InFlight)
	for _, p := range held {
		p.Done(balancer.DoneInfo{Now: t0, Outcome: balancer.OutcomeIgnore})
	}
	assert.Equal(t, int64(0), stats(b, "a:1").InFlight)
}

func TestPeakEWMAPrefersFast(t *testing.T) {
	b := newBalancer(t, balancer.Config{}, endpoints("fast:1", "slow:1", "slower:1"))
	latency := map[string]time.Duration{"fast:1": time.Millisecond, "slow:1": 20 * time.Millisecond, "slower:1": 50 * time.Millisecond}
	counts := map[string]int{}
	now := t0
	for i := range 3000 {
		now = now.Add(time.Millisecond)
		p, err := b.Pick(balancer.PickInfo{Now: now})
		require.NoError(t, err)
		if i >= 1000 {
			counts[p.Endpoint.Addr]++
		}
		p.Done(balancer.DoneInfo{Now: now, Latency: latency[p.Endpoint.Addr]})
	}
	// fast is in 2 of 3 pairs and should win nearly all of them.
	assert.Greater(t, counts["fast:1"], 1200, "%v", counts)
	assert.Greater(t, counts["slow:1"], counts["slower:1"], "%v", counts)
	st := stats(b, "fast:1")
	assert.InDelta(t, float64(time.Millisecond), float64(st.EWMA), float64(100*time.Microsecond))
}

func TestPeakEWMAReactsToPeak(t *testing.T) {
	b := newBalancer(t, balancer.Config{}, endpoints("a:1", "b:1"))
	// Both fast, then a has one slow answer: the peak is taken at once.
	now := t0
	for range 100 {
		now = now.Add(time.Millisecond)
		pickN(t, b, 1, now)
	}
	report(t, b, "a:1", now, balancer.OutcomeSuccess)
	p := pickOnly(t, b, "a:1", now)
	p.Done(balancer.DoneInfo{Now: now, Latency: time.Second})
	assert.Equal(t, time.Second, stats(b, "a:1").EWMA)
	got := pickN(t, b, 200, now.Add(time.Millisecond))
	assert.Zero(t, got["a:1"], "%v", got)
}

func TestMaglev(t *testing.T) {
	addrs := make([]string, 10)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.0.%d:80", i+1)
	}
	b := newBalancer(t, balancer.Config{Policy: balancer.PolicyMaglev}, endpoints(addrs...))
	const keys = 10000
	owner := func(key uint64) string {
		p, err := b.Pick(balancer.PickInfo{Now: t0, Key: key})
		require.NoError(t, err)
		p.Done(balancer.DoneInfo{Now: t0})
		return p.Endpoint.Addr
	}
	before := make([]string, keys)
	counts := map[string]int{}
	for k := range keys {
		before[k] = owner(balancer.HashString(fmt.Sprint("user-", k)))
		counts[before[k]]++
	}
	for _, a := range addrs {
		assert.InDelta(t, keys/10, counts[a], keys/10*0.15, "%s: %v", a, counts)
	}
	// Stable for a key.
	for k := range 100 {
		assert.Equal(t, before[k], owner(balancer.HashString(fmt.Sprint("user-", k))))
	}
	// Minimal remap when an endpoint joins: about 1/11 of the keys move, nearly all to it.
	b.Update(endpoints(append(addrs, "10.0.0.99:80")...))
	moved, movedElsewhere := 0, 0
	for k := range keys {
		now := owner(balancer.HashString(fmt.Sprint("user-", k)))
		if now != before[k] {
			moved++
			if now != "10.0.0.99:80" {
				movedElsewhere++
			}
		}
	}
	assert.InDelta(t, keys/11, moved, keys/11*0.3, "moved %d", moved)
	assert.Less(t, movedElsewhere, keys/50, "moved between old endpoints: %d", movedElsewhere)

	// An ejected endpoint's keys go elsewhere; the others' keys stay put.
	b.Update(endpoints(addrs...))
	victim := before[0]
	for range 5 {
		p := pickKey(t, b, 0, t0)
		require.Equal(t, victim, p.Endpoint.Addr)
		p.Done(balancer.DoneInfo{Now: t0, Outcome: balancer.OutcomeGatewayFailure})
	}
	require.True(t, stats(b, victim).Ejected(t0))
	for k := range keys {
		now := owner(balancer.HashString(fmt.Sprint("user-", k)))
		if before[k] == victim {
			assert.NotEqual(t, victim, now)
		} else {
			assert.Equal(t, before[k], now)
		}
	}
}

func pickKey(t *testing.T, b *balancer.Balancer, k int, now time.Time) balancer.Pick {
	t.Helper()
	p, err := b.Pick(balancer.PickInfo{Now: now, Key: balancer.HashString(fmt.Sprint("user-", k))})
	require.NoError(t, err)
	return p
}

func TestHash(t *testing.T) {
	assert.Equal(t, balancer.HashString("abc"), balancer.HashBytes([]byte("abc")))
	assert.NotEqual(t, balancer.HashString("abc"), balancer.HashString("abd"))
	assert.NotZero(t, balancer.HashString(""))
}

func TestZonePreferenceAndFailover(t *testing.T) {
	eps := []discovery.Endpoint{
		{Addr: "a1:1", Zone: "a"}, {Addr: "a2:1", Zone: "a"}, {Addr: "a3:1", Zone: "a"},
		{Addr: "b1:1", Zone: "b"}, {Addr: "b2:1", Zone: "b"}, {Addr: "b3:1", Zone: "b"},
		{Addr: "c1:1", Zone: "c"}, {Addr: "c2:1", Zone: "c"},
	}
	cfg := balancer.Config{
		Policy: balancer.PolicyRoundRobin,
		Zone:   balancer.ZoneConfig{Local: "a", Failover: []string{"b"}},
	}
	b := newBalancer(t, cfg, eps)
	byZone := func(counts map[string]int) map[string]int {
		z := map[string]int{}
		for addr, n := range counts {
			z[addr[:1]] += n
		}
		return z
	}
	// All healthy: everything stays local.
	assert.Equal(t, map[string]int{"a": 3000}, byZone(pickN(t, b, 3000, t0)))

	// One of three local endpoints out: 66.7 % healthy < 70 %, so a keeps 66.7/70 = 95.2 %
	// and 4.8 % spills to b, the first failover zone, never to c.
	for range 5 {
		report(t, b, "a1:1", t0, balancer.OutcomeGatewayFailure)
	}
	require.True(t, stats(b, "a1:1").Ejected(t0))
	z := byZone(pickN(t, b, 20000, t0))
	assert.InDelta(t, 20000*0.952, z["a"], 300, "%v", z)
	assert.InDelta(t, 20000*0.048, z["b"], 300, "%v", z)
	assert.Zero(t, z["c"])

	// The whole local zone out: b takes everything.
	for _, addr := range []string{"a2:1", "a3:1"} {
		for range 5 {
			report(t, b, addr, t0, balancer.OutcomeGatewayFailure)
		}
	}
	require.Equal(t, uint64(3), b.Ejections())
	assert.Equal(t, map[string]int{"b": 3000}, byZone(pickN(t, b, 3000, t0)))

	// After the ejection time, local again.
	assert.Equal(t, map[string]int{"a": 3000}, byZone(pickN(t, b, 3000, at(30*time.Second))))
}

func TestEjectionExactCountAndReturn(t *testing.T) {
	b := newBalancer(t, balancer.Config{Policy: balancer.PolicyRoundRobin}, endpoints("a:1", "b:1", "c:1"))

	// Four gateway failures, then a success: the count starts over.
	for range 4 {
		report(t, b, "a:1", t0, balancer.OutcomeGatewayFailure)
	}
	report(t, b, "a:1", t0, balancer.OutcomeSuccess)
	// Four more, then a non-gateway failure: it resets the gateway count too (Envoy).
	for range 4 {
		report(t, b, "a:1", t0, balancer.OutcomeGatewayFailure)
	}
	report(t, b, "a:1", t0, balancer.OutcomeFailure)
	// Ignored outcomes (caller cancellations) neither count nor reset.
	for range 4 {
		report(t, b, "a:1", t0, balancer.OutcomeGatewayFailure)
		report(t, b, "a:1", t0, balancer.OutcomeIgnore)
	}
	require.False(t, stats(b, "a:1").Ejected(t0))
	require.Zero(t, b.Ejections())

	// The fifth in a row ejects, for the base time.
	report(t, b, "a:1", t0, balancer.OutcomeGatewayFailure)
	st := stats(b, "a:1")
	require.True(t, st.Ejected(t0))
	assert.Equal(t, at(30*time.Second), st.EjectedUntil)
	assert.Equal(t, 1, st.TimesEjected)
	assert.Equal(t, uint64(1), b.Ejections())

	got := pickN(t, b, 300, at(30*time.Second-time.Nanosecond))
	assert.Zero(t, got["a:1"], "%v", got)
	got = pickN(t, b, 300, at(30*time.Second))
	assert.Equal(t, 100, got["a:1"], "back in rotation at the ejection time: %v", got)

	// A second ejection soon after lasts twice as long.
	now := at(31 * time.Second)
	for range 5 {
		report(t, b, "a:1", now, balancer.OutcomeGatewayFailure)
	}
	assert.Equal(t, now.Add(60*time.Second), stats(b, "a:1").EjectedUntil)

	// The multiplier is capped at the max ejection time.
	for range 20 {
		now = stats(b, "a:1").EjectedUntil
		for range 5 {
			report(t, b, "a:1", now, balancer.OutcomeGatewayFailure)
		}
	}
	assert.Equal(t, now.Add(300*time.Second), stats(b, "a:1").EjectedUntil)

	// A long stay in rotation brings the multiplier back down.
	now = stats(b, "a:1").EjectedUntil.Add(time.Hour)
	for range 5 {
		report(t, b, "a:1", now, balancer.OutcomeGatewayFailure)
	}
	assert.Equal(t, now.Add(30*time.Second), stats(b, "a:1").EjectedUntil)
}

func TestConsecutiveFailure(t *testing.T) {
	cfg := balancer.Config{Outlier: balancer.OutlierConfig{ConsecutiveFailure: 3}}
	b := newBalancer(t, cfg, endpoints("a:1", "b:1", "c:1"))
	report(t, b, "a:1", t0, balancer.OutcomeFailure)
	report(t, b, "a:1", t0, balancer.OutcomeGatewayFailure)
	require.False(t, stats(b, "a:1").Ejected(t0))
	report(t, b, "a:1", t0, balancer.OutcomeFailure)
	require.True(t, stats(b, "a:1").Ejected(t0))
}

func TestOutlierDisabled(t *testing.T) {
	b := newBalancer(t, balancer.Config{Outlier: balancer.OutlierConfig{Disabled: true}}, endpoints("a:1", "b:1"))
	for range 20 {
		report(t, b, "a:1", t0, balancer.OutcomeGatewayFailure)
	}
	assert.False(t, stats(b, "a:1").Ejected(t0))
	assert.Zero(t, b.Ejections())
}

func ejectAll(t *testing.T, b *balancer.Balancer, now time.Time, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		for range 5 {
			report(t, b, a, now, balancer.OutcomeGatewayFailure)
		}
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	t.Run("four endpoints, 50%: two", func(t *testing.T) {
		b := newBalancer(t, balancer.Config{Policy: balancer.PolicyRoundRobin}, endpoints("a:1", "b:1", "c:1", "d:1"))
		ejectAll(t, b, t0, "a:1", "b:1", "c:1")
		assert.Equal(t, uint64(2), b.Ejections())
		assert.False(t, stats(b, "c:1").Ejected(t0))
		// Once one returns, another may go.
		ejectAll(t, b, at(30*time.Second), "c:1")
		assert.True(t, stats(b, "c:1").Ejected(at(30*time.Second)))
	})
	t.Run("three endpoints, 50%: one", func(t *testing.T) {
		b := newBalancer(t, balancer.Config{Policy: balancer.PolicyRoundRobin}, endpoints("a:1", "b:1", "c:1"))
		ejectAll(t, b, t0, "a:1", "b:1")
		assert.Equal(t, uint64(1), b.Ejections())
	})
	t.Run("one endpoint, 50%: none unless AlwaysEjectOne", func(t *testing.T) {
		b := newBalancer(t, balancer.Config{}, endpoints("a:1"))
		ejectAll(t, b, t0, "a:1")
		assert.Zero(t, b.Ejections())
		b2 := newBalancer(t, balancer.Config{Outlier: balancer.OutlierConfig{AlwaysEjectOne: true}}, endpoints("a:1"))
		ejectAll(t, b2, t0, "a:1")
		assert.Equal(t, uint64(1), b2.Ejections())
		// All ejected: picks still succeed, spreading over all (panic).
		_, err := b2.Pick(balancer.PickInfo{Now: t0})
		assert.NoError(t, err)
	})
}

func TestPanicThreshold(t *testing.T) {
	cfg := balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: balancer.OutlierConfig{MaxEjectionPercent: 100}}
	eps := endpoints("a:1", "b:1", "c:1", "d:1")

	b := newBalancer(t, cfg, eps)
	ejectAll(t, b, t0, "a:1", "b:1")
	// Half healthy is not below the threshold: the healthy half takes all.
	assert.Equal(t, map[string]int{"c:1": 200, "d:1": 200}, pickN(t, b, 400, t0))
	ejectAll(t, b, t0, "c:1")
	// 25 % healthy < 50 %: panic, spread over all.
	assert.Equal(t, map[string]int{"a:1": 100, "b:1": 100, "c:1": 100, "d:1": 100}, pickN(t, b, 400, t0))
	ejectAll(t, b, t0, "d:1")
	assert.Equal(t, map[string]int{"a:1": 100, "b:1": 100, "c:1": 100, "d:1": 100}, pickN(t, b, 400, t0))

	// Panic mode off: the one healthy endpoint takes everything.
	cfg.PanicThreshold = -1
	b = newBalancer(t, cfg, eps)
	ejectAll(t, b, t0, "a:1", "b:1", "c:1")
	assert.Equal(t, map[string]int{"d:1": 400}, pickN(t, b, 400, t0))
	// ... until none is healthy: then all, rather than none.
	ejectAll(t, b, t0, "d:1")
	assert.Len(t, pickN(t, b, 400, t0), 4)
}

func TestSlowStart(t *testing.T) {
	cfg := balancer.Config{
		Policy:    balancer.PolicyRoundRobin,
		SlowStart: balancer.SlowStartConfig{Window: 10 * time.Second},
	}
	b := newBalancer(t, cfg, endpoints("a:1", "b:1"))
	// The first set does not ramp up.
	assert.Equal(t, map[string]int{"a:1": 500, "b:1": 500}, pickN(t, b, 1000, t0))

	b.Update(endpoints("a:1", "b:1", "c:1"))
	share := func(now time.Time) float64 {
		got := pickN(t, b, 30000, now)
		return float64(got["c:1"]) / 30000
	}
	// The ramp starts at the first pick after the update: floor 10 %, then linear.
	// With round robin, c takes its turn with probability f: share f/(2+f).
	assert.InDelta(t, 0.1/2.1, share(t0), 0.01)
	assert.InDelta(t, 0.5/2.5, share(at(5*time.Second)), 0.015)
	assert.InDelta(t, 1.0/3, share(at(10*time.Second)), 0.01)

	// Returning from ejection ramps up again.
	cfg.Policy = balancer.PolicyPeakEWMA
	b = newBalancer(t, cfg, endpoints("a:1", "b:1", "c:1"))
	ejectAll(t, b, t0, "c:1")
	back := at(30 * time.Second)
	got := pickN(t, b, 30000, back)
	assert.Less(t, float64(got["c:1"])/30000, 0.1, "%v", got)
	got = pickN(t, b, 30000, back.Add(10*time.Second))
	assert.InDelta(t, 1.0/3, float64(got["c:1"])/30000, 0.05, "%v", got)
}

func TestRetryAfterSteering(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(p.String(), func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: p}, endpoints("a:1", "b:1", "c:1"))
			for {
				pk, err := b.Pick(balancer.PickInfo{Now: t0})
				require.NoError(t, err)
				if pk.Endpoint.Addr == "a:1" {
					pk.Done(balancer.DoneInfo{Now: t0, Outcome: balancer.OutcomeIgnore, RetryAfter: 10 * time.Second})
					break
				}
				pk.Done(balancer.DoneInfo{Now: t0})
			}
			assert.Equal(t, at(10*time.Second), stats(b, "a:1").BackoffUntil)
			for k := range 300 {
				pk, err := b.Pick(balancer.PickInfo{Now: at(9 * time.Second), Key: uint64(k + 1)})
				require.NoError(t, err)
				assert.NotEqual(t, "a:1", pk.Endpoint.Addr)
				pk.Done(balancer.DoneInfo{Now: at(9 * time.Second)})
			}
			back := pickN(t, b, 3000, at(10*time.Second))
			assert.Positive(t, back["a:1"], "%v", back)
			// Not an ejection.
			assert.Zero(t, b.Ejections())
		})
	}
	t.Run("capped", func(t *testing.T) {
		b := newBalancer(t, balancer.Config{MaxRetryAfter: time.Second}, endpoints("a:1"))
		pk, _ := b.Pick(balancer.PickInfo{Now: t0})
		pk.Done(balancer.DoneInfo{Now: t0, Outcome: balancer.OutcomeSuccess, RetryAfter: time.Hour})
		assert.Equal(t, at(time.Second), stats(b, "a:1").BackoffUntil)
		// Steering is a preference: the only endpoint is still picked.
		_, err := b.Pick(balancer.PickInfo{Now: t0})
		assert.NoError(t, err)
	})
}

func TestTriedExcluded(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(p.String(), func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: p}, endpoints("a:1", "b:1", "c:1"))
			for range 100 {
				info := balancer.PickInfo{Now: t0, Key: 42}
				seen := map[string]bool{}
				for range 3 {
					pk, err := b.Pick(info)
					require.NoError(t, err)
					require.False(t, seen[pk.Endpoint.Addr], "%s picked again", pk.Endpoint.Addr)
					seen[pk.Endpoint.Addr] = true
					info.Tried.Add(pk)
					pk.Done(balancer.DoneInfo{Now: t0})
				}
				assert.Equal(t, 3, info.Tried.Len())
				// All tried: still an answer.
				pk, err := b.Pick(info)
				require.NoError(t, err)
				pk.Done(balancer.DoneInfo{Now: t0})
			}
		})
	}
	t.Run("across levels", func(t *testing.T) {
		eps := []discovery.Endpoint{{Addr: "a:1", Zone: "a"}, {Addr: "b:1", Zone: "b"}}
		b := newBalancer(t, balancer.Config{Zone: balancer.ZoneConfig{Local: "a"}}, eps)
		info := balancer.PickInfo{Now: t0}
		pk, _ := b.Pick(info)
		require.Equal(t, "a:1", pk.Endpoint.Addr)
		info.Tried.Add(pk)
		pk2, _ := b.Pick(info)
		assert.Equal(t, "b:1", pk2.Endpoint.Addr, "a retry leaves the local zone rather than repeat")
	})
	t.Run("ring of MaxTried", func(t *testing.T) {
		var tr balancer.Tried
		tr.Add(balancer.Pick{})
		assert.Zero(t, tr.Len())
		b := newBalancer(t, balancer.Config{}, endpoints("a:1", "b:1", "c:1", "d:1", "e:1", "f:1"))
		for range 6 {
			pk, _ := b.Pick(balancer.PickInfo{Now: t0})
			tr.Add(pk)
		}
		assert.Equal(t, balancer.MaxTried, tr.Len())
	})
}

func TestUpdatePreservesState(t *testing.T) {
	cfg := balancer.Config{Policy: balancer.PolicyRoundRobin, SlowStart: balancer.SlowStartConfig{Window: 10 * time.Second}}
	b := newBalancer(t, cfg, endpoints("a:1", "b:1", "c:1"))
	ejectAll(t, b, t0, "a:1")
	report(t, b, "b:1", t0, balancer.OutcomeSuccess)
	held, _ := b.Pick(balancer.PickInfo{Now: t0}) // an in-flight request across the update
	heldAddr := held.Endpoint.Addr
	before := stats(b, "b:1")

	b.Update([]discovery.Endpoint{{Addr: "d:1"}, {Addr: "c:1", Weight: 5}, {Addr: "b:1"}, {Addr: "a:1"}, {Addr: "a:1", Weight: 9}})
	require.Len(t, b.Endpoints(), 4, "duplicate address dropped")
	assert.True(t, stats(b, "a:1").Ejected(t0), "ejection kept")
	assert.Equal(t, uint32(1), stats(b, "a:1").Weight, "first of duplicates wins")
	assert.Equal(t, uint32(5), stats(b, "c:1").Weight, "new weight taken")
	assert.Equal(t, before.EWMA, stats(b, "b:1").EWMA, "EWMA kept")
	assert.Equal(t, before.Requests, stats(b, "b:1").Requests)
	assert.Equal(t, int64(1), stats(b, heldAddr).InFlight, "in-flight kept")
	held.Done(balancer.DoneInfo{Now: t0})
	assert.Equal(t, int64(0), stats(b, heldAddr).InFlight)

	// d is new: it ramps up; b and c do not.
	got := pickN(t, b, 30000, t0)
	assert.InDelta(t, 0.1/2.1, float64(got["d:1"])/30000, 0.01, "%v", got)

	// Done for an endpoint removed meanwhile is harmless.
	p, _ := b.Pick(balancer.PickInfo{Now: t0})
	b.Update(endpoints("z:1"))
	for range 5 {
		p.Done(balancer.DoneInfo{Now: t0, Outcome: balancer.OutcomeGatewayFailure})
	}
	assert.Equal(t, uint64(1), b.Ejections())
}

func TestDoneZeroPick(t *testing.T) {
	var p balancer.Pick
	p.Done(balancer.DoneInfo{Outcome: balancer.OutcomeGatewayFailure})
	assert.Nil(t, p.Endpoint)
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "peak_ewma", balancer.Policy("").String())
	assert.Equal(t, "maglev", balancer.PolicyMaglev.String())
	assert.Equal(t, "success", balancer.OutcomeSuccess.String())
	assert.Equal(t, "failure", balancer.OutcomeFailure.String())
	assert.Equal(t, "gateway_failure", balancer.OutcomeGatewayFailure.String())
	assert.Equal(t, "ignore", balancer.OutcomeIgnore.String())
	assert.Equal(t, "outcome(9)", balancer.Outcome(9).String())
}

func TestZeroAllocs(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(p.String(), func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: p, Zone: balancer.ZoneConfig{Local: "z0"}}, benchEndpoints(50))
			now := t0
			var key uint64
			allocs := testing.AllocsPerRun(1000, func() {
				now = now.Add(time.Millisecond)
				key++
				info := balancer.PickInfo{Now: now, Key: key}
				pk, err := b.Pick(info)
				if err != nil {
					t.Fatal(err)
				}
				info.Tried.Add(pk)
				pk.Done(balancer.DoneInfo{Now: now, Outcome: balancer.OutcomeFailure, RetryAfter: time.Millisecond})
				pk, _ = b.Pick(info)
				pk.Done(balancer.DoneInfo{Now: now})
			})
			assert.Zero(t, allocs)
		})
	}
}

func TestConcurrentPickDoneUpdate(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(p.String(), func(t *testing.T) {
			cfg := balancer.Config{
				Policy:    p,
				Zone:      balancer.ZoneConfig{Local: "z0", Failover: []string{"z1"}},
				SlowStart: balancer.SlowStartConfig{Window: 50 * time.Millisecond},
				Outlier:   balancer.OutlierConfig{BaseEjectionTime: 10 * time.Millisecond},
			}
			b := newBalancer(t, cfg, benchEndpoints(20))
			var pickers, updater sync.WaitGroup
			stop := make(chan struct{})
			updater.Add(1)
			go func() {
				defer updater.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					b.Update(benchEndpoints(10 + i%15))
					_ = b.Endpoints()
				}
			}()
			for g := range 4 {
				pickers.Add(1)
				go func() {
					defer pickers.Done()
					for i := range 2000 {
						now := time.Now()
						info := balancer.PickInfo{Now: now, Key: uint64(i%50 + 1)}
						pk, err := b.Pick(info)
						if err != nil {
							t.Error(err)
							return
						}
						_ = pk.Endpoint.Addr
						info.Tried.Add(pk)
						outcome := balancer.Outcome((i + g) % 4)
						pk.Done(balancer.DoneInfo{Now: now, Outcome: outcome, RetryAfter: time.Duration(i%7) * time.Microsecond})
					}
				}()
			}
			pickers.Wait()
			close(stop)
			updater.Wait()
			for _, s := range b.Endpoints() {
				assert.Zero(t, s.InFlight, "%s", s.Addr)
			}
		})
	}
}

// An endpoint with no latency sample yet is not preferred over a measured one: picks
// between the two are a coin toss, where an unmeasured endpoint's zero cost used to win
// every comparison.
func TestPeakEWMAUnmeasuredNotPreferred(t *testing.T) {
	b := newBalancer(t, balancer.Config{}, endpoints("measured:1", "fresh:1"))
	// Measure "measured" only: pick until it comes up, release the others unreported.
	for range 100 {
		p, err := b.Pick(balancer.PickInfo{Now: t0})
		require.NoError(t, err)
		if p.Endpoint.Addr == "measured:1" {
			p.Done(balancer.DoneInfo{Now: t0, Latency: 10 * time.Millisecond})
			break
		}
		p.Done(balancer.DoneInfo{Now: t0, Outcome: balancer.OutcomeIgnore})
	}
	fresh := 0
	const n = 2000
	for range n {
		p, err := b.Pick(balancer.PickInfo{Now: t0})
		require.NoError(t, err)
		if p.Endpoint.Addr == "fresh:1" {
			fresh++
		}
		p.Done(balancer.DoneInfo{Now: t0, Outcome: balancer.OutcomeIgnore})
	}
	assert.InDelta(t, n/2, fresh, n/10, "the unmeasured endpoint got %d of %d picks", fresh, n)
}
