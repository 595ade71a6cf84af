// Package faultbackend provides a loopback HTTP server whose behaviour a test
// switches at run time, and which records what it saw, so tests assert on
// the server's view of retries, hedges, cancellations and connection reuse
// rather than on what the client believes.
//
// A [Backend] listens on 127.0.0.1 on a free port and answers every request
// with its current [Behavior]: a status code and body, a hang until the
// client gives up, a delay, a connection reset before or after the response
// headers, a plain close, or any custom handler. [Backend.Set] switches the
// behaviour and [Backend.FailNext] makes only the next n requests fail;
// both are safe for concurrent use while requests are in flight.
//
// The backend counts attempts (requests that reached it), new and active
// connections, and cancellations it observed (a hanging or slow request
// whose context ended), and records the method, path, headers and body
// SHA-256 of every request in arrival order. [Backend.Wait] blocks until
// the counters satisfy a condition, for assertions on things that happen
// after the client has already returned.
//
// In tests use [New] or [NewTLS], which register cleanup; other programs
// (the demo) use [Start] or [StartTLS] and call [Backend.Close].
//
//	b := faultbackend.New(t)
//	b.Set(faultbackend.Status(503).WithHeader("Retry-After", "1"))
//	resp, err := http.Get(b.URL() + "/x")
//	...
//	if got := b.Attempts(); got != 1 { ... }
package faultbackend
