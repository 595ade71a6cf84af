// Package overload keeps a service, or its callers, from taking on more work
// than it can finish: a fixed concurrency cap (bulkhead), an adaptive
// concurrency limit that follows latency (failsafe-go adaptivelimiter), and
// client-side adaptive throttling that backs off as the failure rate rises
// (failsafe-go adaptivethrottler, after the Google SRE book).
//
// All three implement [Limiter]: Acquire admits a call and returns the
// function that reports its [Outcome]; a refusal matches
// ratelimit.ErrLimited. They live apart from package ratelimit so that
// users of plain rate limits do not pull in failsafe-go.
package overload
