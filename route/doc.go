// Package route decides, per request, where traffic goes and what happens to it on the way:
// matching on host, path, method, headers, query parameters and gRPC method; sending to a
// destination (a service and a subset of its endpoints), across a weighted split, or to a
// canary with trusted pinning, stickiness and automated analysis; per-route retry, hedge and
// timeout overrides; header and path rewrites; shadowing (mirroring) with a bounded
// fire-and-forget [Shadower]; and fault injection (delays and aborts) on the client and the
// server side.
//
// A declarative [Config] (YAML or JSON, see [ParseConfig]) compiles into an immutable
// [Table]; a [Router] publishes the current table through an atomic pointer, so lookups take
// no lock and allocate nothing, and [Router.Update] and [Router.Load] swap in new tables,
// refusing invalid ones and keeping the last good table. The subpackage route/reload feeds a
// Router from a file or a Consul KV key as the source changes.
//
// Per request, the caller (package middleware) does:
//
//	rq := route.FromHTTP(req)          // plus Key (JWT subject) and Identity when known
//	d, ok := router.Lookup(&rq)        // ok false: no route, pass through
//	// d.Destination (nil: the request's own host), d.Route.Timeout(), Retry(), Hedge(),
//	// d.Route.Fault().Inject(ctx), d.Route.RewriteRequest(clone),
//	// if d.Mirror { p := shadower.Mirror(clone, d.Route.Shadow()); defer p.Primary(resp, err) }
//	d.Done(route.Outcome{Latency: elapsed, Failed: failed})
package route
