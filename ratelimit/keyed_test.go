package ratelimit

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyless/proxyless/ratelimit/internal/loadtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustKeyed(t testing.TB, cfg KeyedConfig) *Keyed {
	t.Helper()
	k, err := NewKeyed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewKeyedValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg   KeyedConfig
		field string
	}{
		{KeyedConfig{Default: Quota{Rate: -1}}, "Default.Rate"},
		{KeyedConfig{Default: Quota{Rate: math.NaN()}}, "Default.Rate"},
		{KeyedConfig{Default: Quota{Rate: 1, Burst: -1}}, "Default.Burst"},
		{KeyedConfig{Default: Quota{Rate: 0, Burst: 5}}, "Default.Burst"},
		{KeyedConfig{Default: Quota{Rate: 1e-12, Burst: 1000}}, "Default.Rate"},
		{KeyedConfig{Default: Quota{Rate: 1}, MaxKeys: -1}, "MaxKeys"},
		{KeyedConfig{Default: Quota{Rate: 1}, Shards: -1}, "Shards"},
		{KeyedConfig{Default: Quota{Rate: 1}, IdleTimeout: -1}, "IdleTimeout"},
		{KeyedConfig{Default: Quota{Rate: 1}, Overrides: map[string]Quota{"gold": {Rate: -5}}}, `Overrides["gold"].Rate`},
	} {
		_, err := NewKeyed(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("NewKeyed(%+v) error = %v, want one naming %s", tc.cfg, err, tc.field)
		}
	}
}

func TestKeyedGCRA(t *testing.T) {
	k := mustKeyed(t, KeyedConfig{Default: Quota{Rate: 10, Burst: 3}})
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	for i := range 3 {
		d := k.TakeAt("a", t0, 1)
		if !d.Allowed || d.Limit != 3 || d.Remaining != 2-i {
			t.Fatalf("burst request %d: %+v, want allowed with remaining %d", i, d, 2-i)
		}
	}
	d := k.TakeAt("a", t0, 1)
	if d.Allowed || d.Remaining != 0 || d.RetryAfter != 100*time.Millisecond || d.Reset != 300*time.Millisecond {
		t.Fatalf("past burst: %+v, want refused, retry 100ms, reset 300ms", d)
	}
	if !k.AllowAt("b", t0) {
		t.Fatal("key b shares key a's bucket")
	}
	if k.AllowAt("a", at(99*time.Millisecond)) {
		t.Fatal("token came before 100ms")
	}
	if !k.AllowAt("a", at(100*time.Millisecond)) {
		t.Fatal("no token at 100ms")
	}
	// Over 1 s of steady traffic every 10 ms, 10 more are admitted.
	n := 0
	for ms := 101; ms <= 1100; ms++ {
		if k.AllowAt("a", at(time.Duration(ms)*time.Millisecond)) {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("admitted %d in a second at 10/s, want 10", n)
	}
	// A request for more than the burst is refused and takes nothing.
	if d := k.TakeAt("c", t0, 4); d.Allowed || d.RetryAfter != 0 {
		t.Fatalf("TakeAt(n=4 > burst 3) = %+v, want refused with RetryAfter 0", d)
	}
	if d := k.TakeAt("c", t0, 3); !d.Allowed {
		t.Fatal("the refused oversize request consumed tokens")
	}
}

func TestKeyedOverridesAndEdges(t *testing.T) {
	k := mustKeyed(t, KeyedConfig{
		Default: Quota{Rate: 10, Burst: 10},
		Overrides: map[string]Quota{
			"gold":    {Rate: 1000, Burst: 1000},
			"blocked": {},
			"free":    {Rate: math.Inf(1)},
		},
	})
	now := time.Now()
	count := func(key string) int {
		n := 0
		for range 5000 {
			if k.AllowAt(key, now) {
				n++
			}
		}
		return n
	}
	for key, want := range map[string]int{"gold": 1000, "someone": 10, "blocked": 0, "free": 5000} {
		if got := count(key); got != want {
			t.Errorf("key %q admitted %d at one instant, want %d", key, got, want)
		}
	}
	// Unlimited and blocked keys need no entry.
	if got := k.Len(); got != 2 {
		t.Errorf("Len = %d, want 2 (gold, someone)", got)
	}

	zero := mustKeyed(t, KeyedConfig{})
	if zero.Allow("x") {
		t.Error("the zero KeyedConfig admitted a request")
	}
	// Burst 0 means one second's worth.
	def := mustKeyed(t, KeyedConfig{Default: Quota{Rate: 2.5}})
	if d := def.TakeAt("x", now, 1); d.Limit != 3 {
		t.Errorf("default burst for 2.5/s = %d, want 3", d.Limit)
	}
	// The overrides map belongs to the limiter once built.
	ov := map[string]Quota{"vip": {Rate: 100}}
	k2 := mustKeyed(t, KeyedConfig{Default: Quota{Rate: 1}, Overrides: ov})
	ov["vip"] = Quota{}
	if !k2.Allow("vip") {
		t.Error("changing the caller's map changed the limiter")
	}
}

func TestKeyedTakeContext(t *testing.T) {
	k := mustKeyed(t, KeyedConfig{Default: Quota{Rate: 1, Burst: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.Take(ctx, "a"); err != context.Canceled {
		t.Fatalf("Take(cancelled) = %v, want context.Canceled", err)
	}
	if d, err := k.Take(context.Background(), "a"); err != nil || !d.Allowed {
		t.Fatalf("Take after a cancelled Take = %+v, %v; want the untouched token", d, err)
	}
}

func TestKeyedShardBounds(t *testing.T) {
	for _, tc := range []struct{ maxKeys, shards int }{{1, 0}, {3, 0}, {5, 64}, {1000, 3}, {100_000, 0}} {
		k := mustKeyed(t, KeyedConfig{Default: Quota{Rate: 1}, MaxKeys: tc.maxKeys, Shards: tc.shards})
		total := 0
		for i := range k.shards {
			total += int(k.shards[i].cap)
		}
		n := len(k.shards)
		if total != tc.maxKeys || n&(n-1) != 0 || n > tc.maxKeys {
			t.Errorf("MaxKeys %d Shards %d: %d shards (power of two ≤ MaxKeys) holding %d keys, want %d",
				tc.maxKeys, tc.shards, n, total, tc.maxKeys)
		}
	}
}

// TestKeyedMillionKeys feeds 1,000,000 distinct keys through a limiter
// bounded at 100,000 and checks the bound by count and, coarsely, by heap.
func TestKeyedMillionKeys(t *testing.T) {
	const maxKeys, total = 100_000, 1_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	k := mustKeyed(t, KeyedConfig{Default: Quota{Rate: 1, Burst: 1}, MaxKeys: maxKeys, IdleTimeout: time.Second})
	now := time.Now()
	buf := make([]byte, 0, 32)
	for i := range total {
		buf = strconv.AppendInt(append(buf[:0], "client-"...), int64(i), 10)
		if !k.AllowAt(string(buf), now) {
			t.Fatalf("first request of key %d refused", i)
		}
		if i%100_000 == 99_999 {
			if n := k.Len(); n > maxKeys {
				t.Fatalf("after %d keys Len = %d, above MaxKeys %d", i+1, n, maxKeys)
			}
		}
	}
	n := k.Len()
	if n != maxKeys {
		t.Fatalf("Len = %d, want exactly MaxKeys %d (every bucket still holds state)", n, maxKeys)
	}
	entries := 0
	for i := range k.shards {
		entries += cap(k.shards[i].entries)
	}
	if entries > maxKeys {
		t.Fatalf("entry arrays hold %d slots, above MaxKeys %d", entries, maxKeys)
	}

	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	const perKey = 256 // entry 40 B, map slot ~2×24 B, key ~16 B: 256 B is generous
	t.Logf("%d keys seen, %d tracked, heap delta %d B (%.0f B per tracked key)", total, n, heap, float64(heap)/maxKeys)
	if heap > maxKeys*perKey {
		t.Fatalf("heap grew by %d B, above %d B for %d keys", heap, maxKeys*perKey, maxKeys)
	}

	// Idle keys leave: after a second every bucket is full again, another
	// second of IdleTimeout later new keys push the idle ones out faster
	// than they come in.
	later := now.Add(2*time.Second + time.Millisecond)
	for i := range 20_000 {
		buf = strconv.AppendInt(append(buf[:0], "late-"...), int64(i), 10)
		k.AllowAt(string(buf), later)
	}
	if n := k.Len(); n > maxKeys-15_000 {
		t.Fatalf("after 20,000 new keys among idle ones Len = %d, want idle keys evicted (≤ %d)", n, maxKeys-15_000)
	}
	runtime.KeepAlive(k)
}

func TestKeyedHitDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	k := mustKeyed(t, KeyedConfig{Default: Quota{Rate: 1e6, Burst: 1_000_000}})
	k.Allow("hot")
	if a := testing.AllocsPerRun(1000, func() { k.Allow("hot") }); a != 0 {
		t.Fatalf("Allow on a known key allocates %v times", a)
	}
	if a := testing.AllocsPerRun(1000, func() { _, _ = k.Take(context.Background(), "hot") }); a != 0 {
		t.Fatalf("Take on a known key allocates %v times", a)
	}
}

// TestKeyedConcurrent hammers a few keys from many goroutines: no key may
// admit more than its burst plus its rate over the run.
func TestKeyedConcurrent(t *testing.T) {
	t.Parallel()
	const rate, burst, d = 50, 5, time.Second
	k := mustKeyed(t, KeyedConfig{Default: Quota{Rate: rate, Burst: burst}, MaxKeys: 64})
	keys := []string{"a", "b", "c", "d"}
	var mu sync.Mutex
	per := map[string]int{}
	start := time.Now()
	res := loadtest.Run(16, d, 100_000, 50*time.Microsecond, func() (bool, int64) {
		key := keys[time.Now().UnixNano()%4]
		ok := k.Allow(key)
		if ok {
			mu.Lock()
			per[key]++
			mu.Unlock()
		}
		return ok, 0
	})
	el := time.Since(start).Seconds()
	for _, key := range keys {
		if max := burst + int(math.Ceil(rate*el)); per[key] > max || per[key] < burst+int(rate*el*0.8) {
			t.Errorf("key %s admitted %d in %.2fs, want between %d and %d", key, per[key], el, burst+int(rate*el*0.8), max)
		}
	}
	t.Logf("%d calls, per key %v", res.Calls, per)
}

// Keys a client chooses cannot multiply the limiter's memory by their length: a key over
// MaxKeyBytes is kept as a fixed-size digest, so a thousand 64 KiB keys cost about what a
// thousand short ones do (the limiter would otherwise hold 64 MiB of them).
func TestLongKeysAreBoundedInBytes(t *testing.T) {
	k, err := NewKeyed(KeyedConfig{Default: Quota{Rate: 1, Burst: 1}, MaxKeys: 2000})
	require.NoError(t, err)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	long := make([]byte, 64<<10)
	for i := range 1000 {
		copy(long, fmt.Sprintf("client-%06d", i))
		require.True(t, k.Allow(string(long)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	assert.Equal(t, 1000, k.Len(), "each long key is its own")
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	assert.Less(t, grown, int64(8<<20), "the heap grew by %d bytes for 1000 keys of 64 KiB", grown)
	// The same long key is the same bucket: its second event is refused.
	copy(long, fmt.Sprintf("client-%06d", 7))
	assert.False(t, k.Allow(string(long)))
	assert.Equal(t, BoundKey(string(long)), BoundKey(string(long)))
	assert.Len(t, BoundKey(string(long)), 50)
	assert.Equal(t, "short", BoundKey("short"))
}
