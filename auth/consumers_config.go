package auth

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/internal/conf"
)

// ErrInvalidConsumers is matched (with errors.Is) by every error NewConsumers, Update, Load
// and ParseConsumersConfig return for a bad registry document.
var ErrInvalidConsumers = errors.New("auth: invalid consumers document")

// ConsumersConfigError is a problem at a path of a registry document, such as
// "consumers[2].plan". Its message reads "auth: <path>: <problem> (line L, column C)".
type ConsumersConfigError struct {
	Path string // the field's path, in the document's own (camelCase) names
	// Line and Column locate the problem in the document, 1-based; 0 when the registry was
	// not read from a document (NewConsumers, Update).
	Line, Column int
	Err          error // the problem
}

func (e *ConsumersConfigError) Error() string {
	msg := "auth: " + e.Err.Error()
	if e.Path != "" {
		msg = "auth: " + e.Path + ": " + e.Err.Error()
	}
	if loc := conf.Location(e.Line, e.Column); loc != "" {
		msg += " (" + loc + ")"
	}
	return msg
}

// Unwrap returns the problem.
func (e *ConsumersConfigError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalidConsumers.
func (e *ConsumersConfigError) Is(target error) bool { return target == ErrInvalidConsumers }

// Bounds of the registry document.
const (
	maxPlanName     = 64
	maxConsumerName = 128
	maxSubject      = 1024
	maxPerSecond    = 1e6
	maxRefill       = 365 * 24 * 3600 // seconds a plan's burst may take to refill
)

// ParseConsumersConfig reads a registry document from YAML or JSON (a document whose first
// non-blank character is '{' is read as JSON) and validates it as NewConsumers would. Keys
// are camelCase; unknown and repeated fields are refused. Every error is a
// *[ConsumersConfigError] naming the field's path and its line and column.
func ParseConsumersConfig(data []byte) (ConsumersConfig, error) {
	t, err := parseConsumers(data)
	if err != nil {
		return ConsumersConfig{}, err
	}
	return t.cfg, nil
}

func parseConsumers(data []byte) (*consumerTable, error) {
	root, isJSON, err := conf.Parse(data)
	var cfg ConsumersConfig
	if err == nil {
		err = conf.DecodeNode(root, &cfg, isJSON)
	}
	var ce *conf.Error
	switch {
	case errors.Is(err, conf.ErrEmpty) || (err == nil && cfg.Plans == nil && cfg.Consumers == nil):
		// An empty file, "{}", a file cut off after its first line: nothing was said, which
		// a reload must not read as "no consumers".
		return nil, &ConsumersConfigError{Err: errors.New(`empty document: write "consumers: []" for a registry without consumers`)}
	case errors.As(err, &ce):
		if keyListPath.MatchString(ce.Path) {
			// The value may be a key in clear (keys: my-key): never echo it.
			return nil, &ConsumersConfigError{Path: ce.Path, Line: ce.Line, Column: ce.Column,
				Err: errors.New(`want a list of key hashes "sha256:<64 hex digits>" (auth.HashAPIKey); the value is not shown`)}
		}
		return nil, &ConsumersConfigError{Path: ce.Path, Line: ce.Line, Column: ce.Column, Err: ce.Err}
	case err != nil:
		return nil, &ConsumersConfigError{Err: err}
	}
	return compileConsumers(cfg, root)
}

// keyListPath matches the paths of the key lists and their items.
var keyListPath = regexp.MustCompile(`^consumers\[\d+\]\.(keys|revokedKeys)(\[\d+\])?$`)

// checker builds the errors of one validation, located in root when there is one.
type checker struct{ root *yaml.Node }

func (c checker) fail(path, format string, args ...any) error {
	e := &ConsumersConfigError{Path: path, Err: fmt.Errorf(format, args...)}
	if c.root != nil {
		e.Line, e.Column = conf.Locate(c.root, path)
	}
	return e
}

// compileConsumers validates cfg and builds its lookup table, from a deep copy of cfg.
func compileConsumers(cfg ConsumersConfig, root *yaml.Node) (*consumerTable, error) {
	ck := checker{root}
	cfg = cloneConsumers(cfg)
	names := slices.Sorted(maps.Keys(cfg.Plans))
	for _, name := range names {
		if err := ck.plan(name, cfg.Plans[name]); err != nil {
			return nil, err
		}
	}
	t := &consumerTable{
		cfg:       cfg,
		byKey:     map[[sha256.Size]byte]int{},
		revoked:   map[[sha256.Size]byte]int{},
		bySubject: map[string]int{},
		consumers: make([]Consumer, len(cfg.Consumers)),
	}
	seenName := map[string]int{}
	seenKey := map[[sha256.Size]byte]string{} // hash → path of its first use
	for i, cc := range cfg.Consumers {
		p := "consumers[" + strconv.Itoa(i) + "]"
		if err := ck.consumerName(p, cc.Name, seenName, i); err != nil {
			return nil, err
		}
		plan, ok := cfg.Plans[cc.Plan]
		if !ok {
			return nil, ck.fail(p+".plan", "unknown plan %q (plans: %s)", truncate(cc.Plan), strings.Join(names, ", "))
		}
		t.consumers[i] = Consumer{Name: cc.Name, Plan: cc.Plan, Limits: plan}
		if err := ck.keys(p+".keys", cc.Keys, seenKey, t.byKey, i); err != nil {
			return nil, err
		}
		if err := ck.keys(p+".revokedKeys", cc.RevokedKeys, seenKey, t.revoked, i); err != nil {
			return nil, err
		}
		if err := ck.subjects(p+".subjects", cc.Subjects, t.bySubject, i); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (c checker) plan(name string, p Plan) error {
	path := planPath(name)
	switch {
	case !validName(name, maxPlanName, ""):
		return c.fail(path, "plan name %q: want 1 to %d letters, digits, '.', '_' or '-'", truncate(name), maxPlanName)
	case math.IsNaN(p.PerSecond) || p.PerSecond < 0 || p.PerSecond > maxPerSecond:
		return c.fail(path+".perSecond", "%v is outside 0 (no limit) to %g", p.PerSecond, float64(maxPerSecond))
	case p.Burst < 0 || p.Burst > math.MaxInt32:
		return c.fail(path+".burst", "%d is outside 0 (one second's worth) to %d", p.Burst, math.MaxInt32)
	case p.Burst > 0 && p.PerSecond == 0:
		return c.fail(path+".burst", "is set without perSecond, which it belongs to")
	case p.PerSecond > 0 && float64(cmp.Or(p.Burst, int(math.Ceil(p.PerSecond))))/p.PerSecond > maxRefill:
		return c.fail(path+".burst", "a burst of %d at %v per second would take over a year to refill", cmp.Or(p.Burst, int(math.Ceil(p.PerSecond))), p.PerSecond)
	case p.PerDay < 0 || p.PerDay > math.MaxInt32:
		return c.fail(path+".perDay", "%d is outside 0 (no daily quota) to %d", p.PerDay, math.MaxInt32)
	}
	seen := map[string]bool{}
	for i, r := range p.Routes {
		rp := path + ".routes[" + strconv.Itoa(i) + "]"
		switch {
		case r == "":
			return c.fail(rp, "empty route name")
		case seen[r]:
			return c.fail(rp, "route %q is listed twice", truncate(r))
		}
		seen[r] = true
	}
	return nil
}

func (c checker) consumerName(p, name string, seen map[string]int, i int) error {
	if !validName(name, maxConsumerName, "@:") {
		return c.fail(p+".name", "consumer name %q: want 1 to %d letters, digits, '.', '_', '-', '@' or ':'", truncate(name), maxConsumerName)
	}
	if j, dup := seen[name]; dup {
		return c.fail(p+".name", "consumer %q is also consumers[%d]", name, j)
	}
	seen[name] = i
	return nil
}

// keys parses the key hashes of one list into into, refusing one seen anywhere before.
func (c checker) keys(p string, keys []string, seen map[[sha256.Size]byte]string, into map[[sha256.Size]byte]int, i int) error {
	for j, k := range keys {
		kp := p + "[" + strconv.Itoa(j) + "]"
		sum, ok := parseKeyHash(k)
		if !ok {
			if len(k) > 0 && !strings.HasPrefix(k, APIKeyHashPrefix) {
				// Never echo what may be a key in clear.
				return c.fail(kp, "want a key hash \"sha256:<64 hex digits>\" (auth.HashAPIKey), not a key")
			}
			return c.fail(kp, "want a key hash \"sha256:<64 hex digits>\" (auth.HashAPIKey)")
		}
		if first, dup := seen[sum]; dup {
			return c.fail(kp, "the same key is at %s: a key belongs to one consumer, once", first)
		}
		seen[sum] = kp
		into[sum] = i
	}
	return nil
}

func (c checker) subjects(p string, subjects []string, into map[string]int, i int) error {
	for j, s := range subjects {
		sp := p + "[" + strconv.Itoa(j) + "]"
		if s == "" || len(s) > maxSubject {
			return c.fail(sp, "want a subject of 1 to %d bytes", maxSubject)
		}
		if k, dup := into[s]; dup {
			return c.fail(sp, "subject %q is also consumers[%d]'s", truncate(s), k)
		}
		into[s] = i
	}
	return nil
}

// parseKeyHash reads "sha256:<64 hex digits>" (either case).
func parseKeyHash(s string) ([sha256.Size]byte, bool) {
	var sum [sha256.Size]byte
	h, ok := strings.CutPrefix(s, APIKeyHashPrefix)
	if !ok || len(h) != 2*sha256.Size {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(h)); err != nil {
		return sum, false
	}
	return sum, true
}

// validName reports whether s is 1 to n bytes of letters, digits, '.', '_', '-' and extra.
func validName(s string, n int, extra string) bool {
	if s == "" || len(s) > n {
		return false
	}
	for _, r := range s {
		ok := r == '.' || r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') || strings.ContainsRune(extra, r)
		if !ok {
			return false
		}
	}
	return true
}

// planPath is the document path of a plan, as the decoder writes it.
func planPath(name string) string {
	for _, r := range name {
		if !(r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')) {
			return "plans[" + strconv.Quote(truncate(name)) + "]"
		}
	}
	return "plans." + name
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// cloneConsumers copies cfg deeply, so that the registry is immune to the caller's later
// changes.
func cloneConsumers(cfg ConsumersConfig) ConsumersConfig {
	out := ConsumersConfig{Consumers: make([]ConsumerConfig, len(cfg.Consumers))}
	if cfg.Plans != nil {
		out.Plans = make(map[string]Plan, len(cfg.Plans))
		for n, p := range cfg.Plans {
			p.Routes = slices.Clone(p.Routes)
			out.Plans[n] = p
		}
	}
	for i, c := range cfg.Consumers {
		c.Keys, c.RevokedKeys, c.Subjects = slices.Clone(c.Keys), slices.Clone(c.RevokedKeys), slices.Clone(c.Subjects)
		out.Consumers[i] = c
	}
	if cfg.Consumers == nil {
		out.Consumers = nil
	}
	return out
}

// UnmarshalJSON reads c strictly from JSON: camelCase keys, unknown fields refused. It does
// not validate the values (NewConsumers and ParseConsumersConfig do).
func (c *ConsumersConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("auth", b, c) }

// UnmarshalYAML reads c strictly from YAML, as UnmarshalJSON.
func (c *ConsumersConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("auth", n, c) }

// MarshalJSON writes c so that it reads back.
func (c ConsumersConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(c) }

// MarshalYAML writes c so that it reads back.
func (c ConsumersConfig) MarshalYAML() (any, error) { return conf.Node(c) }
