package connect

import (
	"strings"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/middleware"
)

// The Mesh is the authorizer middleware.WithAuthorizer takes.
var _ middleware.Authorizer = (*Mesh)(nil)

// StatusSource returns a source for middleware.StatusHandler that shows what the Mesh (and
// chain watchers, when given) follow from the agent, each as a "destination" without
// endpoints named "consul connect: leaf certificate", "... CA roots", "... intentions" and
// "... discovery chains of <services>", marked stale, with the time it became so, while the
// last good value is in use. Mesh endpoints themselves show under the Transport's own
// destinations.
func (m *Mesh) StatusSource(chains ...*consul.ChainWatcher) middleware.StatusSource {
	return &meshStatus{m: m, chains: chains}
}

type meshStatus struct {
	m      *Mesh
	chains []*consul.ChainWatcher
}

// Stats is zero: the Mesh sends no requests of its own.
func (s *meshStatus) Stats() middleware.Stats { return middleware.Stats{} }

// Destinations lists the followed parts.
func (s *meshStatus) Destinations() []middleware.DestinationStatus {
	st := s.m.Status()
	out := []middleware.DestinationStatus{
		part("consul connect: leaf certificate", st.Leaf),
		part("consul connect: CA roots", st.Roots),
		part("consul connect: intentions", st.Intentions),
	}
	for _, c := range s.chains {
		cs := c.Status()
		name := "consul connect: discovery chains of " + strings.Join(c.Services(), ", ")
		out = append(out, middleware.DestinationStatus{Service: name, Stale: cs.Stale, StaleSince: cs.StaleSince})
	}
	return out
}

func part(name string, p PartStatus) middleware.DestinationStatus {
	return middleware.DestinationStatus{Service: name, Stale: p.Stale, StaleSince: p.Since}
}
