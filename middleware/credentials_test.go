package middleware_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
)

// authLog records the Authorization header of each request a server received.
type authLog struct {
	mu  sync.Mutex
	got []string
}

func (l *authLog) record(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, r.Header.Get("Authorization"))
}

func (l *authLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// recordingServer is a loopback server that records the Authorization header it receives,
// and answers 302 to redirect for paths starting with /redirect.
func recordingServer(t *testing.T, redirect string) (*httptest.Server, *authLog) {
	log := &authLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.record(r)
		if strings.HasPrefix(r.URL.Path, "/redirect") {
			http.Redirect(w, r, redirect, http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, log
}

func TestCredentialsOnlyToMeshDestinations(t *testing.T) {
	outside, outsideLog := recordingServer(t, "")
	mesh, meshLog := recordingServer(t, outside.URL+"/landed")
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: mesh.Listener.Addr().String()}}})
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	tr, err := middleware.NewTransport(base, middleware.WithResolver(static), middleware.WithCredentials(auth.StaticToken("secret")))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	c := &http.Client{Transport: tr}

	code, _, _ := do(t, c, "http://svc/")
	assert.Equal(t, http.StatusOK, code)
	code, _, _ = do(t, c, outside.URL+"/passed-through")
	assert.Equal(t, http.StatusOK, code)
	code, _, _ = do(t, c, "http://svc/redirect") // followed by the client to outside
	assert.Equal(t, http.StatusOK, code)

	assert.Equal(t, []string{"Bearer secret", "Bearer secret"}, meshLog.all(), "each attempt to the mesh endpoint carries the token")
	assert.Equal(t, []string{"", ""}, outsideLog.all(), "neither the pass-through request nor the redirect off the mesh carries it")
}

// fakeBase answers every request itself, recording its Authorization header: no network.
type fakeBase struct{ log authLog }

func (f *fakeBase) RoundTrip(r *http.Request) (*http.Response, error) {
	f.log.record(r)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

func TestCredentialsNotInClearTextOffLoopback(t *testing.T) {
	// TEST-NET addresses never dialled: the fake base answers.
	static := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "192.0.2.7:80"}}})
	for _, tc := range []struct {
		name, url string
		allow     bool
		want      []string // what reached the base
	}{
		{"http refused", "http://svc/", false, nil},
		{"https sent", "https://svc/", false, []string{"Bearer secret"}},
		{"http allowed", "http://svc/", true, []string{"Bearer secret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := &fakeBase{}
			tr, err := middleware.NewTransport(base, middleware.WithResolver(static),
				middleware.WithOutboundCredentials(middleware.Credentials{Token: auth.StaticToken("secret"), AllowCleartext: tc.allow}),
				middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
			require.NoError(t, err)
			t.Cleanup(func() { _ = tr.Close() })
			req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, tc.url, nil)
			require.NoError(t, err)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if tc.want == nil {
				require.ErrorContains(t, err, "middleware: WithCredentials: refusing to send a token in clear text to 192.0.2.7:80")
			} else {
				require.NoError(t, err)
				drain(resp)
			}
			assert.Equal(t, tc.want, base.log.all())
		})
	}
}
