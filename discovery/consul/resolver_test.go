package consul

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
)

// fastConfig points at addr with short waits suited to tests.
func fastConfig(addr string) Config {
	return Config{
		Address:      addr,
		WaitTime:     2 * time.Second,
		MaxQueryRate: 200,
		RetryMin:     5 * time.Millisecond,
		RetryMax:     20 * time.Millisecond,
	}
}

func watch(t *testing.T, cfg Config, service string) *Watcher {
	t.Helper()
	r, err := New(cfg)
	require.NoError(t, err)
	w, err := r.Watch(context.Background(), service)
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	return w.(*Watcher)
}

func next(t *testing.T, w discovery.Watcher, within time.Duration) []discovery.Endpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	eps, err := w.Next(ctx)
	require.NoError(t, err)
	return eps
}

func noChange(t *testing.T, w discovery.Watcher, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	eps, err := w.Next(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "unexpected set %v", eps)
}

func addrs(eps []discovery.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Addr
	}
	return out
}

func waitStatus(t *testing.T, w *Watcher, stale bool) discovery.Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := w.Status()
		if st.Stale == stale {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status stale=%v, want %v (%+v)", st.Stale, stale, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Address: "ftp://127.0.0.1:8500"}, "unknown scheme"},
		{Config{Address: "127.0.0.1"}, "Config.Address"},
		{Config{Address: "127.0.0.1:99999"}, "Config.Address"},
		{Config{Address: "http://127.0.0.1:8500/v1"}, "Config.Address"},
		{Config{Address: "::not a url::"}, "Config.Address"},
		{Config{WaitTime: -time.Second}, "Config.WaitTime"},
		{Config{RetryMin: -1}, "Config.RetryMin"},
		{Config{RetryMin: time.Second, RetryMax: time.Millisecond}, "Config.RetryMax"},
		{Config{MaxQueryRate: -1}, "Config.MaxQueryRate"},
		{Config{EmptyAnswers: -1}, "Config.EmptyAnswers"},
		{Config{EmptyGrace: -1}, "Config.EmptyGrace"},
	} {
		_, err := New(tc.cfg)
		require.Error(t, err, "%+v", tc.cfg)
		assert.Contains(t, err.Error(), tc.want)
		assert.True(t, strings.HasPrefix(err.Error(), "consul: "), err.Error())
	}
	for _, ok := range []string{"", "127.0.0.1:8500", "http://127.0.0.1:8500", "https://localhost:8501/", "[::1]:8500"} {
		_, err := New(Config{Address: ok})
		assert.NoError(t, err, ok)
	}
	r, err := New(Config{})
	require.NoError(t, err)
	_, err = r.Watch(context.Background(), "")
	require.Error(t, err)
}

func TestIndexGoesBackwardsResetsToZero(t *testing.T) {
	indexes := []uint64{10, 5, 7, 7}
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		if n < len(indexes) {
			return fakeResp{Index: indexes[n], Body: entriesJSON(1000 + n)}
		}
		return fakeResp{Index: 7, Body: entriesJSON(1003), Block: time.Hour}
	})
	w := watch(t, fastConfig(f.addr()), "web")
	next(t, w, 5*time.Second)
	reqs := f.waitRequests(t, 5)
	got := []uint64{reqs[0].Index, reqs[1].Index, reqs[2].Index, reqs[3].Index, reqs[4].Index}
	// 0 first; 10; the answer 5 went backwards: ask afresh with 0; then 7, 7.
	assert.Equal(t, []uint64{0, 10, 0, 7, 7}, got)
}

func TestIndexZeroNeverBlocksOnZero(t *testing.T) {
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		if n == 0 {
			return fakeResp{Index: 0, Body: entriesJSON(1000)}
		}
		return fakeResp{Index: 3, Body: entriesJSON(1000), Block: time.Hour}
	})
	w := watch(t, fastConfig(f.addr()), "web")
	assert.Equal(t, []string{"127.0.0.1:1000"}, addrs(next(t, w, 5*time.Second)))
	reqs := f.waitRequests(t, 2)
	assert.Equal(t, uint64(1), reqs[1].Index, "an answer with index 0 must be followed by a query on index 1")
}

func TestLoopIsRateLimited(t *testing.T) {
	// A misbehaving agent answers at once, with a fresh index every time.
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		return fakeResp{Index: uint64(n + 1), Body: entriesJSON(1000)}
	})
	cfg := fastConfig(f.addr())
	cfg.MaxQueryRate = 10
	w := watch(t, cfg, "web")
	next(t, w, 5*time.Second)
	time.Sleep(time.Second)
	require.NoError(t, w.Close())
	n := len(f.requests())
	// A burst of 2 plus 10 per second over about a second, with slack for scheduling.
	assert.LessOrEqual(t, n, 2+10+3, "requests in ~1s")
	assert.GreaterOrEqual(t, n, 5, "the loop should still make progress")
}

func TestFailsStaticWhenAgentErrors(t *testing.T) {
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		if n == 0 {
			return fakeResp{Index: 5, Body: entriesJSON(1000, 1001)}
		}
		return fakeResp{Status: 500, Body: "boom"}
	})
	w := watch(t, fastConfig(f.addr()), "web")
	assert.Equal(t, []string{"127.0.0.1:1000", "127.0.0.1:1001"}, addrs(next(t, w, 5*time.Second)))
	st := waitStatus(t, w, true)
	require.Error(t, st.LastError)
	assert.False(t, st.StaleSince.IsZero())
	noChange(t, w, 100*time.Millisecond)
	// The errors back off instead of spinning: RetryMax is 20 ms, so 100 ms hold at most a
	// dozen queries.
	assert.Less(t, len(f.requests()), 40)
}

func TestMalformedAnswersAreRejected(t *testing.T) {
	bad := []fakeResp{
		{Index: 6, Body: `[{"Node":`}, // bad JSON
		{Index: 7, Body: strings.Replace(entriesJSON(1000), `"Port":1000`, `"Port":70000`, 1)}, // port out of range
		{Index: 8, Body: strings.Replace(entriesJSON(1000), `"Address":"127.0.0.1"`, `"Address":"not a host"`, 1)},
		{Index: 9, Body: `[{"Node":{"Address":"127.0.0.1"}}]`}, // no service
	}
	release := make(chan struct{})
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		switch {
		case n == 0:
			return fakeResp{Index: 5, Body: entriesJSON(1000)}
		case n <= len(bad):
			return bad[n-1]
		case n == len(bad)+1:
			<-release
			return fakeResp{Index: 20, Body: entriesJSON(2000)}
		default:
			return fakeResp{Index: 20, Body: entriesJSON(2000), Block: time.Hour}
		}
	})
	w := watch(t, fastConfig(f.addr()), "web")
	assert.Equal(t, []string{"127.0.0.1:1000"}, addrs(next(t, w, 5*time.Second)))
	f.waitRequests(t, len(bad)+2)
	st := w.Status()
	assert.True(t, st.Stale)
	require.Error(t, st.LastError)
	noChange(t, w, 50*time.Millisecond)

	close(release)
	assert.Equal(t, []string{"127.0.0.1:2000"}, addrs(next(t, w, 5*time.Second)))
	waitStatus(t, w, false)
}

func TestEmptySetNeedsConfirmingAnswers(t *testing.T) {
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		switch {
		case n == 0:
			return fakeResp{Index: 5, Body: entriesJSON(1000)}
		case n < 4:
			return fakeResp{Index: uint64(5 + n), Body: `[]`} // indexes 6, 7, 8
		default:
			return fakeResp{Index: 8, Body: `[]`, Block: time.Hour}
		}
	})
	cfg := fastConfig(f.addr())
	cfg.EmptyAnswers = 3
	cfg.EmptyGrace = time.Hour
	w := watch(t, cfg, "web")
	assert.Len(t, next(t, w, 5*time.Second), 1)
	// The third empty answer (index 8) is believed.
	assert.Empty(t, next(t, w, 5*time.Second))
	reqs := f.requests()
	assert.GreaterOrEqual(t, len(reqs), 4, "the empty set must not be believed before the third empty answer")
	assert.False(t, w.Status().Stale)
}

func TestEmptySetBelievedAfterGrace(t *testing.T) {
	start := time.Now()
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		switch n {
		case 0:
			return fakeResp{Index: 5, Body: entriesJSON(1000)}
		case 1:
			return fakeResp{Index: 6, Body: `[]`} // the set turns empty
		default:
			// The index never moves again: only the grace period can confirm the empty set.
			return fakeResp{Index: 6, Body: `[]`, Block: time.Hour}
		}
	})
	cfg := fastConfig(f.addr())
	cfg.EmptyAnswers = 1000
	cfg.EmptyGrace = 300 * time.Millisecond
	cfg.WaitTime = time.Minute
	w := watch(t, cfg, "web")
	assert.Len(t, next(t, w, 5*time.Second), 1)
	f.waitRequests(t, 2)
	waitStatus(t, w, true)
	assert.Empty(t, next(t, w, 5*time.Second))
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	// The query was shortened to the grace period rather than the minute-long WaitTime.
	reqs := f.requests()
	assert.LessOrEqual(t, reqs[len(reqs)-1].Wait, 300*time.Millisecond)
}

func TestFirstAnswerEmptyIsBelieved(t *testing.T) {
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		return fakeResp{Index: 3, Body: `[]`, Block: time.Duration(min(n, 1)) * time.Hour}
	})
	w := watch(t, fastConfig(f.addr()), "web")
	assert.Empty(t, next(t, w, 5*time.Second))
}

func TestCloseWithQueryInFlight(t *testing.T) {
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		return fakeResp{Index: 5, Body: entriesJSON(1000), Block: time.Duration(min(n, 1)) * time.Hour}
	})
	w := watch(t, fastConfig(f.addr()), "web")
	next(t, w, 5*time.Second)
	f.waitRequests(t, 2) // the second, blocking query is in flight
	blocked := make(chan error, 1)
	go func() {
		_, err := w.Next(context.Background())
		blocked <- err
	}()
	start := time.Now()
	require.NoError(t, w.Close())
	assert.Less(t, time.Since(start), 100*time.Millisecond)
	require.ErrorIs(t, <-blocked, discovery.ErrClosed)
	require.NoError(t, w.Close(), "Close is idempotent")
}

func TestEndpointsFromEntries(t *testing.T) {
	f := newFakeConsul(t, func(n int, req fakeReq) fakeResp {
		body := `[{"Node":{"Address":"10.0.0.9","Meta":{"zone":"node-zone"}},` +
			`"Service":{"ID":"a","Address":"127.0.0.2","Port":80,"Tags":["v2"],"Meta":{"zone":"svc-zone","version":"2"},"Weights":{"Passing":5,"Warning":2}},` +
			`"Checks":[{"Status":"passing"}]},` +
			`{"Node":{"Address":"::1","Meta":{"zone":"node-zone"}},` +
			`"Service":{"ID":"b","Port":81,"Weights":{"Passing":5,"Warning":2}},` +
			`"Checks":[{"Status":"warning"}]}]`
		return fakeResp{Index: 5, Body: body, Block: time.Duration(min(n, 1)) * time.Hour}
	})
	w := watch(t, fastConfig(f.addr()), "web")
	eps := next(t, w, 5*time.Second)
	require.Len(t, eps, 2)
	assert.Equal(t, discovery.Endpoint{Addr: "127.0.0.2:80", Weight: 5, Zone: "svc-zone", Tags: []string{"v2"},
		Meta: map[string]string{"zone": "svc-zone", "version": "2"}}, eps[0])
	assert.Equal(t, discovery.Endpoint{Addr: "[::1]:81", Weight: 2, Zone: "node-zone"}, eps[1])
}

// TestEndpointWeightRange checks that Consul's int weights land in uint32: negative ones at 0,
// large ones at the largest uint32.
func TestEndpointWeightRange(t *testing.T) {
	for _, tc := range []struct {
		passing int
		want    uint32
	}{
		{-4, 0},
		{0, 0},
		{7, 7},
		{math.MaxInt32, math.MaxInt32},
		{math.MaxInt, uint32(min(int64(math.MaxInt), math.MaxUint32))}, // MaxUint32 where int is 64 bits
	} {
		entries := []*api.ServiceEntry{{Service: &api.AgentService{Address: "127.0.0.1", Port: 80, Weights: api.AgentWeights{Passing: tc.passing}}}}
		eps, err := endpoints(entries, "zone")
		require.NoError(t, err)
		assert.Equal(t, tc.want, eps[0].Weight, "Passing %d", tc.passing)
	}
}
