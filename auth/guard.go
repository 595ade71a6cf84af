package auth

import (
	"context"
	"errors"
	"fmt"
)

// GuardOption configures a Guard.
type GuardOption interface{ applyGuard(*guardConfig) }

type guardConfig struct {
	source      TokenSource
	optional    bool
	rule        Rule
	methodRules map[string]Rule
}

type guardOptionFunc func(*guardConfig)

func (f guardOptionFunc) applyGuard(c *guardConfig) { f(c) }

// WithTokenSource sets where the token is read from. Default: the zero TokenSource
// (Authorization: Bearer, gRPC "authorization" metadata).
func WithTokenSource(s TokenSource) GuardOption {
	return guardOptionFunc(func(c *guardConfig) { c.source = s })
}

// WithOptionalToken lets requests without a token pass on, with no claims in their context
// (an invalid token is still rejected). Default: a token is required. A request without a
// token is still rejected when its rule requires scopes or claims.
func WithOptionalToken() GuardOption {
	return guardOptionFunc(func(c *guardConfig) { c.optional = true })
}

// WithRule sets the authorization rule checked after validation. Default: the zero Rule (any
// valid token).
func WithRule(r Rule) GuardOption {
	return guardOptionFunc(func(c *guardConfig) { c.rule = r })
}

// WithMethodRules sets per-method rules for gRPC, keyed by full method name
// ("/package.Service/Method"); a listed method uses its rule instead of WithRule's. The HTTP
// handler ignores them: give each route its own Guard.
func WithMethodRules(rules map[string]Rule) GuardOption {
	return guardOptionFunc(func(c *guardConfig) { c.methodRules = rules })
}

// Guard authenticates requests with a Validator and authorizes them with rules. Its adapters
// are Handler (HTTP) and UnaryServerInterceptor and StreamServerInterceptor (gRPC). A Guard is
// immutable and safe for concurrent use; it owns nothing that needs closing (close the
// Validator).
type Guard struct {
	v           *Validator      // immutable
	source      TokenSource     // immutable
	optional    bool            // immutable
	rule        Rule            // immutable
	methodRules map[string]Rule // immutable copy
}

// NewGuard builds a Guard over v.
func NewGuard(v *Validator, opts ...GuardOption) (*Guard, error) {
	if v == nil {
		return nil, cfgErr("validator", "required")
	}
	var cfg guardConfig
	for _, o := range opts {
		if o != nil {
			o.applyGuard(&cfg)
		}
	}
	if err := cfg.source.validate("TokenSource"); err != nil {
		return nil, err
	}
	if err := cfg.rule.validate("Rule"); err != nil {
		return nil, err
	}
	g := &Guard{v: v, source: cfg.source, optional: cfg.optional, rule: cfg.rule, methodRules: make(map[string]Rule, len(cfg.methodRules))}
	for m, r := range cfg.methodRules {
		if len(m) < 3 || m[0] != '/' {
			return nil, cfgErr(fmt.Sprintf("MethodRules[%q]", m), `not a full method name "/pkg.Service/Method"`)
		}
		if err := r.validate(fmt.Sprintf("MethodRules[%q]", m)); err != nil {
			return nil, err
		}
		g.methodRules[m] = r
	}
	return g, nil
}

// outcome of authenticating one request.
type verdict int

const (
	allowed verdict = iota
	unauthenticated
	forbidden
	canceled
)

// check validates token (already extracted, or err from extraction) and applies rule.
func (g *Guard) check(ctx context.Context, token string, extractErr error, rule Rule) (*Claims, verdict, error) {
	if extractErr != nil {
		if errors.Is(extractErr, ErrMissingToken) && g.optional && len(rule.Scopes) == 0 && len(rule.Claims) == 0 {
			return nil, allowed, nil
		}
		return nil, unauthenticated, extractErr
	}
	c, err := g.v.Validate(ctx, token)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, canceled, err
		}
		return nil, unauthenticated, err
	}
	if err := rule.Check(c); err != nil {
		return c, forbidden, err
	}
	return c, allowed, nil
}
