package connect_test

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"
)

// connCounter counts the connections requests with its trace opened (not reused).
type connCounter struct {
	mu            sync.Mutex
	fresh, reused int
}

func newConnCounter() *connCounter { return &connCounter{} }

func (c *connCounter) trace(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if info.Reused {
			c.reused++
		} else {
			c.fresh++
		}
	}})
}

// counts returns how many requests opened a connection and how many reused one.
func (c *connCounter) counts() (fresh, reused int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fresh, c.reused
}

func mustGet(t *testing.T, c *http.Client, ctx context.Context, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	_, _ = resp.Body.Read(make([]byte, 512))
	resp.Body.Close()
	return resp.StatusCode
}

// agentCheck is the agent's own decision, /v1/connect/intentions/check.
func agentCheck(t *testing.T, c *api.Client, src, dst string) bool {
	t.Helper()
	ok, _, err := c.Connect().IntentionCheck(&api.IntentionCheck{Source: src, Destination: dst, SourceType: api.IntentionSourceConsul}, nil)
	require.NoError(t, err)
	return ok
}
