package auth

import (
	"context"
	"errors"
	"net/http"
	"net/textproto"
	"strings"

	"google.golang.org/grpc/metadata"
)

// TokenSource says where a server finds the bearer token. The zero value reads the
// "Authorization: Bearer <token>" header over HTTP and the "authorization" metadata key (with
// the same "Bearer " scheme) over gRPC.
type TokenSource struct {
	// Header is the HTTP header carrying the token. Default "Authorization", which requires
	// the Bearer scheme; in any other header the value is the token, an optional "Bearer "
	// prefix removed.
	Header string `json:"header,omitempty" yaml:"header,omitempty"`
	// Cookie, when set, names a cookie read when the header is absent.
	Cookie string `json:"cookie,omitempty" yaml:"cookie,omitempty"`
	// Metadata is the gRPC metadata key carrying the token. Default "authorization" (Bearer
	// scheme required); other keys are treated like other headers.
	Metadata string `json:"metadata,omitempty" yaml:"metadata,omitempty"`
}

var errAmbiguousToken = errors.New("auth: more than one token")

func (s TokenSource) validate(field string) error {
	if s.Header != "" && (!validHeaderName(s.Header)) {
		return cfgErr(field+".Header", "not a valid header name")
	}
	if s.Metadata != "" && (!validHeaderName(s.Metadata) || strings.HasSuffix(s.Metadata, "-bin") || strings.HasPrefix(s.Metadata, "grpc-")) {
		return cfgErr(field+".Metadata", "not a usable metadata key")
	}
	if s.Cookie != "" && !validHeaderName(s.Cookie) {
		return cfgErr(field+".Cookie", "not a valid cookie name")
	}
	return nil
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// FromRequest extracts the token from r. It returns ErrMissingToken when there is none,
// ErrTokenTooLarge (wrapped in a *TokenError) when a candidate exceeds maxBytes, and an error
// matching ErrInvalidToken when the header is malformed or repeated.
func (s TokenSource) FromRequest(r *http.Request, maxBytes int) (string, error) {
	name := s.Header
	if name == "" {
		name = "Authorization"
	}
	vals := r.Header.Values(name)
	if len(vals) > 0 {
		if len(vals) > 1 {
			return "", tokenErr("header", errAmbiguousToken)
		}
		return fromHeaderValue(vals[0], textproto.CanonicalMIMEHeaderKey(name) == "Authorization", maxBytes)
	}
	if s.Cookie != "" {
		var found string
		n := 0
		for _, c := range r.CookiesNamed(s.Cookie) {
			found = c.Value
			n++
		}
		if n > 1 {
			return "", tokenErr("cookie", errAmbiguousToken)
		}
		if n == 1 {
			if len(found) > maxBytes {
				return "", tokenErr("size", ErrTokenTooLarge)
			}
			if found == "" {
				return "", ErrMissingToken
			}
			return found, nil
		}
	}
	return "", ErrMissingToken
}

// FromIncomingContext extracts the token from the incoming gRPC metadata of ctx, with the
// same results as FromRequest.
func (s TokenSource) FromIncomingContext(ctx context.Context, maxBytes int) (string, error) {
	key := strings.ToLower(s.Metadata)
	if key == "" {
		key = "authorization"
	}
	vals := metadata.ValueFromIncomingContext(ctx, key)
	switch len(vals) {
	case 0:
		return "", ErrMissingToken
	case 1:
		return fromHeaderValue(vals[0], key == "authorization", maxBytes)
	default:
		return "", tokenErr("metadata", errAmbiguousToken)
	}
}

// fromHeaderValue takes the token out of a header value. The size is checked first, before
// anything else looks at the value.
func fromHeaderValue(v string, requireBearer bool, maxBytes int) (string, error) {
	if len(v) > maxBytes+len("Bearer ")+8 {
		return "", tokenErr("size", ErrTokenTooLarge)
	}
	v = strings.TrimSpace(v)
	scheme, rest, hasSpace := strings.Cut(v, " ")
	switch {
	case hasSpace && strings.EqualFold(scheme, "Bearer"):
		v = strings.TrimLeft(rest, " ")
	case requireBearer:
		if v == "" {
			return "", ErrMissingToken
		}
		return "", tokenErr("not a bearer token", nil)
	}
	if v == "" {
		return "", ErrMissingToken
	}
	if len(v) > maxBytes {
		return "", tokenErr("size", ErrTokenTooLarge)
	}
	return v, nil
}
