// Package outcome is the one vocabulary for the result of an attempt: every attempt a
// proxyless client sends, over HTTP or gRPC, is classified once into an [Outcome], and every
// part that learns from results (the balancer and its outlier detection, the circuit
// breakers, the overload limiters, canary analysis, retries and telemetry) reads that
// classification through one table (see [Kind.Balancer], [Kind.Breaker], [Kind.Overload],
// [Kind.CanaryFailed], [Kind.SpanError]) instead of classifying the result again.
//
// The model is Envoy's outlier detection result: one enumeration every consumer reads.
//
// [FromHTTP] classifies an HTTP attempt; package outcome/grpcoutcome classifies a gRPC one.
// This package imports net/http but not gRPC.
package outcome
