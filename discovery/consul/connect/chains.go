package connect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/route"
)

// Chains follows the compiled discovery chains (/v1/discovery-chain/<service>) of the
// services a client calls, with blocking queries, and publishes them into a route.Router as
// one table: the local configuration's routes first (they take precedence), then each
// service's chain routes (service-router routes, service-splitter splits, service-resolver
// subsets, default subsets and redirects). Give the router to middleware.WithRoutes next to
// the Mesh's transport and resolver.
//
// A chain that cannot be compiled (see docs/consul-mesh.md for what is understood) or fetched
// keeps the service's last good routes, and Status says so. Create it with
// [Mesh.FollowChains]; Close stops it.
type Chains struct {
	m      *Mesh
	router *route.Router
	local  route.Config // immutable

	mu     sync.Mutex
	routes map[string][]route.RouteConfig // guarded by mu; by service
	status map[string]*partStatus         // immutable keys

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// FollowChains starts following the discovery chains of services and publishing them, with
// local, into router. It first publishes local alone (an error there is local's), then each
// chain as it arrives. Close the Chains before the Mesh.
func (m *Mesh) FollowChains(router *route.Router, local route.Config, services ...string) (*Chains, error) {
	if router == nil {
		return nil, errors.New("connect: FollowChains: router is nil")
	}
	if len(services) == 0 {
		return nil, errors.New("connect: FollowChains: no services")
	}
	c := &Chains{m: m, router: router, local: local, routes: map[string][]route.RouteConfig{}, status: map[string]*partStatus{}}
	for i, s := range services {
		if s == "" || s == "*" {
			return nil, fmt.Errorf("connect: FollowChains: services[%d] %q is not a service name", i, s)
		}
		c.status[s] = &partStatus{}
	}
	if err := router.Update(local); err != nil {
		return nil, fmt.Errorf("connect: FollowChains: local routes: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	for s := range c.status {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			var index uint64
			fetch := func(q *api.QueryOptions) error { return c.fetch(s, q, &index) }
			m.follow(ctx, "discovery chain of "+s, c.status[s], fetch, func() uint64 { return index })
		}()
	}
	return c, nil
}

// fetch asks for one service's chain and publishes it.
func (c *Chains) fetch(service string, q *api.QueryOptions, index *uint64) error {
	st := c.status[service] // follow marks it stale on an error
	resp, meta, err := c.m.client.DiscoveryChain().Get(service, nil, q)
	if err != nil {
		return fmt.Errorf("connect: discovery chain of %q: %w", service, err)
	}
	if resp == nil || resp.Chain == nil {
		return fmt.Errorf("connect: discovery chain of %q: empty answer", service)
	}
	routes, err := compileChain(resp.Chain)
	if err != nil {
		return err
	}
	if err := c.publish(service, routes); err != nil {
		return fmt.Errorf("connect: the route table with the discovery chain of %q: %w", service, err)
	}
	*index = answerIndex(meta.LastIndex)
	st.ok(*index)
	return nil
}

// publish installs service's routes and the merged table; a table the router refuses leaves
// the last good one.
func (c *Chains) publish(service string, routes []route.RouteConfig) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := c.local
	cfg.Routes = slices.Clone(c.local.Routes)
	services := make([]string, 0, len(c.status))
	for s := range c.status {
		services = append(services, s)
	}
	slices.Sort(services)
	for _, s := range services {
		rs := c.routes[s]
		if s == service {
			rs = routes
		}
		cfg.Routes = append(cfg.Routes, rs...)
	}
	if err := c.router.Update(cfg); err != nil {
		return err
	}
	c.routes[service] = routes
	return nil
}

// Status returns the state of each followed chain, by service.
func (c *Chains) Status() map[string]PartStatus {
	out := make(map[string]PartStatus, len(c.status))
	for s, st := range c.status {
		out[s] = st.get()
	}
	return out
}

// Close stops following the chains; the router keeps the last table. It is idempotent.
func (c *Chains) Close() error {
	c.once.Do(func() {
		c.cancel()
		c.wg.Wait()
	})
	return nil
}
