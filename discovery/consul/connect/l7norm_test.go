package connect_test

import (
	"net/http"
	"path"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cleaningRouter serves like a router that cleans paths without redirecting: "admin" for
// every request whose cleaned path is under /admin, "public" for the others.
var cleaningRouter = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p := path.Clean("/" + r.URL.Path)
	if p == "/admin" || len(p) > len("/admin/") && p[:len("/admin/")] == "/admin/" {
		_, _ = w.Write([]byte("admin"))
		return
	}
	_, _ = w.Write([]byte("public"))
})

// Against "deny prefix /admin", the forms of a path that a cleaning router serves as /admin
// are denied too: L7 permissions see the path with its slashes merged and its dot segments
// resolved; a path with an encoded slash or backslash (or a backslash) is refused 400 while a
// permission looks at the path, and passes where none does.
func TestL7PathsNormalized(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	cleanEntries(t, c, [2]string{api.ServiceDefaults, "normapi"}, [2]string{api.ServiceIntentions, "normapi"})
	srv := newMesh(t, a, "normapi")
	web, other := newMesh(t, a, "normweb"), newMesh(t, a, "normother")
	serveMesh(t, srv, cleaningRouter)
	_, _, err := c.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "normapi", Protocol: "http"}, nil)
	require.NoError(t, err)
	idx := setIntentions(t, c, "normapi",
		&api.SourceIntention{Name: "normweb", Permissions: []*api.IntentionPermission{
			httpPerm(api.IntentionActionDeny, &api.IntentionHTTPPermission{PathPrefix: "/admin"}),
			httpPerm(api.IntentionActionAllow, &api.IntentionHTTPPermission{PathPrefix: "/"}),
		}},
		&api.SourceIntention{Name: "normother", Permissions: []*api.IntentionPermission{
			httpPerm(api.IntentionActionAllow, &api.IntentionHTTPPermission{Methods: []string{"GET"}}),
		}})
	waitIntentions(t, idx, srv)
	wc, oc := meshClient(t, web), meshClient(t, other)
	eventually(t, 10*time.Second, "the server is a mesh endpoint", func() error {
		_, _, err := get(wc, "http://normapi/public")
		return err
	})
	cases := []struct {
		path string
		code int
		body string
	}{
		{"/public", 200, "public"},
		{"/admin", 403, ""},
		{"//admin", 403, ""},
		{"/./admin", 403, ""},
		{"/x/../admin", 403, ""},
		{"/x/%2e%2e/admin", 403, ""},
		{"/public/..//admin/users", 403, ""},
		{"/../../admin", 403, ""},
		{"/admin%2Fx", 400, ""},
		{"/x%2f..%2fadmin", 400, ""},
		{"/x%5C..%5Cadmin", 400, ""},
		{"/x\\..\\admin", 400, ""},
		{"/public/a/../b", 200, "public"},
		{"/administrator/../public", 200, "public"},
	}
	for _, tc := range cases {
		code, body, err := get(wc, "http://normapi"+tc.path)
		require.NoError(t, err, tc.path)
		assert.Equal(t, tc.code, code, tc.path)
		if tc.body != "" {
			assert.Equal(t, tc.body, body, tc.path)
		}
	}
	// No permission of normother's intention looks at the path: an encoded slash passes.
	code, body, err := get(oc, "http://normapi/admin%2Fx")
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	assert.Equal(t, "admin", body)
}
