package connect_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/internal/consultest"
	"github.com/proxyless/proxyless/middleware"
)

// With the agent down, traffic keeps flowing, on new connections too, on the last good
// certificates, roots, intentions and endpoints, and the status says they are stale; when an
// agent is back (a dev agent restarts with a new CA and trust domain), the meshes follow it
// without a restart and the status is fresh again.
func TestFailStaticThroughAgentRestart(t *testing.T) {
	a := consultest.ForTest(t)
	c := apiClient(t, a)
	srv := newMesh(t, a, "fsapi")
	cli := newMesh(t, a, "fsweb")
	serveMesh(t, srv, whoami)
	idx := setIntentions(t, c, "fsapi", deny("intruder"), allow("fsweb"))
	waitIntentions(t, idx, srv)
	hc := meshClient(t, cli)
	call := func() error {
		hc.CloseIdleConnections() // a new handshake each time
		code, _, err := get(hc, "http://fsapi/")
		if err == nil && code != http.StatusOK {
			err = errors.New(http.StatusText(code))
		}
		return err
	}
	eventually(t, 10*time.Second, "first call", call)
	oldTD := srv.Status().TrustDomain

	require.NoError(t, a.Stop())
	eventually(t, 10*time.Second, "the status says stale", func() error {
		for _, m := range []*connect.Mesh{srv, cli} {
			st := m.Status()
			if !st.Leaf.Stale || !st.Roots.Stale || !st.Intentions.Stale {
				return errors.New("not stale yet")
			}
		}
		return nil
	})
	assertStatusPage(t, srv, true)
	st := srv.Status()
	assert.Error(t, st.Leaf.Err)
	assert.False(t, st.Leaf.Since.IsZero())
	for range 20 {
		require.NoError(t, call(), "a call while the agent is down")
	}
	assert.False(t, srv.AllowedL4("intruder"), "the last good intentions still apply")

	require.NoError(t, a.Restart())
	// The new agent knows nothing of the server: the client's resolver keeps its last good
	// endpoints (a confirmed empty answer takes 30 s to be believed).
	eventually(t, 20*time.Second, "the meshes follow the new agent", func() error {
		for _, m := range []*connect.Mesh{srv, cli} {
			st := m.Status()
			if st.Leaf.Stale || st.Roots.Stale || st.Intentions.Stale || st.TrustDomain == oldTD || m.Identity().TrustDomain == oldTD {
				return errors.New("not yet")
			}
		}
		return nil
	})
	eventually(t, 20*time.Second, "calls under the new CA", call)
	assertStatusPage(t, srv, false)
}

// assertStatusPage reads middleware.StatusHandler's JSON for m's status source and checks
// that the leaf, roots, intentions (and the chain watchers' chains) show with the staleness
// wanted.
func assertStatusPage(t *testing.T, m *connect.Mesh, stale bool, chains ...*consul.ChainWatcher) {
	t.Helper()
	rec := httptest.NewRecorder()
	middleware.StatusHandler(m.StatusSource(chains...)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?format=json", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	var page struct {
		Transports []struct {
			Destinations []struct {
				Service string `json:"service"`
				Stale   bool   `json:"stale"`
			} `json:"destinations"`
		} `json:"transports"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &page))
	require.Len(t, page.Transports, 1)
	got := map[string]bool{}
	for _, d := range page.Transports[0].Destinations {
		got[d.Service] = d.Stale
	}
	want := map[string]bool{
		"consul connect: leaf certificate": stale, "consul connect: CA roots": stale, "consul connect: intentions": stale,
	}
	for _, c := range chains {
		want["consul connect: discovery chains of "+strings.Join(c.Services(), ", ")] = stale
	}
	assert.Equal(t, want, got)
}
