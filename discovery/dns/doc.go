// Package dns follows services through DNS SRV records.
//
// [Resolver] implements discovery.Resolver: each watched service is mapped to an SRV name by
// Config.NameTemplate, a template in which "{service}" stands for the service name (for example
// "{service}.service.consul." for Consul's DNS interface, or "_http._tcp.{service}.example.com."),
// looked up every Config.Interval, its SRV targets resolved to addresses, and a changed set
// published. With a template the resolver serves a mesh client on its own:
//
//	r, err := dns.New(dns.Config{NameTemplate: "{service}.service.consul.", Server: "127.0.0.1:8600"})
//	tr, err := middleware.NewTransport(nil, middleware.WithResolver(r))
//	// http://payments/ is looked up as payments.service.consul.
//
// Without a template the service name is the SRV name itself. Like every proxyless watcher
// it fails static: a failed lookup, or a sudden empty answer not yet confirmed, leaves the
// last good set in place and marks it stale. A name with no records is an empty set, not an
// unknown service, so the transport cannot tell a misspelt service at load: it looks routed
// services up in the background and logs those without endpoints.
package dns
