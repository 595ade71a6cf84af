package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer describes one token issuer: who it is, which audiences and algorithms it may use,
// and where its keys come from (exactly one of JWKSURL, JWKSFile and Keys).
type Issuer struct {
	// Issuer is the exact "iss" value of this issuer's tokens. Required.
	Issuer string `json:"issuer" yaml:"issuer"`
	// Audiences lists the accepted "aud" values; a token must name at least one. Required.
	Audiences []string `json:"audiences" yaml:"audiences"`
	// Algorithms is the explicit allow-list of JWS algorithms, e.g. ["RS256", "ES256"]. Required;
	// "none" is refused. HMAC algorithms (HS*) are refused with JWKSURL.
	Algorithms []string `json:"algorithms" yaml:"algorithms"`
	// JWKSURL is an https URL serving the issuer's JSON Web Key Set (http only for loopback
	// hosts). Keys are cached and refreshed as Refresh says.
	JWKSURL string `json:"jwksURL,omitempty" yaml:"jwksURL,omitempty"`
	// JWKSFile is a local JSON Web Key Set file, re-read when it changes.
	JWKSFile string `json:"jwksFile,omitempty" yaml:"jwksFile,omitempty"`
	// Keys are static keys.
	Keys []Key `json:"-" yaml:"-"`
	// Refresh tunes how JWKSURL and JWKSFile keys are kept. The zero value means the defaults.
	Refresh Refresh `json:"refresh" yaml:"refresh"`
}

// Refresh tunes key refresh. Every zero field means its default.
type Refresh struct {
	// Interval is, for JWKSURL, the period of scheduled fetches (default 5m) and, for JWKSFile,
	// how often the file is checked for changes (default 5s).
	Interval time.Duration `json:"interval" yaml:"interval"`
	// MinInterval is the least time between two JWKSURL fetches started by unknown key IDs or
	// retries after failures (default 30s). Tokens with unknown kids arriving sooner are
	// rejected without a fetch.
	MinInterval time.Duration `json:"minInterval" yaml:"minInterval"`
	// MaxStaleness is how long the last good JWKSURL keys stay in use while fetches fail
	// (default 24h); past it every token of the issuer is rejected until a fetch succeeds.
	MaxStaleness time.Duration `json:"maxStaleness" yaml:"maxStaleness"`
	// Timeout bounds one JWKSURL fetch (default 10s).
	Timeout time.Duration `json:"timeout" yaml:"timeout"`
	// MaxBytes caps the JWKSURL response body (default 1 MiB).
	MaxBytes int64 `json:"maxBytes" yaml:"maxBytes"`
}

// Default limits.
const (
	DefaultMaxTokenBytes = 8 << 10
	defaultURLInterval   = 5 * time.Minute
	defaultFileInterval  = 5 * time.Second
	defaultMinInterval   = 30 * time.Second
	defaultMaxStaleness  = 24 * time.Hour
	defaultFetchTimeout  = 10 * time.Second
	defaultJWKSMaxBytes  = 1 << 20
)

// ValidatorOption configures a Validator.
type ValidatorOption interface{ applyValidator(*validatorConfig) }

type validatorConfig struct {
	leeway   time.Duration
	maxBytes int
	client   *http.Client
	logger   *slog.Logger
}

type validatorOptionFunc func(*validatorConfig)

func (f validatorOptionFunc) applyValidator(c *validatorConfig) { f(c) }

// WithLeeway allows for clock skew when checking exp, nbf and iat. Default 0; negative values
// are refused by NewValidator.
func WithLeeway(d time.Duration) ValidatorOption {
	return validatorOptionFunc(func(c *validatorConfig) { c.leeway = d })
}

// WithMaxTokenBytes caps the size of a token; longer ones are rejected before any parsing.
// Default DefaultMaxTokenBytes (8 KiB).
func WithMaxTokenBytes(n int) ValidatorOption {
	return validatorOptionFunc(func(c *validatorConfig) { c.maxBytes = n })
}

// WithHTTPClient sets the client used to fetch JWKS URLs. Default: a client of the
// Validator's own, over a clone of http.DefaultTransport, closed with the Validator. Either
// way a JWKS fetch follows no redirect to another scheme or host (an https URL redirected to
// http, or to another server, is refused), and at most 10 redirects; c's own CheckRedirect,
// if any, is asked as well.
func WithHTTPClient(c *http.Client) ValidatorOption {
	return validatorOptionFunc(func(cfg *validatorConfig) { cfg.client = c })
}

// WithLogger makes the Validator report failed key refreshes. Default: no logging.
func WithLogger(l *slog.Logger) ValidatorOption {
	return validatorOptionFunc(func(c *validatorConfig) { c.logger = l })
}

type keySource interface {
	keys(ctx context.Context, kid, alg string) ([]verKey, error)
}

type issuer struct {
	name      string                    // immutable
	audiences []string                  // immutable
	algs      []jose.SignatureAlgorithm // immutable
	src       keySource                 // immutable
}

// Validator checks JWTs from one or more issuers. It is safe for concurrent use. A Validator
// with JWKSURL issuers runs one refresh goroutine per such issuer: call Close when done.
type Validator struct {
	byName    map[string]*issuer // immutable
	single    *issuer            // immutable; set when there is exactly one issuer
	leeway    time.Duration      // immutable
	maxBytes  int                // immutable
	remotes   []*remoteKeys      // immutable
	transport *http.Transport    // owned; nil when the caller gave a client
	closeOnce sync.Once

	validations atomic.Int64 // tokens given to Validate
	sigChecks   atomic.Int64 // signature verifications tried
}

// ValidatorStats counts a Validator's work since it was built.
type ValidatorStats struct {
	Validations     int64 // tokens given to Validate, valid or not
	SignatureChecks int64 // signature verifications tried (one per candidate key), the costly part
}

// Stats returns the validator's counters.
func (v *Validator) Stats() ValidatorStats {
	return ValidatorStats{Validations: v.validations.Load(), SignatureChecks: v.sigChecks.Load()}
}

// NewValidator builds a Validator for the given issuers. It does not block on the network:
// JWKS URLs are fetched in the background, and the first tokens wait (bounded by their
// context) for the first fetch.
func NewValidator(issuers []Issuer, opts ...ValidatorOption) (*Validator, error) {
	cfg := validatorConfig{maxBytes: DefaultMaxTokenBytes}
	for _, o := range opts {
		if o != nil {
			o.applyValidator(&cfg)
		}
	}
	if cfg.leeway < 0 {
		return nil, cfgErr("leeway", "must not be negative")
	}
	if cfg.maxBytes <= 0 {
		return nil, cfgErr("max token bytes", "must be positive")
	}
	if len(issuers) == 0 {
		return nil, cfgErr("issuers", "at least one issuer is required")
	}
	v := &Validator{byName: make(map[string]*issuer, len(issuers)), leeway: cfg.leeway, maxBytes: cfg.maxBytes}
	built := make([]*issuer, 0, len(issuers))
	for i, is := range issuers {
		field := fmt.Sprintf("Issuers[%d]", i)
		if err := checkIssuer(field, is); err != nil {
			return nil, err
		}
		if _, dup := v.byName[is.Issuer]; dup {
			return nil, cfgErr(field+".Issuer", "duplicate issuer")
		}
		it := &issuer{name: is.Issuer, audiences: append([]string(nil), is.Audiences...)}
		for _, a := range is.Algorithms {
			it.algs = append(it.algs, jose.SignatureAlgorithm(a))
		}
		v.byName[is.Issuer] = it
		built = append(built, it)
	}
	// Key sources last, so a configuration error never leaves goroutines behind.
	for i, is := range issuers {
		field := fmt.Sprintf("Issuers[%d]", i)
		src, err := v.newSource(field, is, &cfg)
		if err != nil {
			v.Close()
			return nil, err
		}
		built[i].src = src
	}
	if len(built) == 1 {
		v.single = built[0]
	}
	return v, nil
}

func checkIssuer(field string, is Issuer) error {
	if is.Issuer == "" {
		return cfgErr(field+".Issuer", "required")
	}
	if len(is.Audiences) == 0 {
		return cfgErr(field+".Audiences", "at least one audience is required")
	}
	for j, a := range is.Audiences {
		if a == "" {
			return cfgErr(fmt.Sprintf("%s.Audiences[%d]", field, j), "empty")
		}
	}
	if len(is.Algorithms) == 0 {
		return cfgErr(field+".Algorithms", "an explicit allow-list is required")
	}
	for j, a := range is.Algorithms {
		f := fmt.Sprintf("%s.Algorithms[%d]", field, j)
		if strings.EqualFold(a, "none") {
			return cfgErr(f, `"none" is never accepted`)
		}
		if !supportedAlgs[a] {
			return cfgErr(f, "unsupported algorithm "+strconvQuote(a))
		}
		if isHMAC(a) && is.JWKSURL != "" {
			return cfgErr(f, "HMAC algorithms cannot be used with a JWKS URL")
		}
	}
	n := 0
	for _, set := range []bool{is.JWKSURL != "", is.JWKSFile != "", len(is.Keys) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return cfgErr(field, "exactly one of JWKSURL, JWKSFile and Keys is required")
	}
	r := is.Refresh
	if r.Interval < 0 || r.MinInterval < 0 || r.MaxStaleness < 0 || r.Timeout < 0 || r.MaxBytes < 0 {
		return cfgErr(field+".Refresh", "durations and sizes must not be negative")
	}
	if is.JWKSURL != "" {
		u, err := url.Parse(is.JWKSURL)
		if err != nil || u.Host == "" {
			return cfgErr(field+".JWKSURL", "not an absolute URL")
		}
		switch {
		case u.Scheme == "https":
		case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		default:
			return cfgErr(field+".JWKSURL", "must be https (http only for loopback hosts)")
		}
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func strconvQuote(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func (r Refresh) withDefaults(fileSource bool) Refresh {
	if r.Interval == 0 {
		r.Interval = defaultURLInterval
		if fileSource {
			r.Interval = defaultFileInterval
		}
	}
	if r.MinInterval == 0 {
		r.MinInterval = min(defaultMinInterval, r.Interval)
	}
	if r.MaxStaleness == 0 {
		r.MaxStaleness = defaultMaxStaleness
	}
	if r.Timeout == 0 {
		r.Timeout = defaultFetchTimeout
	}
	if r.MaxBytes == 0 {
		r.MaxBytes = defaultJWKSMaxBytes
	}
	return r
}

func (v *Validator) newSource(field string, is Issuer, cfg *validatorConfig) (keySource, error) {
	switch {
	case is.JWKSURL != "":
		client := &http.Client{}
		if cfg.client != nil {
			*client = *cfg.client // a copy: the caller's keeps its redirect policy
		} else {
			if v.transport == nil {
				v.transport = http.DefaultTransport.(*http.Transport).Clone()
			}
			client.Transport = v.transport
		}
		client.CheckRedirect = sameOriginRedirects(client.CheckRedirect)
		r := newRemoteKeys(is.JWKSURL, client, is.Refresh.withDefaults(false), cfg.logger)
		v.remotes = append(v.remotes, r)
		return r, nil
	case is.JWKSFile != "":
		var onErr func(error)
		if l := cfg.logger; l != nil {
			onErr = func(err error) { l.Warn("auth: jwks file reload failed", "error", err) }
		}
		fs, err := newFileSet([]string{is.JWKSFile}, is.Refresh.withDefaults(true).Interval,
			func(data [][]byte) (*keySet, error) { return parseJWKS(data[0], true, time.Now()) }, onErr)
		if err != nil {
			return nil, cfgErr(field+".JWKSFile", err.Error())
		}
		return fileKeys{fs}, nil
	default:
		keys := make([]verKey, 0, len(is.Keys))
		for j, k := range is.Keys {
			f := fmt.Sprintf("%s.Keys[%d]", field, j)
			if k.Algorithm != "" && !supportedAlgs[k.Algorithm] {
				return nil, cfgErr(f+".Algorithm", "unsupported algorithm")
			}
			key, err := checkKey(k.Key, true)
			if err != nil {
				return nil, cfgErr(f+".Key", err.Error())
			}
			keys = append(keys, verKey{kid: k.ID, alg: k.Algorithm, key: key})
		}
		return staticKeys{newKeySet(keys, time.Now())}, nil
	}
}

type staticKeys struct{ set *keySet }

func (s staticKeys) keys(_ context.Context, kid, alg string) ([]verKey, error) {
	if ks := s.set.lookup(kid, alg); len(ks) > 0 {
		return ks, nil
	}
	return nil, ErrUnknownKey
}

type fileKeys struct{ fs *fileSet[*keySet] }

func (f fileKeys) keys(_ context.Context, kid, alg string) ([]verKey, error) {
	if ks := f.fs.get().lookup(kid, alg); len(ks) > 0 {
		return ks, nil
	}
	return nil, ErrUnknownKey
}

// Close stops the JWKS refresh goroutines and waits for them. It is idempotent and always
// returns nil. Validate keeps working after Close with the keys already held.
func (v *Validator) Close() error {
	v.closeOnce.Do(func() {
		for _, r := range v.remotes {
			r.close()
		}
		if v.transport != nil {
			v.transport.CloseIdleConnections()
		}
	})
	return nil
}

// Validate checks a compact-serialized JWT and returns its verified claims. Every failure
// matches ErrInvalidToken (and a more specific sentinel where one applies), except a done
// context, which returns ctx.Err(), and an empty token, which returns ErrMissingToken.
//
// The checks: size cap; shape (three base64url segments); the issuer named by "iss" is
// configured; the "alg" header is in that issuer's allow-list; a key of the issuer whose kid
// and algorithm family fit verifies the signature; "iss" matches; "aud" names an accepted
// audience; "exp" is present and not past; "nbf" and "iat" are not in the future (each with
// the leeway). Headers that point at keys (jku, x5u, jwk, x5c) are ignored.
func (v *Validator) Validate(ctx context.Context, token string) (*Claims, error) {
	return v.validate(ctx, token, time.Now())
}

func (v *Validator) validate(ctx context.Context, token string, now time.Time) (*Claims, error) {
	v.validations.Add(1)
	if token == "" {
		return nil, ErrMissingToken
	}
	if len(token) > v.maxBytes {
		return nil, tokenErr("size", ErrTokenTooLarge)
	}
	if !wellFormed(token) {
		return nil, tokenErr("malformed", nil)
	}
	it := v.single
	if it == nil {
		name, err := peekIssuer(token)
		if err != nil {
			return nil, tokenErr("malformed payload", nil)
		}
		if it = v.byName[name]; it == nil {
			return nil, tokenErr("unknown issuer", nil)
		}
	}
	jws, err := jose.ParseSignedCompact(token, it.algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, tokenErr("malformed or algorithm not allowed", nil)
	}
	if rawHdr, err := base64.RawURLEncoding.DecodeString(token[:strings.IndexByte(token, '.')]); err != nil || checkUniqueKeys(rawHdr) != nil {
		return nil, tokenErr("malformed header (duplicate or bad keys)", nil)
	}
	hdr := jws.Signatures[0].Protected
	alg := hdr.Algorithm
	if strings.EqualFold(alg, "none") || !algAllowed(it.algs, alg) { // go-jose checked this; belt and braces
		return nil, tokenErr("algorithm not allowed", nil)
	}
	keys, err := it.src.keys(ctx, hdr.KeyID, alg)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return nil, ctxErr
		}
		return nil, tokenErr("key", err)
	}
	var payload []byte
	for _, k := range keys {
		v.sigChecks.Add(1)
		if payload, err = jws.Verify(k.key); err == nil {
			break
		}
	}
	if err != nil {
		return nil, tokenErr("bad signature", nil)
	}
	if err := checkUniqueKeys(payload); err != nil {
		return nil, tokenErr("bad claims (duplicate or bad keys)", nil)
	}
	c, err := parseClaims(payload)
	if err != nil {
		return nil, tokenErr("bad claims", nil)
	}
	if err := v.checkClaims(it, c, now); err != nil {
		return nil, err
	}
	return c, nil
}

func algAllowed(algs []jose.SignatureAlgorithm, alg string) bool {
	for _, a := range algs {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// wellFormed reports whether token is three non-empty base64url segments (no padding).
func wellFormed(token string) bool {
	dots := 0
	prevDot := true
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.':
			if prevDot {
				return false
			}
			dots++
			prevDot = true
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		prevDot = false
	}
	return dots == 2 && !prevDot
}

// peekIssuer reads "iss" from the unverified payload, only to choose whose keys to try.
func peekIssuer(token string) (string, error) {
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	raw, err := base64.RawURLEncoding.DecodeString(token[first+1 : last])
	if err != nil {
		return "", err
	}
	var p struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", err
	}
	return p.Iss, nil
}

func (v *Validator) checkClaims(it *issuer, c *Claims, now time.Time) error {
	if c.Issuer != it.name {
		return tokenErr("wrong issuer", nil)
	}
	if !audienceOK(c.Audience, it.audiences) {
		return tokenErr("wrong audience", nil)
	}
	if c.Expiry.IsZero() {
		return tokenErr("missing exp", nil)
	}
	if !now.Before(c.Expiry.Add(v.leeway)) {
		return tokenErr("expired", ErrExpired)
	}
	if !c.NotBefore.IsZero() && now.Add(v.leeway).Before(c.NotBefore) {
		return tokenErr("nbf in the future", ErrNotYetValid)
	}
	if !c.IssuedAt.IsZero() && now.Add(v.leeway).Before(c.IssuedAt) {
		return tokenErr("iat in the future", ErrNotYetValid)
	}
	return nil
}

func audienceOK(got, want []string) bool {
	for _, g := range got {
		for _, w := range want {
			if g == w {
				return true
			}
		}
	}
	return false
}

// sameOriginRedirects returns a redirect policy that refuses a redirect to another scheme or
// host than the first request's, then asks next (or stops after 10 redirects).
func sameOriginRedirects(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		first := via[0].URL
		if !strings.EqualFold(req.URL.Scheme, first.Scheme) || !strings.EqualFold(req.URL.Host, first.Host) {
			return fmt.Errorf("auth: JWKS fetch redirected from %s://%s to another scheme or host: refused", first.Scheme, first.Host)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("auth: JWKS fetch stopped after 10 redirects")
		}
		return nil
	}
}
