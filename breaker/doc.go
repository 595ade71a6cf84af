// Package breaker stops sending calls to an endpoint that keeps failing, and lets a few probe
// calls through after a pause to find out whether it has recovered.
//
// A [Breaker] is a circuit breaker built on failsafe-go's circuitbreaker, driven through its
// permit API rather than an executor. [Config] is the plain settings struct (loadable from YAML or
// JSON; its zero value means the defaults). A [Set] holds one Breaker per key, an endpoint address
// or a destination name, created lazily from one Config.
//
// On the request path a caller asks for a [Permit], makes the call, and reports its [Outcome]:
//
//	p, err := b.Allow()
//	if err != nil {
//		return err // errors.Is(err, breaker.ErrOpen); err is an *OpenError
//	}
//	resp, err := next.RoundTrip(req)
//	p.Done(outcome.FromHTTP(resp, err, cause, time.Time{}).Kind.Breaker())
//
// [Ignore] is the outcome for a call that says nothing about the endpoint, such as one the caller
// cancelled: it never counts as a failure, and a half-open probe that ends this way gives its slot
// to the next caller. A Permit remembers the generation of the state that issued it, so results
// that arrive after the breaker has changed state are dropped.
//
// The core is transport-agnostic. What a call's result means is the outcome vocabulary's
// (package outcome for HTTP, outcome/grpcoutcome for gRPC), computed once per attempt; its
// Kind.Breaker says what a breaker records. The gRPC status of a refusal is the gRPC side's:
// package breaker does not depend on gRPC. Wrapping these around a RoundTripper or an
// interceptor is the job of package middleware.
//
// Breakers start no goroutines and need no Close: the open-to-half-open transition happens lazily,
// on the first call after the open delay.
package breaker
