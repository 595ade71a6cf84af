package ratelimit

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"runtime"
	"strings"
	"sync"
	"time"
)

// KeyedConfig configures a [Keyed] limiter. The zero value of each field
// means its default; the zero Default quota denies every key that has no
// override.
type KeyedConfig struct {
	// Default is the quota of every key without an override.
	Default Quota `json:"default,omitempty" yaml:"default,omitempty"`
	// Overrides gives chosen keys their own quota: the tier table ("this API
	// key gets 1,000/s"). The map is copied by NewKeyed.
	Overrides map[string]Quota `json:"overrides,omitempty" yaml:"overrides,omitempty"`
	// MaxKeys bounds how many keys are tracked at once. Default 100,000.
	// Past the bound the least recently used key is forgotten, which hands
	// it a full bucket the next time it is seen. The bound is split evenly
	// over the shards and keys hash unevenly, so eviction starts a little
	// before MaxKeys (about 99.4 % full for 100,000 keys in 16 shards):
	// size it with headroom over the keys that should stay.
	MaxKeys int `json:"maxKeys,omitempty" yaml:"maxKeys,omitempty"`
	// IdleTimeout is how long a key's bucket must have been full (the key
	// unused) before the key may be dropped ahead of the LRU order; such a
	// key carries no state, so dropping it changes no decision. Default 1
	// minute.
	IdleTimeout time.Duration `json:"idleTimeout,omitempty" yaml:"idleTimeout,omitempty"`
	// Shards is the number of independently locked partitions, rounded up
	// to a power of two. Default: 8 × GOMAXPROCS, at least 16, at most
	// MaxKeys.
	Shards int `json:"shards,omitempty" yaml:"shards,omitempty"`
}

// Defaults of KeyedConfig.
const (
	DefaultMaxKeys     = 100_000
	DefaultIdleTimeout = time.Minute
)

// Keyed keeps one token bucket per key (client IP, API key, JWT subject,
// route) under a hard bound on the number of keys.
//
// Each key costs one small entry (about 130 bytes with its map slot). A key
// whose bucket has stayed full for IdleTimeout carries no state and is
// dropped as new keys arrive, so idle keys leave on their own; past MaxKeys
// the least recently used key goes. A check on a key already tracked does
// not allocate.
//
// Create it with [NewKeyed]; the zero value is not usable. It is safe for
// concurrent use and needs no cleanup: it starts no goroutines.
type Keyed struct {
	base      time.Time        // immutable; monotonic origin of TATs
	def       gcra             // immutable
	overrides map[string]*gcra // immutable
	seed      maphash.Seed     // immutable
	idle      int64            // immutable; IdleTimeout in ns
	mask      uint64           // immutable; len(shards) - 1
	shards    []keyedShard     // immutable slice; each shard has its own lock
}

type keyedShard struct {
	mu      sync.Mutex
	index   map[string]int32 // guarded by mu; key → position in entries
	entries []keyedEntry     // guarded by mu
	free    int32            // guarded by mu; head of the free list, -1 if none
	head    int32            // guarded by mu; most recently used, -1 if empty
	tail    int32            // guarded by mu; least recently used, -1 if empty
	cap     int32            // immutable; entries limit of this shard
	_       [64]byte         // keeps neighbouring shards' locks off one cache line
}

type keyedEntry struct {
	key        string
	tat        int64 // ns since Keyed.base
	q          *gcra
	prev, next int32 // LRU links; next also links the free list
}

// NewKeyed validates cfg and returns a limiter. Errors name the bad field.
func NewKeyed(cfg KeyedConfig) (*Keyed, error) {
	def, err := cfg.Default.compile("Default")
	if err != nil {
		return nil, err
	}
	maxKeys := cfg.MaxKeys
	switch {
	case maxKeys < 0:
		return nil, fmt.Errorf("ratelimit: MaxKeys %d is negative", maxKeys)
	case maxKeys == 0:
		maxKeys = DefaultMaxKeys
	case maxKeys > 1<<30:
		return nil, fmt.Errorf("ratelimit: MaxKeys %d is above %d", maxKeys, 1<<30)
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("ratelimit: IdleTimeout %v is negative", cfg.IdleTimeout)
	}
	shards := cfg.Shards
	if shards < 0 {
		return nil, fmt.Errorf("ratelimit: Shards %d is negative", shards)
	}
	if shards == 0 {
		shards = max(16, 8*runtime.GOMAXPROCS(0))
	}
	shards = min(shards, maxKeys, 1<<16)
	shards = 1 << bits.Len(uint(shards-1)) // round up to a power of two
	if shards > maxKeys {
		shards >>= 1
	}

	k := &Keyed{
		base:      time.Now(),
		def:       def,
		overrides: make(map[string]*gcra, len(cfg.Overrides)),
		seed:      maphash.MakeSeed(),
		idle:      int64(cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout)),
		mask:      uint64(shards - 1),
		shards:    make([]keyedShard, shards),
	}
	for key, q := range cfg.Overrides {
		g, err := q.compile(fmt.Sprintf("Overrides[%q]", key))
		if err != nil {
			return nil, err
		}
		k.overrides[key] = &g
	}
	for i := range k.shards {
		c := maxKeys / shards
		if i < maxKeys%shards {
			c++
		}
		k.shards[i] = keyedShard{index: make(map[string]int32), free: -1, head: -1, tail: -1, cap: int32(c)}
	}
	return k, nil
}

// Allow reports whether one event for key may happen now.
func (k *Keyed) Allow(key string) bool {
	return k.take(key, int64(time.Since(k.base)), 1).Allowed
}

// AllowAt reports whether one event for key may happen at now.
func (k *Keyed) AllowAt(key string, now time.Time) bool {
	return k.take(key, int64(now.Sub(k.base)), 1).Allowed
}

// Take admits or refuses one event for key now and reports the key's quota
// state. It returns ctx.Err() if ctx is already done, and takes nothing.
func (k *Keyed) Take(ctx context.Context, key string) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	return k.take(key, int64(time.Since(k.base)), 1), nil
}

// TakeAt is [Keyed.Take] at the given time, for n events.
func (k *Keyed) TakeAt(key string, now time.Time, n int) Decision {
	return k.take(key, int64(now.Sub(k.base)), n)
}

// Len returns the number of keys tracked.
func (k *Keyed) Len() int {
	n := 0
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

// quota returns the quota of key. It allocates nothing.
func (k *Keyed) quota(key string) *gcra {
	if len(k.overrides) != 0 {
		if q, ok := k.overrides[key]; ok {
			return q
		}
	}
	return &k.def
}

func (k *Keyed) take(key string, now int64, n int) Decision {
	raw := key // overrides name keys as given
	key = BoundKey(key)
	s := &k.shards[maphash.String(k.seed, key)&k.mask]
	s.mu.Lock()
	if i, ok := s.index[key]; ok {
		e := &s.entries[i]
		d := e.q.take(&e.tat, now, n)
		s.touch(i)
		s.mu.Unlock()
		return d
	}
	q := k.quota(raw)
	if q.kind != quotaFinite {
		// Unlimited and deny-all keys need no state.
		s.mu.Unlock()
		return q.take(nil, now, n)
	}
	tat := minTAT
	d := q.take(&tat, now, n)
	if d.Allowed {
		// A refused first request leaves the bucket full: nothing to keep.
		s.insert(key, tat, q, now, k.idle)
	}
	s.mu.Unlock()
	return d
}

// touch moves entry i to the front of the LRU list.
func (s *keyedShard) touch(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushFront(i)
}

func (s *keyedShard) unlink(i int32) {
	e := &s.entries[i]
	if e.prev >= 0 {
		s.entries[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.entries[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
}

func (s *keyedShard) pushFront(i int32) {
	e := &s.entries[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.entries[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

// remove drops entry i and puts its slot on the free list.
func (s *keyedShard) remove(i int32) {
	s.unlink(i)
	e := &s.entries[i]
	delete(s.index, e.key)
	*e = keyedEntry{next: s.free}
	s.free = i
}

// maxIdleSweep bounds the idle entries one insert drops, so that an insert
// costs O(1).
const maxIdleSweep = 2

func (s *keyedShard) insert(key string, tat int64, q *gcra, now, idle int64) {
	// Entries whose bucket has long been full hold nothing a fresh entry
	// would not: drop a few from the cold end. This is the idle eviction.
	for range maxIdleSweep {
		if s.tail < 0 || s.entries[s.tail].tat > now-idle {
			break
		}
		s.remove(s.tail)
	}
	if int32(len(s.index)) >= s.cap {
		s.remove(s.tail) // least recently used, even if its bucket is not full
	}
	var i int32
	if s.free >= 0 {
		i = s.free
		s.free = s.entries[i].next
	} else {
		i = int32(len(s.entries))
		if len(s.entries) == cap(s.entries) {
			// Grow by hand so the backing array never exceeds the shard's cap.
			grown := make([]keyedEntry, len(s.entries), min(max(2*len(s.entries), 8), int(s.cap)))
			copy(grown, s.entries)
			s.entries = grown
		}
		s.entries = s.entries[:i+1]
	}
	// Clone: the caller's key may be a slice of a large buffer (a header).
	key = strings.Clone(key)
	s.entries[i] = keyedEntry{key: key, tat: tat, q: q}
	s.pushFront(i)
	s.index[key] = i
}

// Limiter is a per-key limiter, local or distributed. [Keyed] and the
// Limiter of package ratelimit/redis implement it.
type Limiter interface {
	// Take admits or refuses one event for key. It returns ctx.Err() if ctx
	// is done before a decision, and then takes nothing.
	Take(ctx context.Context, key string) (Decision, error)
}

var _ Limiter = (*Keyed)(nil)
