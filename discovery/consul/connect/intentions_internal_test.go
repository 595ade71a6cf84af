package connect

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrecedenceIsConsuls(t *testing.T) {
	// agent/structs.Intention.UpdatePrecedence, in the default namespace.
	cases := []struct {
		dest, srcNS, src string
		want             int
	}{
		{"api", "", "web", 9},
		{"api", "default", "web", 9},
		{"api", "", "*", 8},
		{"api", "*", "*", 7},
		{"*", "", "web", 6},
		{"*", "", "*", 5},
		{"*", "*", "*", 4},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, precedence(c.dest, c.srcNS, c.src), "%s/%s => %s", c.srcNS, c.src, c.dest)
	}
}

func entry(name string, srcs ...*api.SourceIntention) api.ConfigEntry {
	return &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: name, Sources: srcs}
}

func src(name string, action api.IntentionAction, perms ...*api.IntentionPermission) *api.SourceIntention {
	return &api.SourceIntention{Name: name, Action: action, Permissions: perms}
}

func pm(action api.IntentionAction, h *api.IntentionHTTPPermission) *api.IntentionPermission {
	return &api.IntentionPermission{Action: action, HTTP: h}
}

const (
	allowA = api.IntentionActionAllow
	denyA  = api.IntentionActionDeny
)

func TestDecideL4Precedence(t *testing.T) {
	entries := []api.ConfigEntry{
		entry("*", src("web", denyA), src("ops", allowA), src("*", allowA)),
		entry("api", src("*", denyA), src("web", allowA)),
		entry("other", src("ops", denyA)), // another destination: ignored
		&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "api", Namespace: "team", Sources: []*api.SourceIntention{src("x", allowA)}},
		entry("api", &api.SourceIntention{Name: "peered", Peer: "east", Action: allowA}),
	}
	for _, def := range []bool{true, false} {
		rs, err := compileEntries(entries, "api", def)
		require.NoError(t, err)
		for source, want := range map[string]bool{
			"web":    true,  // exact => exact allow beats * => api deny and web => * deny
			"ops":    false, // * => api deny (8) beats ops => * allow (6)
			"batch":  false, // * => api deny
			"peered": false, // a peer's source never matches a local caller: * => api
		} {
			d := rs.decide(source, nil)
			assert.Equal(t, want, d.Allowed, "default %v: %s: %s", def, source, d.Reason)
			assert.Equal(t, want, rs.allowL4(source))
		}
	}
	rs, err := compileEntries(entries[2:3], "api", false)
	require.NoError(t, err)
	assert.Equal(t, Decision{Allowed: false, Reason: "default"}, rs.decide("ops", nil))
	rs, err = compileEntries(nil, "api", true)
	require.NoError(t, err)
	assert.True(t, rs.decide("ops", nil).Allowed)
}

func TestDecideL7(t *testing.T) {
	entries := []api.ConfigEntry{entry("api",
		src("web", "",
			pm(denyA, &api.IntentionHTTPPermission{PathPrefix: "/admin"}),
			pm(allowA, &api.IntentionHTTPPermission{PathExact: "/read", Methods: []string{"GET", "HEAD"}}),
			pm(allowA, &api.IntentionHTTPPermission{PathRegex: "/v[12]/.*"}),
			pm(allowA, &api.IntentionHTTPPermission{Header: []api.IntentionHTTPHeaderPermission{
				{Name: "x-env", Prefix: "prod", Invert: true},
				{Name: "X-Team", Exact: "CORE", IgnoreCase: true},
			}}),
			pm(allowA, &api.IntentionHTTPPermission{Header: []api.IntentionHTTPHeaderPermission{{Name: "x-debug", Present: true, Invert: true}, {Name: ":authority", Suffix: ".internal"}}}),
		),
		src("*", denyA),
	)}
	req := func(method, path string, kv ...string) *Request {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return &Request{Method: method, Path: path, Header: h, Host: "api"}
	}
	cases := []struct {
		q    *Request
		want bool
	}{
		{req("GET", "/read"), true},
		{req("HEAD", "/read"), true},
		{req("POST", "/read"), false}, // no permission matches: the default (deny)
		{req("GET", "/admin"), false},
		{req("GET", "/admin", "X-Team", "core"), false}, // the first match is terminal
		{req("GET", "/v1/x"), true},
		{req("GET", "/v3/x"), false},
		{req("GET", "/prefix/v1/x"), false},         // the regex matches the whole path
		{req("GET", "/x", "X-Team", "Core"), false}, // no X-Env: an inverted Prefix does not match an absent header
		{req("GET", "/x", "X-Team", "Core", "X-Env", "dev"), true},
		{req("GET", "/x", "X-Team", "Core", "X-Env", "production"), false},
		{req("GET", "/x", "X-Team", "core", "X-Env", "staging"), true},
		{req("GET", "/x", "X-Team", "other"), false},
		{&Request{Method: "GET", Path: "/x", Host: "a.internal", Header: http.Header{}}, true},
		{&Request{Method: "GET", Path: "/x", Host: "a.internal", Header: http.Header{"X-Debug": {"1"}}}, false},
	}
	rs, err := compileEntries(entries, "api", false)
	require.NoError(t, err)
	for _, c := range cases {
		d := rs.decide("web", func() *Request { return c.q })
		assert.Equal(t, c.want, d.Allowed, "%s %s %v %s: %s", c.q.Method, c.q.Path, c.q.Header, c.q.Host, d.Reason)
		assert.True(t, d.L7)
	}
	assert.False(t, rs.allowL4("web"), "an L7 intention is a deny for Consul's check")
	// Under a default allow, a request no permission matches is allowed.
	rs, err = compileEntries(entries, "api", true)
	require.NoError(t, err)
	assert.True(t, rs.decide("web", func() *Request { return req("POST", "/read") }).Allowed)
	assert.False(t, rs.decide("web", func() *Request { return req("GET", "/admin/x") }).Allowed)
	// An L4 intention never asks for the request.
	assert.False(t, rs.decide("batch", nil).Allowed)
}

func TestCompileRefusesMalformedEntries(t *testing.T) {
	cases := map[string]struct {
		e    api.ConfigEntry
		want string
	}{
		"bad action":        {entry("api", src("web", "maybe")), `Sources[0]: Action "maybe"`},
		"no name":           {entry("api", src("", allowA)), "Sources[0]: Name is empty"},
		"action and perms":  {entry("api", src("web", allowA, pm(allowA, nil))), "exclusive"},
		"bad regex":         {entry("api", src("web", "", pm(allowA, &api.IntentionHTTPPermission{PathRegex: "("}))), "Permissions[0]: HTTP.PathRegex"},
		"two paths":         {entry("api", src("web", "", pm(allowA, &api.IntentionHTTPPermission{PathExact: "/a", PathPrefix: "/b"}))), "at most one"},
		"header no matcher": {entry("api", src("web", "", pm(allowA, &api.IntentionHTTPPermission{Header: []api.IntentionHTTPHeaderPermission{{Name: "x"}}}))), "HTTP.Header[0]"},
		"header two":        {entry("api", src("web", "", pm(allowA, &api.IntentionHTTPPermission{Header: []api.IntentionHTTPHeaderPermission{{Name: "x", Exact: "a", Prefix: "b"}}}))), "exactly one"},
		"perm action":       {entry("api", src("web", "", pm("", nil))), "Permissions[0]: Action"},
		"jwt":               {&api.ServiceIntentionsConfigEntry{Name: "api", JWT: &api.IntentionJWTRequirement{}}, "JWT"},
		"not intentions":    {&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "api"}, "not a service-intentions entry"},
		"huge regex":        {entry("*", src("web", "", pm(allowA, &api.IntentionHTTPPermission{PathRegex: string(make([]byte, 2000))}))), "longer than"},
		"empty method":      {entry("api", src("web", "", pm(allowA, &api.IntentionHTTPPermission{Methods: []string{""}}))), "HTTP.Methods[0]"},
		"nil source":        {entry("api", nil), "Sources[0]"},
		"header regex":      {entry("api", src("web", "", pm(allowA, &api.IntentionHTTPPermission{Header: []api.IntentionHTTPHeaderPermission{{Name: "x", Regex: "["}}}))), "Regex"},
	}
	for name, c := range cases {
		_, err := compileEntries([]api.ConfigEntry{c.e}, "api", true)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
			assert.Contains(t, err.Error(), "connect: intentions", name)
		}
	}
	// An entry for another destination is not compiled, malformed or not.
	_, err := compileEntries([]api.ConfigEntry{entry("billing", src("web", "maybe"))}, "api", true)
	assert.NoError(t, err)
}

// FuzzCompileEntries feeds service-intentions entries, as the agent's JSON, to the compiler
// and the decision: neither may panic, and a compiled set decides every request.
func FuzzCompileEntries(f *testing.F) {
	f.Add(`[{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"web","Action":"allow"},{"Name":"*","Action":"deny"}]}]`, "web", "/x", "GET")
	f.Add(`[{"Kind":"service-intentions","Name":"*","Sources":[{"Name":"web","Permissions":[{"Action":"allow","HTTP":{"PathRegex":"/v[0-9]+/.*","Methods":["GET"],"Header":[{"Name":"x-a","Suffix":"z","Invert":true}]}}]}]}]`, "web", "/v1/a", "GET")
	f.Add(`[{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"web","Permissions":[{"Action":"deny","HTTP":{"PathPrefix":"/a"}},{"Action":"allow"}]}]}]`, "web", "/a", "POST")
	f.Fuzz(func(t *testing.T, doc, source, path, method string) {
		var raw []*api.ServiceIntentionsConfigEntry
		if json.Unmarshal([]byte(doc), &raw) != nil {
			return
		}
		entries := make([]api.ConfigEntry, len(raw))
		for i, e := range raw {
			entries[i] = e
		}
		rs, err := compileEntries(entries, "api", false)
		if err != nil {
			return
		}
		q := &Request{Method: method, Path: path, Header: http.Header{"X-A": {path}}}
		d := rs.decide(source, func() *Request { return q })
		if !d.L7 && d.Allowed != rs.allowL4(source) {
			t.Fatalf("an L4 decision differs from allowL4: %+v", d)
		}
	})
}
