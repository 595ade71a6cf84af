package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Claims are the verified claims of a token. A *Claims is immutable once returned: share it
// freely, do not modify it. Methods are nil-safe.
type Claims struct {
	Issuer    string    // "iss"
	Subject   string    // "sub"; empty when absent
	Audience  []string  // "aud", a string or an array in the token
	ID        string    // "jti"
	Expiry    time.Time // "exp"
	NotBefore time.Time // "nbf"; zero when absent
	IssuedAt  time.Time // "iat"; zero when absent
	// Raw holds every claim as encoding/json decodes it (numbers are float64).
	Raw map[string]any

	scopes []string
}

// Scopes returns the scopes granted by the token: the space-separated "scope" claim (RFC
// 8693), or else "scp" as a string or an array of strings. The slice must not be modified.
func (c *Claims) Scopes() []string {
	if c == nil {
		return nil
	}
	return c.scopes
}

// HasScope reports whether the token grants scope s.
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scopes(), s) }

// Values returns a claim as strings: a string claim gives one value, an array of strings its
// elements, a boolean "true" or "false", a number its shortest decimal form. Other shapes, and
// absent claims, give nil.
func (c *Claims) Values(name string) []string {
	if c == nil {
		return nil
	}
	return claimStrings(c.Raw[name])
}

func claimStrings(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case bool:
		if t {
			return []string{"true"}
		}
		return []string{"false"}
	case float64:
		return []string{fmt.Sprint(t)}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	return nil
}

var errClaim = errors.New("auth: bad claim")

// parseClaims decodes a verified payload. Registered claims of the wrong JSON type are errors.
func parseClaims(payload []byte) (*Claims, error) {
	c := &Claims{}
	if err := json.Unmarshal(payload, &c.Raw); err != nil || c.Raw == nil {
		return nil, errClaim
	}
	var err error
	str := func(name string) string {
		v, ok := c.Raw[name]
		if !ok {
			return ""
		}
		s, isStr := v.(string)
		if !isStr {
			err = errClaim
		}
		return s
	}
	date := func(name string) time.Time {
		v, ok := c.Raw[name]
		if !ok {
			return time.Time{}
		}
		f, isNum := v.(float64)
		// NumericDate: seconds since the epoch; refuse values time.Unix cannot hold sensibly.
		if !isNum || f < 0 || f > 1<<40 || math.IsNaN(f) {
			err = errClaim
			return time.Time{}
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9))
	}
	c.Issuer = str("iss")
	c.Subject = str("sub")
	c.ID = str("jti")
	c.Expiry = date("exp")
	c.NotBefore = date("nbf")
	c.IssuedAt = date("iat")
	switch a := c.Raw["aud"].(type) {
	case nil:
		if _, present := c.Raw["aud"]; present {
			err = errClaim
		}
	case string:
		c.Audience = []string{a}
	case []any:
		if c.Audience = claimStrings(a); c.Audience == nil && len(a) > 0 {
			err = errClaim
		}
	default:
		err = errClaim
	}
	if s, ok := c.Raw["scope"].(string); ok {
		c.scopes = strings.Fields(s)
	} else {
		switch scp := c.Raw["scp"].(type) {
		case string:
			c.scopes = strings.Fields(scp)
		case []any:
			c.scopes = claimStrings(scp)
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

type claimsKey struct{}

// ContextWithClaims returns a copy of ctx carrying c. The adapters call it after validation;
// it is exported for handlers reached by other means and for tests.
func ContextWithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFromContext returns the verified claims a Guard put in the request context.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// SubjectFromContext returns the verified token's subject, or "" when there is none: handy as
// a rate-limit key.
func SubjectFromContext(ctx context.Context) string {
	c, _ := ClaimsFromContext(ctx)
	if c == nil {
		return ""
	}
	return c.Subject
}

// Rule is an authorization rule checked after validation. The zero Rule allows every valid
// token.
type Rule struct {
	// Scopes must all be granted by the token. Default: none required.
	Scopes []string `json:"scopes,omitempty" yaml:"scopes,omitempty"`
	// Claims maps a claim name to its accepted values: the claim (or, for an array claim, one
	// of its elements) must equal one of them. Every listed claim must match. Default: none.
	Claims map[string][]string `json:"claims,omitempty" yaml:"claims,omitempty"`
}

// Check returns nil when c satisfies the rule and ErrForbidden otherwise (also for nil c).
func (r Rule) Check(c *Claims) error {
	if c == nil {
		if len(r.Scopes) == 0 && len(r.Claims) == 0 {
			return nil
		}
		return ErrForbidden
	}
	for _, s := range r.Scopes {
		if !c.HasScope(s) {
			return ErrForbidden
		}
	}
	for name, accepted := range r.Claims {
		got := c.Values(name)
		if !slices.ContainsFunc(got, func(g string) bool { return slices.Contains(accepted, g) }) {
			return ErrForbidden
		}
	}
	return nil
}

func (r Rule) validate(field string) error {
	for i, s := range r.Scopes {
		if s == "" || strings.ContainsAny(s, " \t") {
			return cfgErr(fmt.Sprintf("%s.Scopes[%d]", field, i), "empty or contains spaces")
		}
	}
	for name, vals := range r.Claims {
		if name == "" {
			return cfgErr(field+".Claims", "empty claim name")
		}
		if len(vals) == 0 {
			return cfgErr(field+".Claims["+name+"]", "no accepted values")
		}
	}
	return nil
}
