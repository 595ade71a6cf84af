package connect_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery/consul/connect"
)

// A proxyless client and a proxyless Connect-native server, each with its leaf from the
// agent, call each other over mTLS; the server sees the client's Connect identity; the
// client accepts only the service it dialled.
func TestNativeToNativeMTLS(t *testing.T) {
	a := shared.Agent(t)
	api1 := newMesh(t, a, "api1")
	web := newMesh(t, a, "web1")
	port := serveMesh(t, api1, whoami)
	assert.Equal(t, "api1", api1.Identity().Service)
	assert.Equal(t, api1.Status().TrustDomain, api1.Identity().TrustDomain)

	c := meshClient(t, web)
	var code int
	var body string
	eventually(t, 10*time.Second, "the native instance is a mesh endpoint", func() error {
		var err error
		code, body, err = get(c, "http://api1/")
		return err
	})
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, web.Identity().URI(), body, "the server sees the client's SPIFFE identity")
	assert.True(t, strings.HasSuffix(body, "/ns/default/dc/dc1/svc/web1"), body)

	// A client that dials the server as another service refuses it: its identity is api1.
	cfg, err := web.ClientTLS("billing")
	require.NoError(t, err)
	err = handshakeErr(hostport(port), cfg)
	var idErr *connect.IdentityError
	require.ErrorAs(t, err, &idErr)
	assert.Contains(t, idErr.Got, "/svc/api1")

	// The server name is the one Consul assigns.
	cfg, err = web.ClientTLS("api1")
	require.NoError(t, err)
	assert.Equal(t, "api1.default.dc1.internal."+web.Status().TrustDomain, cfg.ServerName)
	require.NoError(t, handshakeErr(hostport(port), cfg))

	// A client without a certificate, or with one of another CA, is refused in the handshake.
	err = handshakeErr(hostport(port), &tls.Config{InsecureSkipVerify: true})
	require.Error(t, err)
}

// The authorizer decides per request: a deny intention written while a connection is open
// makes the next request on that very connection 403 within a second, and an allow brings it
// back; the gRPC side answers PERMISSION_DENIED (see grpc_test.go).
func TestDenyAppliesToOpenConnections(t *testing.T) {
	a := shared.Agent(t)
	c := apiClient(t, a)
	cleanEntries(t, c, [2]string{api.ServiceIntentions, "api2"})
	srv := newMesh(t, a, "api2")
	cli := newMesh(t, a, "web2")
	serveMesh(t, srv, whoami)
	hc := meshClient(t, cli)
	idx := setIntentions(t, c, "api2", allow("web2"))
	waitIntentions(t, idx, srv)
	eventually(t, 10*time.Second, "first call", func() error {
		code, _, err := get(hc, "http://api2/")
		if err == nil && code != 200 {
			err = errors.New(http.StatusText(code))
		}
		return err
	})
	conns := newConnCounter()
	ctx := conns.trace(context.Background())

	setIntentions(t, c, "api2", deny("web2"))
	wrote := time.Now()
	var denied time.Duration
	for time.Since(wrote) < 5*time.Second {
		code := mustGet(t, hc, ctx, "http://api2/")
		if code == http.StatusForbidden {
			denied = time.Since(wrote)
			break
		}
		require.Equal(t, http.StatusOK, code)
		time.Sleep(10 * time.Millisecond)
	}
	require.NotZero(t, denied, "the deny was not enforced")
	assert.Less(t, denied, time.Second, "the deny took %v", denied)
	fresh, reused := conns.counts()
	assert.Zero(t, fresh, "every request went over the connection opened before the deny")
	assert.Positive(t, reused)
	assert.Equal(t, srv.AllowedL4("web2"), agentCheck(t, c, "web2", "api2"))

	setIntentions(t, c, "api2", allow("web2"))
	wrote = time.Now()
	eventually(t, time.Second, "allowed again", func() error {
		if code := mustGet(t, hc, ctx, "http://api2/"); code != http.StatusOK {
			return errors.New(http.StatusText(code))
		}
		return nil
	})
	fresh, _ = conns.counts()
	assert.Zero(t, fresh)
}
