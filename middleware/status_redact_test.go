package middleware

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/route"
)

// The status page never shows the value a route matches a credential on, in HTML or JSON.
func TestStatusHandlerRedactsCredentialMatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := route.ParseConfig([]byte(`
routes:
  - name: by-auth
    match: {headers: [{name: authorization, exact: "Bearer s3cret-bearer"}]}
    destination: {service: a}
  - name: by-key
    match: {headers: [{name: X-Api-Key, prefix: s3cret-key}, {name: x-env, exact: visible-env}]}
    destination: {service: a}
  - name: by-cookie
    match: {headers: [{name: Cookie, regex: ".*session=s3cret-cookie.*"}, {name: X-Session-Token, present: true}]}
    destination: {service: a}
  - name: by-query
    match: {query: [{name: access_token, exact: s3cret-query}, {name: client_SECRET, exact: s3cret-q2}]}
    destination: {service: a}
`))
	require.NoError(t, err)
	router, err := route.NewRouter(cfg)
	require.NoError(t, err)
	tr, err := NewTransport(&http.Transport{}, WithRoutes(router))
	require.NoError(t, err)
	defer func() { require.NoError(t, tr.Close()) }()
	srv := httptest.NewServer(StatusHandler(tr))
	defer srv.Close()

	for _, format := range []string{"/", "/?format=json"} {
		body := string(fetch(ctx, t, srv.Client(), srv.URL+format))
		assert.NotContains(t, body, "s3cret", format)
		assert.Contains(t, body, "[redacted]", format)
		assert.Contains(t, body, "visible-env", format+": other values are shown")
		assert.Contains(t, body, "X-Session-Token", format+": names are shown")
	}
	p := fetchPage(ctx, t, srv.Client(), srv.URL)
	var matches []string
	for _, r := range p.Transports[0].Routes.Table {
		matches = append(matches, r.Match)
	}
	assert.Equal(t, []string{
		"header:Authorization=[redacted]",
		"header:X-Api-Key^=[redacted] header:X-Env=visible-env",
		"header:Cookie~[redacted] header:X-Session-Token",
		"query:access_token=[redacted] query:client_SECRET=[redacted]",
	}, matches)
}
