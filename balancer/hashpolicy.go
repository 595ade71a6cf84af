package balancer

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// HashPolicy names one part of a request whose value makes the request's hash key, for the
// consistent-hashing policies ([PolicyMaglev], [PolicyRingHash]). Exactly one of Header,
// Metadata, Cookie, QueryParameter, SourceIP and ContextKey must be set. It is a plain struct
// that loads from YAML or JSON ({"header": "x-user-id"}).
//
// A list of policies ([Config].HashPolicy, and a route's hashPolicy in package route) is
// evaluated with Envoy's semantics: each policy in order either yields a value or not; the
// hashes of the values yielded are combined (the hash so far rotated left by one bit, xor
// the new one), so the key depends on every policy that yielded; a Terminal policy stops the
// evaluation once a key exists (from it or from an earlier policy). To try policies in order
// and use the first that yields, mark every policy but the last Terminal. When no policy
// yields, the request has no key and the pick is random.
//
// The balancer itself reads no request: the adapters evaluate the policies (package
// middleware for HTTP and gRPC clients, package balancer/grpcbalancer for gRPC channels) and
// pass the key in [PickInfo].Key.
//
// Trust: the key only chooses which endpoint of the destination the request goes to, never
// the destination, a route, a canary side, a fault or a limit; ejection, health, breakers
// and Retry-After still apply to the endpoint it chooses. But a caller that controls the
// value (a header, cookie or query parameter it sends) can send all its requests to one
// endpoint: hash on values the caller cannot choose freely (a verified user id put in the
// context with [WithHashKey]) where that matters. Values are hashed on at most their first
// [MaxHashKeyBytes] bytes.
type HashPolicy struct {
	// Header hashes the request header of this name (any case), its values joined with ",".
	// For a gRPC call it is the metadata key of this name: gRPC metadata are HTTP/2 headers.
	Header string `json:"header,omitempty" yaml:"header,omitempty"`
	// Metadata hashes the gRPC metadata key of this name (lower case, not a binary "-bin"
	// key), its values joined with ",", as gRPC's request hash header (gRFC A60). For an HTTP
	// request it is the header of this name.
	Metadata string `json:"metadata,omitempty" yaml:"metadata,omitempty"`
	// Cookie hashes the value of the HTTP cookie of this name. A gRPC call yields nothing for
	// it (the gRPC clients refuse it in their destination's config).
	Cookie string `json:"cookie,omitempty" yaml:"cookie,omitempty"`
	// QueryParameter hashes the first value of the URL query parameter of this name
	// (case-sensitive, decoded). A gRPC call yields nothing for it (the gRPC clients refuse
	// it in their destination's config).
	QueryParameter string `json:"queryParameter,omitempty" yaml:"queryParameter,omitempty"`
	// SourceIP hashes the IP address (without the port) of the caller on whose behalf the
	// request is sent: for an outbound HTTP request, its RemoteAddr when set (a server's
	// request forwarded as it came, as httputil.ReverseProxy does); otherwise the peer of a
	// gRPC server call whose context the request or call descends from. Forwarded headers
	// (X-Forwarded-For) are not read. A request made while serving an HTTP request with a
	// new context yields nothing: put the address in the context with [WithHashKey] and use
	// ContextKey instead.
	SourceIP bool `json:"sourceIP,omitempty" yaml:"sourceIP,omitempty"`
	// ContextKey hashes the key the application put in the request's context with
	// [WithHashKey].
	ContextKey bool `json:"contextKey,omitempty" yaml:"contextKey,omitempty"`
	// Terminal stops the evaluation of the list after this policy once a key exists.
	// Default false.
	Terminal bool `json:"terminal,omitempty" yaml:"terminal,omitempty"`
}

// MaxHashKeyBytes bounds the work a hash key costs: each value a [HashPolicy] yields is
// hashed on at most its first MaxHashKeyBytes bytes (values that differ only after them
// share a key), and a [WithHashKey] key likewise.
const MaxHashKeyBytes = 256

// MaxHashPolicies bounds the length of a list of hash policies.
const MaxHashPolicies = 8

// Validate reports what is wrong with p, naming its fields by their JSON names.
func (p HashPolicy) Validate() error {
	n := 0
	for _, set := range []bool{p.Header != "", p.Metadata != "", p.Cookie != "", p.QueryParameter != "", p.SourceIP, p.ContextKey} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("set exactly one of header, metadata, cookie, queryParameter, sourceIP and contextKey")
	}
	for _, f := range []struct{ name, v string }{{"header", p.Header}, {"metadata", p.Metadata}, {"cookie", p.Cookie}, {"queryParameter", p.QueryParameter}} {
		if f.v == "" {
			continue
		}
		if len(f.v) > MaxHashKeyBytes {
			return fmt.Errorf("%s: name of %d bytes is over %d", f.name, len(f.v), MaxHashKeyBytes)
		}
		if !tokenName(f.v, f.name == "queryParameter") {
			return fmt.Errorf("%s: %q is not a valid name", f.name, truncateName(f.v))
		}
	}
	if p.Metadata != "" && (strings.HasSuffix(p.Metadata, "-bin") || strings.ToLower(p.Metadata) != p.Metadata) {
		return fmt.Errorf("metadata: %q must be lower case and not a binary (-bin) key", truncateName(p.Metadata))
	}
	return nil
}

// validateHashPolicies checks a list of hash policies: at most MaxHashPolicies, each valid.
// field names the list in errors, such as "HashPolicy".
func validateHashPolicies(field string, ps []HashPolicy) error {
	if len(ps) > MaxHashPolicies {
		return fmt.Errorf("%s: %d policies is over the limit of %d", field, len(ps), MaxHashPolicies)
	}
	for i, p := range ps {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
	}
	return nil
}

// tokenName reports whether s is a header or cookie name (an HTTP token), or, when query is
// set, a query parameter name (any printable ASCII but '&', '=' and '#').
func tokenName(s string, query bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f {
			return false
		}
		if query {
			if c == '&' || c == '=' || c == '#' {
				return false
			}
			continue
		}
		if strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return s != ""
}

func truncateName(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

type hashKeyCtx struct{}

// WithHashKey returns a copy of ctx that carries key as the request's hash key, for the
// hash policies with ContextKey set: requests made in the context (HTTP through
// middleware's Transport, gRPC calls through its GRPCClient or a grpcbalancer channel) whose
// destination hashes on the context key go to the endpoint key maps to. Use a value the
// application trusts, such as a verified user id. An empty key is no key.
func WithHashKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, hashKeyCtx{}, key)
}

// HashKeyFromContext returns the key WithHashKey put in ctx, and whether there is a non-empty
// one.
func HashKeyFromContext(ctx context.Context) (string, bool) {
	k, _ := ctx.Value(hashKeyCtx{}).(string)
	return k, k != ""
}

// HashRequest evaluates policies in order (Envoy's semantics: see [HashPolicy]) and returns
// the request's key for [PickInfo].Key, or 0 when no policy yields a value. value returns
// the value policy p reads of the request and whether it found one; it is called only for
// the policies other than ContextKey, which HashRequest reads from ctx itself. Each value is
// hashed on at most its first MaxHashKeyBytes bytes. Adapters call it; applications use
// [WithHashKey] or the configuration.
func HashRequest(ctx context.Context, policies []HashPolicy, value func(p *HashPolicy) (string, bool)) uint64 {
	var h uint64
	have := false
	for i := range policies {
		p := &policies[i]
		var v string
		var ok bool
		if p.ContextKey {
			v, ok = HashKeyFromContext(ctx)
		} else {
			v, ok = value(p)
		}
		if ok {
			if len(v) > MaxHashKeyBytes {
				v = v[:MaxHashKeyBytes]
			}
			k := HashString(v)
			if have {
				k ^= h<<1 | h>>63 // rotated, so that two equal values do not cancel out
			}
			h, have = k, true
		}
		if p.Terminal && have {
			break
		}
	}
	if !have {
		return 0
	}
	return nonZero(h)
}

// JoinHashValues joins the values of a repeated header or metadata key with ",", as a list
// header is folded, keeping no more than MaxHashKeyBytes (only those are hashed); false when
// vs is empty. The HTTP and gRPC adapters share it.
func JoinHashValues(vs []string) (string, bool) {
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		room := MaxHashKeyBytes - min(b.Len(), MaxHashKeyBytes)
		b.WriteString(v[:min(len(v), room)])
		if b.Len() >= MaxHashKeyBytes {
			break
		}
	}
	return b.String(), true
}
