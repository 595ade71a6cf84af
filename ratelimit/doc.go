// Package ratelimit decides whether a request may proceed now, so that a
// service or its clients stay within agreed rates and concurrency.
//
// It offers:
//
//   - [Local]: one lock-free token bucket for a process, with Allow and a
//     deadline-aware Wait.
//   - [Keyed]: one bucket per key (client IP, API key, JWT subject, route)
//     with per-key quotas and a hard bound on memory.
//
// Every refusal matches [ErrLimited]; a [Decision] carries what a server
// needs for the RateLimit-* and Retry-After headers. [Limiter] is what
// per-key limiters share: [Keyed], and the limiter of the subpackage
// ratelimit/redis, one bucket per key shared by every instance through
// Redis (GCRA in a Lua script), falling back to a local share of the rate
// when Redis is slow or down. Concurrency limits (fixed, adaptive) and
// client-side adaptive throttling live in the subpackage ratelimit/overload.
// The one piece that knows HTTP is [ClientIP] (clientip.go), a key function
// that trusts X-Forwarded-For only from configured proxies; the middleware
// package wires the limiters into transports, handlers and gRPC
// interceptors.
package ratelimit
