package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
)

// TokenFunc returns the token to attach to an outbound call. It is called once per request
// and must be safe for concurrent use; it should return promptly once ctx is done.
type TokenFunc func(ctx context.Context) (string, error)

// StaticToken returns a TokenFunc that always returns token.
func StaticToken(token string) TokenFunc {
	return func(context.Context) (string, error) { return token, nil }
}

var errEmptyToken = errors.New("auth: empty outbound token")

// TokenFile is a token read from a file (a projected service-account token, say) and re-read
// when the file changes. Leading and trailing white space is trimmed. Safe for concurrent use;
// no goroutine, nothing to close.
type TokenFile struct {
	fs *fileSet[string]
}

// NewTokenFile reads the token at path, which must exist and be non-empty. The file is checked
// for changes at most once per interval (0 means 1s); a change that leaves it empty or
// unreadable keeps the last good token.
func NewTokenFile(path string, interval time.Duration) (*TokenFile, error) {
	if path == "" {
		return nil, cfgErr("path", "required")
	}
	if interval < 0 {
		return nil, cfgErr("interval", "must not be negative")
	}
	fs, err := newFileSet([]string{path}, cmpOr(interval, time.Second), func(data [][]byte) (string, error) {
		t := strings.TrimSpace(string(data[0]))
		if t == "" {
			return "", errEmptyToken
		}
		return t, nil
	}, nil)
	if err != nil {
		return nil, cfgErr("path", err.Error())
	}
	return &TokenFile{fs: fs}, nil
}

// Token returns the current token. It matches TokenFunc.
func (f *TokenFile) Token(context.Context) (string, error) { return f.fs.get(), nil }

// Transport is an http.RoundTripper that adds "Authorization: Bearer <token>" to each request
// that has no Authorization header yet. Safe for concurrent use.
type Transport struct {
	base  http.RoundTripper // immutable
	token TokenFunc         // immutable
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport wraps base (nil means http.DefaultTransport) with token.
func NewTransport(base http.RoundTripper, token TokenFunc) (*Transport, error) {
	if token == nil {
		return nil, cfgErr("token", "required")
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &Transport{base: base, token: token}, nil
}

// RoundTrip implements http.RoundTripper. A token error fails the request with a nil response.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" {
		return t.base.RoundTrip(req)
	}
	tok, err := t.token(req.Context())
	if err == nil && tok == "" {
		err = errEmptyToken
	}
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	r2 := req.Clone(req.Context())
	r2.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(r2)
}

// CloseIdleConnections forwards to the wrapped transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// PerRPCCredentials attaches "authorization: Bearer <token>" to gRPC calls
// (grpc.WithPerRPCCredentials). By default gRPC sends it only over secure transports.
type PerRPCCredentials struct {
	Token TokenFunc // required
	// AllowInsecure lets the token travel over connections without transport security.
	// Default false.
	AllowInsecure bool
}

var _ credentials.PerRPCCredentials = PerRPCCredentials{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c PerRPCCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if c.Token == nil {
		return nil, cfgErr("PerRPCCredentials.Token", "required")
	}
	tok, err := c.Token(ctx)
	if err == nil && tok == "" {
		err = errEmptyToken
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c PerRPCCredentials) RequireTransportSecurity() bool { return !c.AllowInsecure }
