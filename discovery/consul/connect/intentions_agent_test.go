package connect_test

import (
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/internal/consultest"
)

// The Mesh's L4 decisions equal the agent's /v1/connect/intentions/check for every source
// tried, through exact and wildcard sources and destinations, L7 intentions (a deny there),
// the default policy, and entries changing and disappearing. Its own agent: it writes
// intentions for the destination "*".
func TestL4DecisionsMatchTheAgent(t *testing.T) {
	a := consultest.ForTest(t)
	c := apiClient(t, a)
	papi := newMesh(t, a, "papi")
	qapi := newMesh(t, a, "qapi")
	sources := []string{"web", "ops", "batch", "l7c", "other", "papi", "qapi"}
	compare := func(stage string) {
		t.Helper()
		for _, m := range []*connect.Mesh{papi, qapi} {
			for _, src := range sources {
				want := agentCheck(t, c, src, m.Service())
				assert.Equal(t, want, m.AllowedL4(src), "%s: %s => %s", stage, src, m.Service())
			}
		}
	}
	compare("no intentions: the agent's default (allow: ACLs off)")

	l7 := &api.SourceIntention{Name: "l7c", Permissions: []*api.IntentionPermission{
		{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/"}},
	}}
	// L7 intentions need the destination's protocol to be http.
	_, _, err := c.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "papi", Protocol: "http"}, nil)
	require.NoError(t, err)
	setIntentions(t, c, "papi", allow("web"), deny("*"), l7)
	idx := setIntentions(t, c, "*", deny("ops"), allow("batch"), allow("papi"))
	waitIntentions(t, idx, papi, qapi)
	compare("exact and wildcard entries")

	idx = setIntentions(t, c, "*", allow("ops"), deny("*"))
	waitIntentions(t, idx, papi, qapi)
	compare("wildcard entry changed")

	_, err = c.ConfigEntries().Delete(api.ServiceIntentions, "papi", nil)
	require.NoError(t, err)
	idx = setIntentions(t, c, "qapi", &api.SourceIntention{Name: "*", Action: api.IntentionActionAllow}, deny("batch"))
	waitIntentions(t, idx, papi, qapi)
	compare("exact entry deleted, another written")

	// The decision per request says which intention decided.
	d := qapi.Authorize("batch", nil)
	assert.False(t, d.Allowed)
	assert.Equal(t, "batch => qapi", d.Reason)
	d = papi.Authorize("someone", nil)
	assert.False(t, d.Allowed)
	assert.Equal(t, "* => *", d.Reason)
}
