package connect

import (
	"github.com/proxyless/proxyless/discovery/consul"
)

// WatchChains follows the compiled discovery chains of services (service-router,
// service-splitter and service-resolver config entries) through the Mesh's agent and loads
// the routes and destination policies they compile to into target, typically a
// middleware.Config given to the transport with middleware.WithConfig next to the Mesh's
// Transport and Resolver. It is [consul.WatchChains] with the Mesh's Consul configuration
// (agent, token, connections, logger) and Connect set: a failover is decided by the health of
// the mesh endpoints (/v1/health/connect/<service>), which are also where the Resolver finds
// each route's subset (the endpoints carry their service's tags and metadata).
//
// See consul.WatchChains for what is followed, how a local document takes precedence
// (consul.WithLocalDocument) and how a chain that cannot be followed is reported and the one in
// force kept. Close the watcher before the Mesh.
func (m *Mesh) WatchChains(services []string, target consul.ChainTarget, opts ...consul.ChainOption) (*consul.ChainWatcher, error) {
	cfg := m.cfg.Consul
	cfg.Connect = true
	return consul.WatchChains(cfg, services, target, opts...)
}
