package connect

import (
	"sort"

	"github.com/proxyless/proxyless/middleware"
)

// The Mesh is the authorizer middleware.WithAuthorizer takes.
var _ middleware.Authorizer = (*Mesh)(nil)

// StatusSource returns a source for middleware.StatusHandler that shows what the Mesh (and
// chains, when given) follow from the agent, each as a "destination" without endpoints named
// "consul connect: leaf certificate", "... CA roots", "... intentions" and "... discovery
// chain of <service>", marked stale, with the time it became so, while the last good value is
// in use. Mesh endpoints themselves show under the Transport's own destinations.
func (m *Mesh) StatusSource(chains ...*Chains) middleware.StatusSource {
	return &meshStatus{m: m, chains: chains}
}

type meshStatus struct {
	m      *Mesh
	chains []*Chains
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
		names := make([]string, 0, len(cs))
		for n := range cs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, part("consul connect: discovery chain of "+n, cs[n]))
		}
	}
	return out
}

func part(name string, p PartStatus) middleware.DestinationStatus {
	return middleware.DestinationStatus{Service: name, Stale: p.Stale, StaleSince: p.Since}
}
