package connect

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"

	"github.com/proxyless/proxyless/internal/backoff"
)

// Defaults of the follow loops, where consul.Config leaves them zero (consul.New fills its
// own copy the same way).
const (
	defaultWaitTime     = 5 * time.Minute
	defaultMaxQueryRate = 5
	defaultRetryMin     = 250 * time.Millisecond
	defaultRetryMax     = 15 * time.Second
)

// start runs one blocking-query loop per part until ctx is done.
func (m *Mesh) start(ctx context.Context) {
	parts := []struct {
		part  int
		fetch func(*api.QueryOptions) error
		index func() uint64
	}{
		{partLeaf, m.fetchLeaf, func() uint64 { return m.leaf.Load().index }},
		{partRoots, m.fetchRoots, func() uint64 { return m.roots.Load().index }},
		{partIntentions, m.fetchIntentions, func() uint64 { return m.rules.Load().index }},
	}
	for _, p := range parts {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.follow(ctx, partName[p.part], &m.status[p.part], p.fetch, p.index)
		}()
	}
}

// follow asks fetch again and again with blocking queries: the next answer comes when the
// agent's value changes (or WaitTime passes). A failure keeps the last good value, marks the
// part stale, and is retried with backoff; the index starts again from 0, since the agent may
// have restarted.
func (m *Mesh) follow(ctx context.Context, name string, st *partStatus, fetch func(*api.QueryOptions) error, index func() uint64) {
	c := &m.cfg.Consul
	wait := cmpOr(c.WaitTime, defaultWaitTime)
	qps := c.MaxQueryRate
	if qps == 0 {
		qps = defaultMaxQueryRate
	}
	rmin, rmax := cmpOr(c.RetryMin, defaultRetryMin), cmpOr(c.RetryMax, defaultRetryMax)
	limiter := rate.NewLimiter(rate.Limit(qps), 2)
	failures, idx := 0, index()
	for {
		if limiter.Wait(ctx) != nil {
			return
		}
		q := (&api.QueryOptions{WaitIndex: idx, WaitTime: wait}).WithContext(ctx)
		err := fetch(q)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			st.fail(err, time.Now())
			c.Logger.Warn("connect: query failed; keeping the last good value", "part", name, "error", err, "failures", failures)
			idx = 0
			if !backoff.Sleep(ctx, backoff.HalfJitter(rmin, rmax, failures)) {
				return
			}
			continue
		}
		failures = 0
		idx = max(index(), 1) // never block on 0
	}
}

var partName = [...]string{partLeaf: "leaf", partRoots: "roots", partIntentions: "intentions"}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// answerIndex is the index to store for an answer: the agent's, never 0 (a blocking query on
// 0 returns at once). One that went backwards (a restarted agent) is taken as it is.
func answerIndex(got uint64) uint64 { return max(got, 1) }

// fetchRoots asks for the CA roots and, when the answer is usable, installs them.
func (m *Mesh) fetchRoots(q *api.QueryOptions) error {
	list, meta, err := m.client.Agent().ConnectCARoots(q)
	if err != nil {
		return fmt.Errorf("connect: CA roots: %w", err)
	}
	if list == nil {
		return fmt.Errorf("connect: CA roots: empty answer")
	}
	ids, pems := make([]string, 0, len(list.Roots)), make([]string, 0, len(list.Roots))
	for _, r := range list.Roots {
		if r == nil {
			continue
		}
		ids, pems = append(ids, r.ID), append(pems, r.RootCertPEM)
	}
	rs, err := parseRoots(list.TrustDomain, ids, pems)
	if err != nil {
		return err
	}
	rs.index = answerIndex(meta.LastIndex)
	m.roots.Store(rs)
	m.status[partRoots].ok(rs.index)
	return nil
}

// fetchLeaf asks for the service's leaf certificate and, when usable, installs it.
func (m *Mesh) fetchLeaf(q *api.QueryOptions) error {
	leaf, meta, err := m.client.Agent().ConnectCALeaf(m.cfg.Service, q)
	if err != nil {
		return fmt.Errorf("connect: leaf certificate of %q: %w", m.cfg.Service, err)
	}
	if leaf == nil {
		return fmt.Errorf("connect: leaf certificate of %q: empty answer", m.cfg.Service)
	}
	ls, err := parseLeaf(leaf.CertPEM, leaf.PrivateKeyPEM, m.cfg.Service)
	if err != nil {
		return err
	}
	ls.index = answerIndex(meta.LastIndex)
	m.leaf.Store(ls)
	m.status[partLeaf].ok(ls.index)
	return nil
}

// fetchIntentions asks for the service-intentions config entries and, when they compile,
// installs those that apply to the service.
func (m *Mesh) fetchIntentions(q *api.QueryOptions) error {
	entries, meta, err := m.client.ConfigEntries().List(api.ServiceIntentions, q)
	if err != nil {
		return fmt.Errorf("connect: intentions: %w", err)
	}
	rs, err := compileEntries(entries, m.cfg.Service, m.rules.Load().defaultAllow)
	if err != nil {
		return err
	}
	rs.index = answerIndex(meta.LastIndex)
	m.rules.Store(rs)
	m.status[partIntentions].ok(rs.index)
	return nil
}
