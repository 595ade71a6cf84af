// Package consul follows services in a Consul catalog and registers service instances in it.
//
// [Resolver] implements discovery.Resolver over Consul's health endpoint
// (/v1/health/service/<name>) with blocking queries, the way Consul's documentation asks of a
// well-behaved client: the index is reset when it goes backwards, a query never blocks on
// index 0, and the loop is rate limited so that a misbehaving agent cannot make it spin.
// Watchers fail static: when the agent is down, errors, answers something malformed, or
// suddenly answers an empty set, they keep serving the last good set and report that it is
// stale (see discovery.StatusReporter) until the empty set has been confirmed.
//
// Against a cluster of servers behind a client agent, watchers survive the leader's death and
// the agent's restart, retry with equal jitter so that a fleet does not return in a herd, and
// may read from any server (Config.AllowStale); [Watcher.WatchStatus] and [Resolver.Watches]
// report how fresh each answer was. The [Resolver] documentation gives the bounds.
//
// [Register] adds a service instance with an HTTP, TCP or TTL check and returns the function
// that removes it; [KeepPassing] keeps a TTL check passing until it is closed.
//
// [WatchChains] follows the compiled discovery chains of services (service-router,
// service-splitter and service-resolver config entries, /v1/discovery-chain/<service>) and
// the health their failovers depend on, and loads the routes and destination policies they
// compile to ([CompileChain]) into a middleware.Config, so a transport honours Consul's
// traffic rules without a sidecar.
package consul
