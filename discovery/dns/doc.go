// Package dns follows services through DNS SRV records.
//
// [Resolver] implements discovery.Resolver: each watched name (for example
// "_http._tcp.payments.example.com." or Consul's "payments.service.consul") is looked up every
// Config.Interval, its SRV targets resolved to addresses, and a changed set published. Like
// every proxyless watcher it fails static: a failed lookup, or a sudden empty answer not yet
// confirmed, leaves the last good set in place and marks it stale.
package dns
