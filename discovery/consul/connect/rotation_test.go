package connect_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/internal/consultest"
)

// load calls url with c until stop is closed (at most max requests), opening a new
// connection every 10 requests so that handshakes run all along, and counts failures.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErr   error
	done       chan struct{}
}

func startLoad(c *http.Client, url string, stop <-chan struct{}, max int) *load {
	l := &load{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; i < max; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%10 == 0 {
				c.CloseIdleConnections()
			}
			code, _, err := get(c, url)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("status %d", code)
			}
			if err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				if l.firstErr == nil {
					l.firstErr = err
				}
				l.mu.Unlock()
				continue
			}
			l.ok.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return l
}

func (l *load) stopAndCheck(t *testing.T) {
	t.Helper()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Zero(t, l.failed.Load(), "failed requests; first: %v", l.firstErr)
	assert.Positive(t, l.ok.Load())
	t.Logf("%d requests, %d failed", l.ok.Load()+l.failed.Load(), l.failed.Load())
}

// rotateCA gives the agent's built-in CA a new private key, which makes a new root; it
// returns the new active root's ID once the agent shows it.
func rotateCA(t *testing.T, c *api.Client) string {
	t.Helper()
	before, _, err := c.Agent().ConnectCARoots(nil)
	require.NoError(t, err)
	conf, _, err := c.Connect().CAGetConfig(nil)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	conf.Config["PrivateKey"] = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	conf.Config["PrivateKeyType"], conf.Config["PrivateKeyBits"] = "ec", 256
	_, err = c.Connect().CASetConfig(conf, nil)
	require.NoError(t, err)
	var active string
	eventually(t, 10*time.Second, "the agent shows the new root", func() error {
		r, _, err := c.Agent().ConnectCARoots(nil)
		if err != nil {
			return err
		}
		if r.ActiveRootID == before.ActiveRootID {
			return errors.New("same active root")
		}
		active = r.ActiveRootID
		return nil
	})
	return active
}

// presented returns the certificate chain the server at addr presents to m's client.
func presented(t *testing.T, m *connect.Mesh, service, addr string) []*x509.Certificate {
	t.Helper()
	cfg, err := m.ClientTLS(service)
	require.NoError(t, err)
	conn, err := tls.Dial("tcp", addr, cfg)
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates
}

// A CA root rotation (a new CA configuration through the API) under load: no request fails,
// the Mesh trusts the new root within a second of the agent showing it, and both services
// move to leaves of the new root when the agent re-issues them (within its 30 s window), each
// without a restart. Its own agent: the rotation would change every other test's CA.
func TestCARotationUnderLoad(t *testing.T) {
	a := consultest.ForTest(t)
	c := apiClient(t, a)
	srv := newMesh(t, a, "rotapi")
	cli := newMesh(t, a, "rotweb")
	mux := http.NewServeMux()
	mux.Handle("/", whoami)
	mux.HandleFunc("/issuer", func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.PeerFromContext(r.Context())
		fmt.Fprintf(w, "%x", p.Certificate.AuthorityKeyId) // the client leaf's issuer
	})
	port := serveMesh(t, srv, mux)
	hc := meshClient(t, cli)
	eventually(t, 10*time.Second, "first call", func() error { _, _, err := get(hc, "http://rotapi/"); return err })
	oldLeafIssuer := presented(t, cli, "rotapi", hostport(port))[0].AuthorityKeyId
	_, oldClientIssuer, err := get(hc, "http://rotapi/issuer")
	require.NoError(t, err)

	stop := make(chan struct{})
	l := startLoad(hc, "http://rotapi/", stop, 20000)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	active := rotateCA(t, c)
	shown := time.Now()
	var trusted time.Duration
	eventually(t, 5*time.Second, "both meshes trust the new root", func() error {
		for _, m := range []*connect.Mesh{srv, cli} {
			if !slices.Contains(m.Status().RootIDs, active) {
				return errors.New("not yet")
			}
		}
		trusted = time.Since(shown)
		return nil
	})
	assert.Less(t, trusted, time.Second, "new root trusted %v after the agent showed it", trusted)

	eventually(t, 45*time.Second, "the server presents a leaf of the new root", func() error {
		if got := presented(t, cli, "rotapi", hostport(port))[0].AuthorityKeyId; slices.Equal(got, oldLeafIssuer) {
			return errors.New("still the old root's leaf")
		}
		return nil
	})
	eventually(t, 45*time.Second, "the client presents a leaf of the new root", func() error {
		hc.CloseIdleConnections()
		_, issuer, err := get(hc, "http://rotapi/issuer")
		if err == nil && issuer == oldClientIssuer {
			err = errors.New("still the old root's leaf")
		}
		return err
	})
	close(stop)
	l.stopAndCheck(t)
}
