package auth

import (
	"errors"
)

// Sentinel errors. Every token validation failure matches ErrInvalidToken with errors.Is; the
// more specific sentinels below it say why.
var (
	// ErrMissingToken means the request carried no token where one was looked for.
	ErrMissingToken = errors.New("auth: missing token")
	// ErrInvalidToken is matched by every validation failure.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrTokenTooLarge means the token exceeded the size cap and was not parsed.
	ErrTokenTooLarge = errors.New("auth: token too large")
	// ErrExpired means the token's exp (plus leeway) has passed.
	ErrExpired = errors.New("auth: token expired")
	// ErrNotYetValid means the token's nbf or iat (minus leeway) lies in the future.
	ErrNotYetValid = errors.New("auth: token not yet valid")
	// ErrUnknownKey means no key of the issuer matched the token's kid and algorithm.
	ErrUnknownKey = errors.New("auth: no matching key")
	// ErrKeysUnavailable means the issuer's keys could not be loaded, or are older than the
	// configured maximum staleness.
	ErrKeysUnavailable = errors.New("auth: keys unavailable")
	// ErrForbidden means a valid token (or peer) failed an authorization rule.
	ErrForbidden = errors.New("auth: forbidden")
	// ErrPeerNotAllowed means an mTLS peer's certificate matched no entry of the peer policy.
	ErrPeerNotAllowed = errors.New("auth: peer not allowed")
)

// TokenError is a token validation failure. Its Reason is a short fixed phrase (never token
// content or key material), safe to log; it is never sent to clients by the adapters.
// TokenError matches ErrInvalidToken and whatever Err matches.
type TokenError struct {
	Reason string // e.g. "bad signature", "wrong audience"
	Err    error  // a sentinel such as ErrExpired, or an underlying error; may be nil
}

func (e *TokenError) Error() string {
	if e.Err != nil && e.Err.Error() != "" {
		return "auth: invalid token: " + e.Reason + ": " + e.Err.Error()
	}
	return "auth: invalid token: " + e.Reason
}

// Is reports whether target is ErrInvalidToken.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

// Unwrap returns the underlying error.
func (e *TokenError) Unwrap() error { return e.Err }

func tokenErr(reason string, err error) error { return &TokenError{Reason: reason, Err: err} }

// ConfigError names a configuration field that failed validation.
type ConfigError struct {
	Field  string // e.g. "Issuers[1].Algorithms"
	Reason string
}

func (e *ConfigError) Error() string { return "auth: invalid " + e.Field + ": " + e.Reason }

func cfgErr(field, reason string) error { return &ConfigError{Field: field, Reason: reason} }
