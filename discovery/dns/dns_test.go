package dns_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/discovery/dns"
	"github.com/proxyless/proxyless/internal/consultest"
)

// The DNS server under test is a real one: the Consul agent's DNS interface.
var shared consultest.Shared

func TestMain(m *testing.M) { goleak.VerifyTestMain(shared.Wrap(m)) }

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  dns.Config
		want string
	}{
		{dns.Config{Interval: -1}, "Config.Interval"},
		{dns.Config{Timeout: -1}, "Config.Timeout"},
		{dns.Config{RetryMin: -1}, "Config.RetryMin"},
		{dns.Config{EmptyGrace: -1}, "Config.EmptyGrace"},
		{dns.Config{EmptyAnswers: -1}, "Config.EmptyAnswers"},
		{dns.Config{Server: "127.0.0.1"}, "Config.Server"},
		{dns.Config{Server: "localhost:53"}, "Config.Server"},
		{dns.Config{Server: "127.0.0.1:0"}, "Config.Server"},
	} {
		_, err := dns.New(tc.cfg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
		assert.True(t, strings.HasPrefix(err.Error(), "dns: "))
	}
	r, err := dns.New(dns.Config{})
	require.NoError(t, err)
	_, err = r.Watch(context.Background(), "")
	require.Error(t, err)
	_, err = r.Watch(context.Background(), "bad name.")
	require.Error(t, err)
}

func registerAt(t *testing.T, a *consultest.Agent, service string, port int) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dereg, err := consul.Register(ctx, consul.Config{Address: a.HTTPAddr},
		consul.Registration{Name: service, Address: "127.0.0.1", Port: port, Weight: 3})
	require.NoError(t, err)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, dereg(ctx))
	}
}

func sorted(eps []discovery.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Addr
	}
	sort.Strings(out)
	return out
}

func nextMatching(t *testing.T, w discovery.Watcher, d time.Duration, want ...string) []discovery.Endpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last []string
	for {
		eps, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %v (last %v): %v", want, last, err)
		}
		last = sorted(eps)
		if fmt.Sprint(last) == fmt.Sprint(want) {
			return eps
		}
	}
}

func TestSRVFromConsulDNS(t *testing.T) {
	a := consultest.ForTest(t) // stopped below: not the shared agent
	dereg1 := registerAt(t, a, "search", 9401)
	registerAt(t, a, "search", 9402)

	r, err := dns.New(dns.Config{Server: a.DNSAddr, Interval: 100 * time.Millisecond, Timeout: time.Second, EmptyAnswers: 2})
	require.NoError(t, err)
	w, err := r.Watch(context.Background(), "search.service.consul.")
	require.NoError(t, err)
	defer w.Close()

	eps := nextMatching(t, w, 10*time.Second, "127.0.0.1:9401", "127.0.0.1:9402")
	assert.Equal(t, uint32(3), eps[0].Weight, "SRV weight")
	assert.Equal(t, "1", eps[0].Meta["priority"])

	dereg1()
	nextMatching(t, w, 10*time.Second, "127.0.0.1:9402")

	// The DNS server goes away: the last set stays, marked stale.
	require.NoError(t, a.Stop())
	sr := w.(discovery.StatusReporter)
	require.Eventually(t, func() bool { return sr.Status().Stale }, 10*time.Second, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	got, err := w.Next(ctx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "kept the last set; got %v", got)

	// It comes back (empty, as a dev agent does): a new instance flows.
	require.NoError(t, a.Restart())
	registerAt(t, a, "search", 9403)
	nextMatching(t, w, 15*time.Second, "127.0.0.1:9403")
	assert.False(t, sr.Status().Stale)
}

func TestUnknownNameIsEmpty(t *testing.T) {
	a := shared.Agent(t)
	r, err := dns.New(dns.Config{Server: a.DNSAddr, Interval: time.Hour})
	require.NoError(t, err)
	w, err := r.Watch(context.Background(), "nothing-here.service.consul.")
	require.NoError(t, err)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	eps, err := w.Next(ctx)
	require.NoError(t, err)
	assert.Empty(t, eps)
}

func TestCloseReturnsPromptly(t *testing.T) {
	r, err := dns.New(dns.Config{Server: "127.0.0.1:9", Interval: time.Hour, Timeout: time.Hour})
	require.NoError(t, err)
	w, err := r.Watch(context.Background(), "x.example.")
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	require.NoError(t, w.Close())
	assert.Less(t, time.Since(start), 100*time.Millisecond)
}
