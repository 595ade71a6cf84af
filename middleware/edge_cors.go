package middleware

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// CORSConfig is the policy of [WithCORS]: which browser origins may send cross-origin
// requests and read the answers, by the CORS protocol of the Fetch standard. It is a plain
// value users may load from JSON or YAML; AllowedOrigins is required, every other field's
// zero value is its default.
type CORSConfig struct {
	// AllowedOrigins lists the origins allowed, each in one of three forms:
	//   - an exact origin, "https://app.example.com" or "http://127.0.0.1:8080" (scheme,
	//     host and port as a browser serializes them: lower case, the scheme's default
	//     port left out, which is done for you when given);
	//   - a subdomain pattern, "https://*.example.com" (optionally with a port), which
	//     matches an origin of that scheme and port whose host is one or more DNS labels
	//     (letters, digits, '-') followed by ".example.com", and not example.com itself;
	//     the part after "*." must have at least two labels ("https://*.com" is refused);
	//   - "*", any origin, answered "Access-Control-Allow-Origin: *"; it cannot be combined
	//     with AllowCredentials.
	// "null" (the origin of sandboxed documents and file: URLs, shared by all of them) is
	// refused: only "*" admits it. Required; at most 256 entries.
	AllowedOrigins []string `json:"allowedOrigins" yaml:"allowedOrigins"`
	// AllowedMethods lists the methods a preflight may ask for, case-sensitive as Fetch
	// compares them (DELETE, GET, HEAD, OPTIONS, POST and PUT are upper-cased for you, as
	// browsers do); "*" allows any. GET, HEAD and POST, which browsers send without a
	// preflight, are always allowed. Default: only those three.
	AllowedMethods []string `json:"allowedMethods,omitempty" yaml:"allowedMethods,omitempty"`
	// AllowedHeaders lists the request headers a preflight may ask for (any case); "*"
	// allows any, the preflight answer repeating what was asked. Default: none beyond the
	// CORS-safelisted ones, which browsers do not ask about.
	AllowedHeaders []string `json:"allowedHeaders,omitempty" yaml:"allowedHeaders,omitempty"`
	// ExposedHeaders lists the response headers a page may read beyond the CORS-safelisted
	// ones (Access-Control-Expose-Headers); "*" exposes all, and cannot be combined with
	// AllowCredentials (browsers read it literally then). Default: none.
	ExposedHeaders []string `json:"exposedHeaders,omitempty" yaml:"exposedHeaders,omitempty"`
	// AllowCredentials lets pages send cookies and HTTP authentication cross-origin and read
	// the answers (Access-Control-Allow-Credentials: true). The origin is then always
	// reflected, and only a listed one (exact or by pattern). Default false.
	AllowCredentials bool `json:"allowCredentials,omitempty" yaml:"allowCredentials,omitempty"`
	// MaxAge is how long, in seconds, a browser may cache a preflight answer
	// (Access-Control-Max-Age); browsers cap it (Chromium at 7200). Default 0: the header
	// is not sent and browsers cache for 5 seconds. It must not be negative.
	MaxAge int `json:"maxAge,omitempty" yaml:"maxAge,omitempty"`
}

// Bounds of what a CORS policy and a request may ask for.
const (
	maxCORSOrigins        = 256
	maxOriginLen          = 512 // scheme, host of at most 253 bytes, port: a longer Origin is refused
	maxRequestHeaderNames = 64  // names in Access-Control-Request-Headers; more refuse the preflight
)

// Header names of the CORS protocol, canonical.
const (
	hdrOrigin         = "Origin"
	hdrVary           = "Vary"
	hdrReqMethod      = "Access-Control-Request-Method"
	hdrReqHeaders     = "Access-Control-Request-Headers"
	hdrAllowOrigin    = "Access-Control-Allow-Origin"
	hdrAllowCreds     = "Access-Control-Allow-Credentials"
	hdrAllowMethods   = "Access-Control-Allow-Methods"
	hdrAllowHeaders   = "Access-Control-Allow-Headers"
	hdrExposeHeaders  = "Access-Control-Expose-Headers"
	hdrMaxAge         = "Access-Control-Max-Age"
	preflightVaryList = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
)

// WithCORS makes NewHandler answer CORS preflights and mark the responses of allowed origins,
// by cfg (see [CORSConfig]) and the CORS protocol of the Fetch standard. It runs right after
// telemetry, before authentication (a browser sends a preflight without credentials) and the
// limits, so that refusals (401, 429, 413...) carry the CORS headers and a page can read them.
//
//   - A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here
//     and never reaches the handler: 204 No Content with Access-Control-Allow-Origin,
//     -Methods, -Headers (when headers were asked for), -Credentials and -Max-Age when the
//     origin, the method and every requested header are allowed; otherwise 403 Forbidden
//     without any CORS header (a browser fails the preflight on the missing
//     Access-Control-Allow-Origin whatever the status; the 403 makes the refusal plain to
//     anyone else).
//   - Any other request with an allowed Origin gets Access-Control-Allow-Origin (the origin
//     itself, or "*" under the "*" entry), -Credentials and -Expose-Headers as configured;
//     with a refused Origin it gets none of them and is still served: CORS lets a browser
//     withhold the answer from the page, it is not an access control on the server (a
//     cross-site form POST is sent whatever CORS says: protect state-changing requests with
//     authentication that a browser does not attach by itself, or with CSRF tokens).
//   - Every response gets "Vary: Origin" (a preflight answer varies on the request method
//     and headers too), so that caches keep one answer per origin.
//
// The handler must not set CORS headers itself (NewGateway removes the upstream's). Errors
// name the bad field of cfg.
//
// Taken by NewHandler.
func WithCORS(cfg CORSConfig) HandlerOption {
	return handlerOption(func(c *config) {
		p, err := compileCORS(cfg)
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.server.edge.cors = p
	})
}

// corsPolicy is a compiled CORSConfig. Immutable.
type corsPolicy struct {
	anyOrigin   bool
	exact       map[string]struct{}
	patterns    []originPattern
	methods     map[string]struct{} // beyond GET, HEAD and POST
	anyMethod   bool
	headers     map[string]struct{} // lower case
	anyHeader   bool
	methodsList []string // Access-Control-Allow-Methods, shared read-only
	headersList []string // Access-Control-Allow-Headers when not "*"
	exposeList  []string // Access-Control-Expose-Headers; nil when none
	credentials bool
	maxAge      []string // Access-Control-Max-Age; nil when not sent
}

// corsError names the bad field of a CORSConfig.
func corsError(field, format string, args ...any) error {
	return fmt.Errorf("middleware: WithCORS: %s: %s", field, fmt.Sprintf(format, args...))
}

func compileCORS(cfg CORSConfig) (*corsPolicy, error) {
	p := &corsPolicy{exact: map[string]struct{}{}, methods: map[string]struct{}{}, headers: map[string]struct{}{}, credentials: cfg.AllowCredentials}
	if err := p.compileOrigins(cfg); err != nil {
		return nil, err
	}
	if err := p.compileMethods(cfg.AllowedMethods); err != nil {
		return nil, err
	}
	for i, h := range cfg.AllowedHeaders {
		switch {
		case h == "*":
			p.anyHeader = true
		case !httpguts.ValidHeaderFieldName(h):
			return nil, corsError(fmt.Sprintf("allowedHeaders[%d]", i), "%q is not a header name", truncateString(h, 64))
		default:
			p.headers[strings.ToLower(h)] = struct{}{}
		}
	}
	if len(p.headers) > 0 && !p.anyHeader {
		p.headersList = []string{strings.Join(sortedSet(p.headers), ", ")}
	}
	var expose []string
	for i, h := range cfg.ExposedHeaders {
		switch {
		case h == "*" && cfg.AllowCredentials:
			return nil, corsError(fmt.Sprintf("exposedHeaders[%d]", i), `"*" is read literally by browsers when allowCredentials is set: list the headers`)
		case h != "*" && !httpguts.ValidHeaderFieldName(h):
			return nil, corsError(fmt.Sprintf("exposedHeaders[%d]", i), "%q is not a header name", truncateString(h, 64))
		}
		expose = append(expose, h)
	}
	if len(expose) > 0 {
		p.exposeList = []string{strings.Join(expose, ", ")}
	}
	switch {
	case cfg.MaxAge < 0:
		return nil, corsError("maxAge", "must not be negative, got %d", cfg.MaxAge)
	case cfg.MaxAge > 0:
		p.maxAge = []string{strconv.Itoa(cfg.MaxAge)}
	}
	return p, nil
}

func (p *corsPolicy) compileOrigins(cfg CORSConfig) error {
	switch {
	case len(cfg.AllowedOrigins) == 0:
		return corsError("allowedOrigins", `is required: list the origins allowed, or "*"`)
	case len(cfg.AllowedOrigins) > maxCORSOrigins:
		return corsError("allowedOrigins", "has %d entries, more than %d", len(cfg.AllowedOrigins), maxCORSOrigins)
	}
	for i, s := range cfg.AllowedOrigins {
		field := fmt.Sprintf("allowedOrigins[%d]", i)
		if s == "*" {
			if cfg.AllowCredentials {
				return corsError(field, `"*" cannot be combined with allowCredentials (any site could read credentialed answers): list the origins`)
			}
			p.anyOrigin = true
			continue
		}
		exact, pat, err := parseOriginPattern(s)
		if err != nil {
			return corsError(field, "%v", err)
		}
		if pat != nil {
			p.patterns = append(p.patterns, *pat)
		} else {
			p.exact[exact] = struct{}{}
		}
	}
	return nil
}

// normalMethods are the methods Fetch upper-cases (the others it compares as they are).
var normalMethods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"}

func (p *corsPolicy) compileMethods(ms []string) error {
	list := []string{"GET", "HEAD", "POST"}
	for i, m := range ms {
		if m == "*" {
			p.anyMethod = true
			continue
		}
		if !httpguts.ValidHeaderFieldName(m) {
			return corsError(fmt.Sprintf("allowedMethods[%d]", i), "%q is not a method", truncateString(m, 64))
		}
		for _, n := range normalMethods {
			if strings.EqualFold(m, n) {
				m = n
			}
		}
		if _, dup := p.methods[m]; dup || m == "GET" || m == "HEAD" || m == "POST" {
			continue
		}
		p.methods[m] = struct{}{}
		list = append(list, m)
	}
	p.methodsList = []string{strings.Join(list, ", ")}
	return nil
}

// originPattern is a compiled "scheme://*.suffix[:port]" entry.
type originPattern struct {
	prefix string // "https://"
	suffix string // ".example.com" or ".example.com:8443"
}

// match reports whether origin is prefix + one or more DNS labels + suffix.
func (p originPattern) match(origin string) bool {
	if len(origin) > maxOriginLen || len(origin) <= len(p.prefix)+len(p.suffix) ||
		!strings.HasPrefix(origin, p.prefix) || !strings.HasSuffix(origin, p.suffix) {
		return false
	}
	return validLabels(origin[len(p.prefix) : len(origin)-len(p.suffix)])
}

// validLabels reports whether s is one or more non-empty labels of lower-case letters,
// digits and '-', separated by dots.
func validLabels(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	prevDot := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if prevDot {
				return false
			}
			prevDot = true
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
		prevDot = false
	}
	return true
}

// parseOriginPattern parses an AllowedOrigins entry other than "*": an exact origin, returned
// serialized as a browser would send it, or a subdomain pattern.
func parseOriginPattern(s string) (exact string, pat *originPattern, err error) {
	if len(s) > maxOriginLen {
		return "", nil, fmt.Errorf("is longer than %d bytes", maxOriginLen)
	}
	if s == "null" {
		return "", nil, errors.New(`"null" is the origin of every sandboxed document and file: URL; only "*" admits it`)
	}
	scheme, rest, ok := strings.Cut(strings.ToLower(s), "://")
	if !ok || !validScheme(scheme) {
		return "", nil, fmt.Errorf("%q is not an origin: want scheme://host[:port]", truncateString(s, 64))
	}
	host, port, err := splitOriginHost(rest)
	if err != nil {
		return "", nil, fmt.Errorf("%q: %v", truncateString(s, 64), err)
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = "" // browsers leave the default port out of the origin
	}
	if port != "" {
		port = ":" + port
	}
	if suffix, ok := strings.CutPrefix(host, "*."); ok {
		if !validLabels(suffix) || !strings.Contains(suffix, ".") {
			return "", nil, fmt.Errorf("%q: a pattern is *. followed by a domain of at least two labels", truncateString(s, 64))
		}
		return "", &originPattern{prefix: scheme + "://", suffix: "." + suffix + port}, nil
	}
	if strings.Contains(host, "*") {
		return "", nil, fmt.Errorf(`%q: "*" may only be the whole first label of the host`, truncateString(s, 64))
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil && !validLabels(host) {
		return "", nil, fmt.Errorf("%q: bad host", truncateString(s, 64))
	}
	return scheme + "://" + host + port, nil, nil
}

// splitOriginHost splits "host[:port]" (host possibly a bracketed IPv6 address) and refuses a
// path, query, fragment or user information.
func splitOriginHost(s string) (host, port string, err error) {
	if strings.ContainsAny(s, "/?#@ \\") || s == "" {
		return "", "", errors.New("an origin has only a scheme, a host and a port")
	}
	host = s
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		host, port = s[:i], s[i+1:]
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return "", "", fmt.Errorf("bad port %q", truncateString(port, 16))
		}
	}
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") || host == "" {
		return "", "", errors.New("bad host")
	}
	return host, port, nil
}

func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin, or "" when the origin
// is not allowed.
func (p *corsPolicy) allowOrigin(origin string) string {
	if p.anyOrigin {
		return "*" // AllowCredentials is false: compileOrigins refuses "*" with it
	}
	if len(origin) > maxOriginLen {
		return ""
	}
	if _, ok := p.exact[origin]; ok {
		return origin
	}
	for _, pt := range p.patterns {
		if pt.match(origin) {
			return origin
		}
	}
	return ""
}

func buildCORS(c *config, next http.Handler) http.Handler {
	if c.server.edge.cors == nil {
		return nil
	}
	return &corsHandler{next: next, p: c.server.edge.cors}
}

// corsHandler carries out a corsPolicy.
type corsHandler struct {
	next http.Handler // immutable
	p    *corsPolicy  // immutable
}

var starValue = []string{"*"}

func (h *corsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	origins := r.Header[hdrOrigin]
	if r.Method == http.MethodOptions && len(origins) > 0 && len(r.Header[hdrReqMethod]) > 0 {
		h.preflight(w, r, origins)
		return
	}
	hd[hdrVary] = append(hd[hdrVary], hdrOrigin)
	if len(origins) == 1 {
		if allow := h.p.allowOrigin(origins[0]); allow != "" {
			h.setAllowOrigin(hd, allow)
			if h.p.exposeList != nil {
				hd[hdrExposeHeaders] = h.p.exposeList
			}
		}
	}
	h.next.ServeHTTP(w, r)
}

func (h *corsHandler) setAllowOrigin(hd http.Header, allow string) {
	if allow == "*" {
		hd[hdrAllowOrigin] = starValue
	} else {
		hd[hdrAllowOrigin] = []string{allow}
	}
	if h.p.credentials {
		hd[hdrAllowCreds] = []string{"true"}
	}
}

// preflight answers a CORS preflight: 204 with the CORS headers when everything asked for is
// allowed, 403 without them otherwise.
func (h *corsHandler) preflight(w http.ResponseWriter, r *http.Request, origins []string) {
	hd := w.Header()
	hd[hdrVary] = append(hd[hdrVary], preflightVaryList)
	allow := ""
	if len(origins) == 1 {
		allow = h.p.allowOrigin(origins[0])
	}
	methods := r.Header[hdrReqMethod]
	asked, headersOK := h.requestedHeaders(r.Header[hdrReqHeaders])
	if allow == "" || len(methods) != 1 || !h.methodAllowed(methods[0]) || !headersOK {
		http.Error(w, "CORS preflight refused", http.StatusForbidden)
		return
	}
	h.setAllowOrigin(hd, allow)
	if h.p.anyMethod {
		hd[hdrAllowMethods] = []string{methods[0]}
	} else {
		hd[hdrAllowMethods] = h.p.methodsList
	}
	if asked != "" {
		if h.p.anyHeader {
			hd[hdrAllowHeaders] = []string{asked}
		} else {
			hd[hdrAllowHeaders] = h.p.headersList
		}
	}
	if h.p.maxAge != nil {
		hd[hdrMaxAge] = h.p.maxAge
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *corsHandler) methodAllowed(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost:
		return true
	}
	if !httpguts.ValidHeaderFieldName(m) {
		return false
	}
	if h.p.anyMethod {
		return true
	}
	_, ok := h.p.methods[m]
	return ok
}

// requestedHeaders checks the Access-Control-Request-Headers lines: ok when every name is a
// header name the policy allows (at most maxRequestHeaderNames of them). asked is the names,
// lower-cased and comma-separated, "" when none were asked for.
func (h *corsHandler) requestedHeaders(lines []string) (asked string, ok bool) {
	var names []string
	for _, line := range lines {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if len(names) == maxRequestHeaderNames || !httpguts.ValidHeaderFieldName(name) {
				return "", false
			}
			if !h.p.anyHeader {
				if _, allowed := h.p.headers[name]; !allowed {
					return "", false
				}
			}
			names = append(names, name)
		}
	}
	return strings.Join(names, ", "), true
}

// truncateString cuts s to n bytes for an error message.
func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// sortedSet returns the keys of m, sorted.
func sortedSet(m map[string]struct{}) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
