package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
)

// This file is the consumer registry of an API gateway: who may call (API keys, JWT
// subjects), under which plan (quotas, routes). The registry only identifies callers; the
// quotas and the route check are applied by middleware.WithConsumers.

// ConsumersConfig is the registry document: plans and the consumers that use them. It reads
// from YAML or JSON with camelCase keys ([ParseConsumersConfig], [Consumers.Load]):
//
//	plans:
//	  gold:   {perSecond: 100, burst: 200, perDay: 1000000}
//	  silver: {perSecond: 10, perDay: 10000, routes: [catalog, search]}
//	consumers:
//	  - name: acme
//	    plan: gold
//	    keys: ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//	    revokedKeys: ["sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"]
//	  - name: reports-job
//	    plan: silver
//	    subjects: ["spiffe://example.org/reports"]
//
// Keys are stored hashed ([HashAPIKey]): the document, a file or a Consul KV value, never
// holds a usable key.
type ConsumersConfig struct {
	// Plans maps a plan's name (letters, digits, '.', '_', '-'; at most 64 bytes) to its
	// quotas and routes. Default: none.
	Plans map[string]Plan `json:"plans,omitempty" yaml:"plans,omitempty"`
	// Consumers are the callers the registry knows. Default: none, which identifies no one.
	Consumers []ConsumerConfig `json:"consumers,omitempty" yaml:"consumers,omitempty"`
}

// Plan is what a consumer may do: how often, and where. Each consumer of a plan has quotas
// of its own; the plan only says how large they are.
type Plan struct {
	// PerSecond is the sustained requests per second each consumer of the plan may send.
	// Default 0: no per-second limit.
	PerSecond float64 `json:"perSecond,omitempty" yaml:"perSecond,omitempty"`
	// Burst is how many requests a consumer may send at once before PerSecond paces it.
	// Default 0: one second's worth of PerSecond, rounded up. Only with PerSecond.
	Burst int `json:"burst,omitempty" yaml:"burst,omitempty"`
	// PerDay is the requests each consumer may send in a day. It is a token bucket of
	// PerDay requests that refills at PerDay per 24 hours, continuously: not a calendar day
	// that resets at midnight. A consumer that spent it all gets a request back every
	// 86400/PerDay seconds. Default 0: no daily quota. At most 2147483647.
	PerDay int64 `json:"perDay,omitempty" yaml:"perDay,omitempty"`
	// Routes are the names of the routes (route.Route's Name) the plan's consumers may call.
	// Default: none listed, which allows every route.
	Routes []string `json:"routes,omitempty" yaml:"routes,omitempty"`
}

// ConsumerConfig is one consumer of the registry document.
type ConsumerConfig struct {
	// Name identifies the consumer in quotas, telemetry and the request context (letters,
	// digits, '.', '_', '-', '@', ':'; at most 128 bytes). Required and unique.
	Name string `json:"name" yaml:"name"`
	// Plan names the consumer's plan, a key of ConsumersConfig.Plans. Required.
	Plan string `json:"plan" yaml:"plan"`
	// Keys are the consumer's API keys, each as HashAPIKey writes it: "sha256:" and 64
	// hexadecimal digits. A key belongs to one consumer only. Default: none.
	Keys []string `json:"keys,omitempty" yaml:"keys,omitempty"`
	// RevokedKeys are keys the consumer used to have, hashed as Keys: a request that presents
	// one is refused as ErrRevokedAPIKey (it is told apart from an unknown key in telemetry,
	// never in the answer). Default: none.
	RevokedKeys []string `json:"revokedKeys,omitempty" yaml:"revokedKeys,omitempty"`
	// Subjects are the verified JWT subjects ("sub") that identify the consumer when a
	// request carries no API key. A subject belongs to one consumer only. Default: none.
	Subjects []string `json:"subjects,omitempty" yaml:"subjects,omitempty"`
}

// MaxAPIKeyBytes is the longest API key a lookup hashes: a longer one is unknown at once, so
// that a caller cannot make the gateway hash megabytes per request.
const MaxAPIKeyBytes = 256

// APIKeyHashPrefix starts every stored key hash.
const APIKeyHashPrefix = "sha256:"

// HashAPIKey returns the form in which a consumer's API key is stored in
// ConsumerConfig.Keys: "sha256:" and the lower-case hexadecimal SHA-256 of key.
//
// A single unsalted SHA-256 is the right hash for API keys, which the issuer generates at
// random with at least 128 bits of entropy (32 random bytes, base64-encoded, say): no
// dictionary or brute force reaches such a key, and a fast hash keeps each request's lookup
// cheap. It is NOT a way to store passwords or other secrets people choose; those need a
// slow, salted hash (argon2id, bcrypt), which this registry does not do.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return APIKeyHashPrefix + hex.EncodeToString(sum[:])
}

// Errors of the consumer lookups.
var (
	// ErrUnknownAPIKey means the presented API key belongs to no consumer (or is longer than
	// MaxAPIKeyBytes, or empty).
	ErrUnknownAPIKey = errors.New("auth: unknown API key")
	// ErrRevokedAPIKey means the presented API key is one of a consumer's RevokedKeys.
	ErrRevokedAPIKey = errors.New("auth: revoked API key")
	// ErrUnknownSubject means the verified JWT subject belongs to no consumer.
	ErrUnknownSubject = errors.New("auth: subject is no consumer")
)

// Consumer is an identified caller, as a registry lookup returns it.
type Consumer struct {
	// Name is the consumer's name (ConsumerConfig.Name).
	Name string
	// Plan is the name of the consumer's plan.
	Plan string
	// Limits is the plan itself, as it was in the registry the lookup read. Its Routes slice
	// is shared: do not modify it.
	Limits Plan
}

// Consumers is a registry of consumers: it maps API keys and JWT subjects to a [Consumer]
// and its plan. Lookups read an immutable snapshot through an atomic pointer, without locks;
// [Consumers.Update] and [Consumers.Load] validate a new document and swap it in whole, so a
// request sees the old registry or the new one, never a mix. A refused document leaves the
// registry as it was. Load and Version make it a reload target: route/reload's File and
// Consul watchers keep it in step with a file or a Consul KV key, so that a key moved to
// RevokedKeys is refused from the reload on.
//
// Create it with [NewConsumers]; the zero value is not usable. It is safe for concurrent use,
// starts no goroutines and needs no cleanup.
type Consumers struct {
	cur     atomic.Pointer[consumerTable]
	version atomic.Uint64
	mu      sync.Mutex // serialises swaps, so that Version counts them in order
}

// consumerTable is one validated document, ready for lookups. Immutable.
type consumerTable struct {
	cfg       ConsumersConfig
	byKey     map[[sha256.Size]byte]int // key hash → index in consumers
	revoked   map[[sha256.Size]byte]int // revoked key hash → index in consumers
	bySubject map[string]int            // subject → index in consumers
	consumers []Consumer
}

// NewConsumers validates cfg and returns a registry serving it, at Version 1. Errors are
// *[ConsumersConfigError]s naming the field ("consumers[2].plan").
func NewConsumers(cfg ConsumersConfig) (*Consumers, error) {
	t, err := compileConsumers(cfg, nil)
	if err != nil {
		return nil, err
	}
	c := &Consumers{}
	c.cur.Store(t)
	c.version.Store(1)
	return c, nil
}

// Update validates cfg and, if it is good, makes it the registry; otherwise it returns the
// error and the registry stays as it was.
func (c *Consumers) Update(cfg ConsumersConfig) error {
	t, err := compileConsumers(cfg, nil)
	if err != nil {
		return err
	}
	c.swap(t)
	return nil
}

// Load parses a YAML or JSON registry document (see [ParseConsumersConfig]) and applies it as
// Update does. An empty document is refused: a reload that read a truncated file must not
// forget every consumer (write "consumers: []" for an empty registry).
func (c *Consumers) Load(data []byte) error {
	t, err := parseConsumers(data)
	if err != nil {
		return err
	}
	c.swap(t)
	return nil
}

func (c *Consumers) swap(t *consumerTable) {
	c.mu.Lock()
	c.cur.Store(t)
	c.version.Add(1)
	c.mu.Unlock()
}

// Version counts the documents the registry took, starting at 1 for NewConsumers'.
func (c *Consumers) Version() uint64 { return c.version.Load() }

// Config returns a copy of the document the registry serves.
func (c *Consumers) Config() ConsumersConfig { return cloneConsumers(c.cur.Load().cfg) }

// ByKey returns the consumer whose API key presented is. The key is hashed (SHA-256) and
// looked up; it is never kept. A key that is empty, longer than MaxAPIKeyBytes or belongs
// to no one returns ErrUnknownAPIKey; a revoked key returns ErrRevokedAPIKey.
func (c *Consumers) ByKey(presented string) (Consumer, error) {
	if presented == "" || len(presented) > MaxAPIKeyBytes {
		return Consumer{}, ErrUnknownAPIKey
	}
	t := c.cur.Load()
	sum := sha256.Sum256([]byte(presented))
	if i, ok := t.byKey[sum]; ok {
		return t.consumers[i], nil
	}
	if _, ok := t.revoked[sum]; ok {
		return Consumer{}, ErrRevokedAPIKey
	}
	return Consumer{}, ErrUnknownAPIKey
}

// BySubject returns the consumer a verified JWT subject identifies, or ErrUnknownSubject.
// The subject must come from a verified token (SubjectFromContext after a Guard): the
// registry does not check it.
func (c *Consumers) BySubject(subject string) (Consumer, error) {
	t := c.cur.Load()
	if i, ok := t.bySubject[subject]; ok && subject != "" {
		return t.consumers[i], nil
	}
	return Consumer{}, ErrUnknownSubject
}

type consumerKey struct{}

// ContextWithConsumer returns ctx carrying c, as middleware.WithConsumers stores the
// identified consumer for the handler. It is exported for handlers reached by other means and
// for tests.
func ContextWithConsumer(ctx context.Context, c Consumer) context.Context {
	return context.WithValue(ctx, consumerKey{}, c)
}

// ConsumerFromContext returns the consumer middleware.WithConsumers identified for the
// request, and whether there is one.
func ConsumerFromContext(ctx context.Context) (Consumer, bool) {
	c, ok := ctx.Value(consumerKey{}).(Consumer)
	return c, ok
}
