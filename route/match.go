package route

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// Request is what a route table matches: the parts of an HTTP request or gRPC call that
// rules look at, plus what the caller knows about who sent it. It holds references only; build
// one per request on the stack with [FromHTTP] or by hand (gRPC), and fill Key, Identity and
// RemoteAddr as the caller knows them.
type Request struct {
	// Host is the request's host, with or without a port.
	Host string
	// Method is the HTTP method ("POST" for gRPC).
	Method string
	// Path is the URL path (for gRPC, the full method name).
	Path string
	// RawQuery is the URL's encoded query, without '?'.
	RawQuery string
	// Header holds HTTP headers under canonical keys (as net/http keeps them).
	Header http.Header
	// Metadata holds gRPC metadata under lower-case keys; it is read when Header is nil.
	Metadata map[string][]string
	// GRPCMethod is the gRPC full method name "/package.Service/Method". Default: Path.
	GRPCMethod string

	// Key is a caller-supplied stickiness key, for example the authenticated JWT subject;
	// see [Sticky].Key.
	Key string
	// RemoteAddr is the caller's "ip:port", for trust predicates such as [TrustPrefixes].
	RemoteAddr string
	// Identity is the caller's authenticated identity (mTLS peer, JWT subject), for trust
	// predicates such as [TrustIdentities].
	Identity string
}

// FromHTTP returns the Request for r: host, method, path, query, headers and remote address.
// It does not allocate. Key and Identity are left for the caller.
func FromHTTP(r *http.Request) Request {
	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}
	req := Request{Host: host, Method: r.Method, Header: r.Header, RemoteAddr: r.RemoteAddr}
	if r.URL != nil {
		req.Path = r.URL.Path
		req.RawQuery = r.URL.RawQuery
	}
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	return req
}

// headerValues returns the values of a header, from Header under its canonical key or from
// Metadata under its lower-case key.
func (r *Request) headerValues(canon, lower string) []string {
	if r.Header != nil {
		return r.Header[canon]
	}
	return r.Metadata[lower]
}

// cookie returns the value of the named cookie and whether it is there, scanning the Cookie
// headers without allocating.
func (r *Request) cookie(name string) (string, bool) {
	for _, line := range r.headerValues("Cookie", "cookie") {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// hostOnly strips the port (and IPv6 brackets) from a host.
func hostOnly(h string) string {
	if h == "" {
		return h
	}
	if h[0] == '[' {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h[:i], ':') < 0 {
		return h[:i]
	}
	return h
}

type strKind uint8

const (
	kindExact strKind = iota
	kindPrefix
	kindRegex
	kindPresent
	kindAbsent
)

// strMatcher is a compiled StringMatch (or the value part of a header or query match).
type strMatcher struct {
	kind strKind
	s    string
	re   *regexp.Regexp
}

func (m *strMatcher) match(v string) bool {
	switch m.kind {
	case kindExact:
		return v == m.s
	case kindPrefix:
		return strings.HasPrefix(v, m.s)
	case kindRegex:
		return m.re.MatchString(v)
	default: // present
		return true
	}
}

// valueMatcher is a compiled header or query condition.
type valueMatcher struct {
	canon, lower string // header keys; for query, both are the parameter name
	strMatcher
}

// matchValues applies the condition to the values present under the name.
func (m *valueMatcher) matchValues(vals []string) bool {
	if m.kind == kindAbsent {
		return len(vals) == 0
	}
	for _, v := range vals {
		if m.match(v) {
			return true
		}
	}
	return false
}

func (m *valueMatcher) matchHeader(r *Request) bool {
	return m.matchValues(r.headerValues(m.canon, m.lower))
}

// matchQuery scans the raw query for the parameter without building url.Values.
func (m *valueMatcher) matchQuery(raw string) bool {
	found := false
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if needsUnescape(k) {
			uk, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			k = uk
		}
		if k != m.canon {
			continue
		}
		found = true
		switch m.kind {
		case kindAbsent:
			return false
		case kindPresent:
			return true
		}
		if needsUnescape(v) {
			uv, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			v = uv
		}
		if m.match(v) {
			return true
		}
	}
	return m.kind == kindAbsent && !found
}

func needsUnescape(s string) bool { return strings.ContainsAny(s, "%+") }

// matcher is a compiled Match.
type matcher struct {
	exactHosts  []string            // lower case
	hostSet     map[string]struct{} // exactHosts as a set, when there are many
	suffixHosts []string            // ".example.com" for "*.example.com", lower case
	path        *strMatcher
	methods     []string
	headers     []valueMatcher
	query       []valueMatcher
	grpc        *strMatcher // exact or prefix on the full method name
}

// callerControlled reports whether the match reads input the caller chooses freely: headers
// (metadata, cookies), query parameters or the host.
func (m *matcher) callerControlled() bool {
	return len(m.headers) > 0 || len(m.query) > 0 || m.hasHostCondition()
}

func (m *matcher) hasHostCondition() bool {
	return len(m.exactHosts) > 0 || len(m.suffixHosts) > 0
}

func (m *matcher) matchHost(host string) bool {
	if !m.hasHostCondition() {
		return true
	}
	if m.hostSet != nil {
		if _, ok := m.hostSet[host]; ok {
			return true
		}
		if hasUpper(host) && len(host) <= 128 {
			var buf [128]byte
			n := copy(buf[:], host)
			for i := range n {
				if c := buf[i]; 'A' <= c && c <= 'Z' {
					buf[i] = c + 'a' - 'A'
				}
			}
			if _, ok := m.hostSet[string(buf[:n])]; ok {
				return true
			}
		} else if hasUpper(host) {
			if _, ok := m.hostSet[strings.ToLower(host)]; ok {
				return true
			}
		}
	} else {
		for _, h := range m.exactHosts {
			if strings.EqualFold(h, host) {
				return true
			}
		}
	}
	for _, s := range m.suffixHosts {
		if len(host) > len(s) && strings.EqualFold(host[len(host)-len(s):], s) {
			return true
		}
	}
	return false
}

// match reports whether r satisfies every condition; host is r.Host without its port.
func (m *matcher) match(r *Request, host string) bool {
	if len(m.methods) > 0 {
		ok := false
		for _, meth := range m.methods {
			if meth == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if m.path != nil && !m.path.match(r.Path) {
		return false
	}
	if m.grpc != nil {
		full := r.GRPCMethod
		if full == "" {
			full = r.Path
		}
		if !m.grpc.match(full) {
			return false
		}
	}
	if !m.matchHost(host) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].matchHeader(r) {
			return false
		}
	}
	for i := range m.query {
		if !m.query[i].matchQuery(r.RawQuery) {
			return false
		}
	}
	return true
}

// HeaderMatcher is a compiled [HeaderMatch], for callers that want one condition on its own.
// It is immutable and safe for concurrent use.
type HeaderMatcher struct{ m valueMatcher }

// NewHeaderMatcher validates and compiles hm.
func NewHeaderMatcher(hm HeaderMatch) (*HeaderMatcher, error) {
	c := newCompiler(Limits{}, nil)
	vm, ok := c.valueMatcher(hm, "header", true)
	if !ok {
		return nil, c.err
	}
	return &HeaderMatcher{m: vm}, nil
}

// Match reports whether the header h satisfies the condition.
func (m *HeaderMatcher) Match(h http.Header) bool {
	return m.m.matchValues(h[m.m.canon])
}
