// Package discovery finds the endpoints of a service and follows them as they change.
//
// A [Resolver] watches one service by name; its [Watcher] yields a fresh endpoint set each time
// the set changes. [Static] is an in-memory resolver for tests, demos and fixed topologies;
// the subpackages consul and dns follow a Consul catalog and DNS SRV records. A [Cache] sits on
// top of any Resolver and publishes the newest set of every service it follows as an immutable
// [Snapshot] that readers load without a lock; the balancer and the middleware read through it.
//
// Watchers fail static: when their source is down or answers nonsense they keep serving the
// last good set and report, through [StatusReporter], that it is stale.
package discovery
