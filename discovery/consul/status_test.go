package consul

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/internal/backoff"
)

// The fake stands for a follower answering a stale read during an election (no known leader,
// 1.5 s since it heard from the last one), which a real cluster shows only by chance.
func TestAllowStaleAndStalenessReported(t *testing.T) {
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		h := map[string]string{"X-Consul-KnownLeader": "false", "X-Consul-LastContact": "1500", "X-Consul-Query-Backend": "blocking-query"}
		if req.Index == 0 {
			return fakeResp{Index: 7, Body: entriesJSON(1000), Header: h}
		}
		return fakeResp{Index: 7, Body: entriesJSON(1000), Header: h, Block: time.Hour}
	})
	cfg := fastConfig(f.addr())
	cfg.AllowStale = true
	r, err := New(cfg)
	require.NoError(t, err)
	w1, err := r.Watch(context.Background(), "web")
	require.NoError(t, err)
	next(t, w1, 5*time.Second)
	reqs := f.waitRequests(t, 2)
	assert.True(t, reqs[0].Stale && reqs[1].Stale, "AllowStale did not ask for stale reads")

	st := w1.(*Watcher).WatchStatus()
	assert.Equal(t, "web", st.Service)
	assert.True(t, st.AllowStale)
	assert.False(t, st.KnownLeader)
	assert.Equal(t, 1500*time.Millisecond, st.LastContact)
	assert.Equal(t, "blocking-query", st.Backend)
	assert.Equal(t, uint64(7), st.Index)
	assert.False(t, st.AnsweredAt.IsZero())
	assert.False(t, st.Stale)
	assert.GreaterOrEqual(t, st.Queries, int64(2))

	w2, err := r.Watch(context.Background(), "api")
	require.NoError(t, err)
	next(t, w2, 5*time.Second)
	ws := r.Watches()
	require.Len(t, ws, 2)
	assert.Equal(t, []string{"api", "web"}, []string{ws[0].Service, ws[1].Service})
	assert.Equal(t, 2, r.Stats().Watchers)
	assert.GreaterOrEqual(t, r.Stats().Queries, int64(4))
	require.NoError(t, w1.Close())
	require.NoError(t, w1.Close())
	assert.Equal(t, 1, r.Stats().Watchers)
	require.NoError(t, w2.Close())
	assert.Empty(t, r.Watches())

	// Without AllowStale, no stale reads are asked for.
	g := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		if req.Index == 0 {
			return fakeResp{Index: 3, Body: entriesJSON(1000)}
		}
		return fakeResp{Index: 3, Body: entriesJSON(1000), Block: time.Hour}
	})
	next(t, watch(t, fastConfig(g.addr()), "web"), 5*time.Second)
	assert.False(t, g.requests()[0].Stale)
}

// After errors, each retry waits at least half its exponential bound (equal jitter): the gaps
// between the queries the agent sees never fall below e_n/2, so a failing agent gets a
// logarithmic number of queries, not a steady stream.
func TestRetriesBackOffWithEqualJitter(t *testing.T) {
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		if n == 0 {
			return fakeResp{Index: 5, Body: entriesJSON(1000)}
		}
		return fakeResp{Status: 500, Body: "boom"}
	})
	cfg := fastConfig(f.addr())
	cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 160*time.Millisecond
	w := watch(t, cfg, "web")
	next(t, w, 5*time.Second)
	reqs := f.waitRequests(t, 8)
	require.NoError(t, w.Close())
	st := w.WatchStatus()
	assert.True(t, st.Stale)
	assert.Positive(t, st.Errors)
	// reqs[1] is the first failure; reqs[n+1] follows the n-th failure in a row.
	for n := 1; n+1 < len(f.requests()); n++ {
		reqs = f.requests()
		gap := reqs[n+1].At.Sub(reqs[n].At)
		if low := backoff.Exponential(cfg.RetryMin, cfg.RetryMax, n) / 2; gap < low {
			t.Errorf("retry %d came %v after the failure, want at least %v", n, gap, low)
		}
	}
	assert.Equal(t, int64(len(f.requests())-1), st.Errors)
}
