package connect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/internal/consultest"
)

// An agent whose service mesh is disabled gives a clear error at construction.
func TestNewOnAgentWithMeshDisabled(t *testing.T) {
	a := consultest.ForTestHCL(t, "connect { enabled = false }")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := connect.New(ctx, connect.Config{Consul: consul.Config{Address: a.HTTPAddr}, Service: "api"})
	require.Error(t, err)
	assert.Nil(t, m)
	assert.Contains(t, err.Error(), "service mesh (Connect) is disabled")
}

func TestNewRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		cfg  connect.Config
		want string
	}{
		{connect.Config{}, "connect: Config.Service is empty"},
		{connect.Config{Service: "*"}, "Config.Service"},
		{connect.Config{Service: "a/b"}, "Config.Service"},
		{connect.Config{Service: "api", DefaultPolicy: "maybe"}, "Config.DefaultPolicy"},
		{connect.Config{Service: "api", Consul: consul.Config{Address: "ftp://x:1"}}, "Config.Address"},
	} {
		_, err := connect.New(ctx, c.cfg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), c.want)
	}
	// An unreachable agent: the error says what could not be fetched.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := connect.New(ctx, connect.Config{Service: "api", Consul: consul.Config{Address: "127.0.0.1:1"}})
	require.ErrorContains(t, err, "connect: CA roots")
}

// Config.DefaultPolicy overrides the agent's: a source without an intention is refused.
func TestDefaultPolicyDeny(t *testing.T) {
	a := shared.Agent(t)
	m := newMesh(t, a, "dpapi", func(c *connect.Config) { c.DefaultPolicy = "deny" })
	assert.False(t, m.AllowedL4("nobody"))
	d := m.Authorize("nobody", nil)
	assert.Equal(t, connect.Decision{Allowed: false, Reason: "default"}, d)
}

// An intention entry the Mesh cannot compile (a path regex the agent accepts but RE2 does
// not) leaves the last good intentions in force, and the status says they are stale.
func TestMalformedEntryKeepsLastGood(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	cleanEntries(t, c, [2]string{api.ServiceDefaults, "mfapi"}, [2]string{api.ServiceIntentions, "mfapi"})
	m := newMesh(t, a, "mfapi")
	_, _, err := c.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "mfapi", Protocol: "http"}, nil)
	require.NoError(t, err)
	idx := setIntentions(t, c, "mfapi", deny("mfweb"))
	waitIntentions(t, idx, m)
	require.False(t, m.AllowedL4("mfweb"))

	ok, _, err := c.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "mfapi",
		Sources: []*api.SourceIntention{{Name: "mfweb", Permissions: []*api.IntentionPermission{
			{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathRegex: "(unclosed"}},
		}}}}, nil)
	if err != nil || !ok {
		// Consul v1.14.11 stores it (it checks regexes only when a proxy compiles them); an
		// agent that refuses it leaves this test nothing to show, which must not pass silently.
		t.Fatalf("the agent refused the malformed entry itself (%v): nothing reaches the Mesh", err)
	}
	eventually(t, 5*time.Second, "the intentions are stale", func() error {
		if st := m.Status().Intentions; !st.Stale {
			return errors.New("not stale")
		}
		return nil
	})
	st := m.Status().Intentions
	assert.ErrorContains(t, st.Err, "HTTP.PathRegex")
	assert.False(t, m.AllowedL4("mfweb"), "the last good deny still applies")
	assert.Equal(t, "mfweb => mfapi", m.Authorize("mfweb", nil).Reason)
	idx = setIntentions(t, c, "mfapi", &api.SourceIntention{Name: "mfweb", Permissions: []*api.IntentionPermission{
		{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/ok"}}}})
	waitIntentions(t, idx, m)
	assert.True(t, m.Authorize("mfweb", &connect.Request{Path: "/ok/x"}).Allowed)
	assert.True(t, m.Authorize("mfweb", nil).L7, "a nil request is an empty one")

	idx = setIntentions(t, c, "mfapi", allow("mfweb"))
	waitIntentions(t, idx, m)
	assert.True(t, m.AllowedL4("mfweb"))
	assert.False(t, m.Status().Intentions.Stale)
}
