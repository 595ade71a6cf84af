package connect

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A caller's namespace counts, as in Consul's RBAC (the principal is matched against
// spiffe://<td>/ns/default/dc/.../svc/web): a service "web" of another namespace, whose
// certificate the same CA signed, is not the default namespace's "web" of an intention;
// only a source of namespace "*" matches it.
func TestAuthorizeCallerOfAnotherNamespace(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "ca")
	roots, err := parseRoots("td.consul", []string{"a"}, []string{ca.pem})
	require.NoError(t, err)
	denials, err := newDenialCounter(nil)
	require.NoError(t, err)
	m := &Mesh{denials: denials}
	m.roots.Store(roots)
	m.rules.Store(mustCompile(t, false, entry("api", src("web", allowA))))

	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	call := func(ns string) int {
		id := Identity{TrustDomain: "td.consul", Namespace: ns, Datacenter: "dc1", Service: "web"}
		leaf, _, _ := ca.leaf(t, id, now.Add(-time.Minute), now.Add(time.Hour))
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
		w := httptest.NewRecorder()
		m.Handler(ok).ServeHTTP(w, r)
		return w.Code
	}
	assert.Equal(t, http.StatusOK, call("default"), "default/web is the intention's source")
	assert.Equal(t, http.StatusForbidden, call("team-b"), "team-b/web is not default/web")

	anyNS := &api.SourceIntention{Name: "*", Namespace: "*", Action: allowA}
	m.rules.Store(mustCompile(t, false, entry("api", src("web", denyA), anyNS)))
	assert.Equal(t, http.StatusForbidden, call("default"), "default/web: its own deny takes precedence")
	assert.Equal(t, http.StatusOK, call("team-b"), "*/* matches every namespace")
}

func mustCompile(t *testing.T, defaultAllow bool, es ...api.ConfigEntry) *ruleSet {
	t.Helper()
	rs, err := compileEntries(es, "api", defaultAllow)
	require.NoError(t, err)
	return rs
}

// A regex must match the whole value, as Envoy's safe_regex does: an expression that is not
// valid RE2 on its own (an unbalanced ")|(") is refused, not spliced into the anchors, where
// it would make the anchored expression match any value that contains a part of it.
func TestRegexCannotEscapeItsAnchors(t *testing.T) {
	for _, s := range []string{"/public)|(?:.*", ".*)|(x", "a)(b"} {
		_, err := compileRegex(s)
		assert.Error(t, err, "%q", s)
	}
	_, err := compileEntries([]api.ConfigEntry{entry("api", src("web", "",
		pm(denyA, &api.IntentionHTTPPermission{PathRegex: "/admin)|(?:/public"})))}, "api", true)
	require.ErrorContains(t, err, "PathRegex")
	re, err := compileRegex("/a|/b")
	require.NoError(t, err)
	assert.True(t, re.MatchString("/b"))
	assert.False(t, re.MatchString("/bx"))
}

// An absent header matches an inverted matcher only when it is an inverted Present, as in
// Envoy (HeaderUtility::matchHeaders), which Consul's proxies enforce intentions with: "allow
// unless X-Tenant is blocked" does not admit a request that leaves X-Tenant out.
func TestAbsentHeaderMatchesOnlyInvertedPresent(t *testing.T) {
	allowUnless := func(h api.IntentionHTTPHeaderPermission) *ruleSet {
		return mustCompile(t, false, entry("api", src("web", "",
			pm(allowA, &api.IntentionHTTPPermission{Header: []api.IntentionHTTPHeaderPermission{h}}))))
	}
	without := func() *Request { return &Request{Method: "GET", Path: "/", Header: http.Header{}} }
	for _, h := range []api.IntentionHTTPHeaderPermission{
		{Name: "x-tenant", Exact: "blocked", Invert: true},
		{Name: "x-tenant", Prefix: "block", Invert: true},
		{Name: "x-tenant", Suffix: "ed", Invert: true},
		{Name: "x-tenant", Contains: "lock", Invert: true},
		{Name: "x-tenant", Regex: "b.*", Invert: true},
	} {
		assert.False(t, allowUnless(h).decide("web", without).Allowed, "%+v", h)
		other := func() *Request {
			return &Request{Method: "GET", Path: "/", Header: http.Header{"X-Tenant": {"acme"}}}
		}
		assert.True(t, allowUnless(h).decide("web", other).Allowed, "%+v", h)
	}
	notPresent := allowUnless(api.IntentionHTTPHeaderPermission{Name: "x-tenant", Present: true, Invert: true})
	assert.True(t, notPresent.decide("web", without).Allowed)
}

// A header permission on ":path" sees the query, as Envoy's :path header has it (path
// permissions do not): "deny when :path contains debug=" refuses /x?debug=1.
func TestPathHeaderPermissionSeesTheQuery(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "ca")
	roots, err := parseRoots("td.consul", []string{"a"}, []string{ca.pem})
	require.NoError(t, err)
	denials, err := newDenialCounter(nil)
	require.NoError(t, err)
	m := &Mesh{denials: denials}
	m.roots.Store(roots)
	m.rules.Store(mustCompile(t, false, entry("api", src("web", "",
		pm(denyA, &api.IntentionHTTPPermission{Header: []api.IntentionHTTPHeaderPermission{{Name: ":path", Contains: "debug="}}}),
		pm(allowA, &api.IntentionHTTPPermission{PathPrefix: "/"})))))
	web := Identity{TrustDomain: "td.consul", Namespace: "default", Datacenter: "dc1", Service: "web"}
	leaf, _, _ := ca.leaf(t, web, now.Add(-time.Minute), now.Add(time.Hour))
	call := func(target string) int {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
		w := httptest.NewRecorder()
		m.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
		return w.Code
	}
	assert.Equal(t, http.StatusOK, call("/x"))
	assert.Equal(t, http.StatusForbidden, call("/x?debug=1"))
	assert.Equal(t, http.StatusForbidden, call("/x?a=b&debug=1"))
}
