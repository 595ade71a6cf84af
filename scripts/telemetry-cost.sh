#!/usr/bin/env bash
# Prints what proxyless's telemetry adds with the OpenTelemetry SDK (always-sample), beyond the
# otelhttp span it uses for each attempt, as a ratio of what otelhttp alone adds, per round
# and the median, from middleware's BenchmarkTelemetryCost (see its doc):
#
#   ratio = ((proxyless/sdk - off/global-noop) - (otelhttp/sdk - bare)) / (otelhttp/sdk - bare)
#
# Usage: scripts/telemetry-cost.sh [rounds]   (default 10; each round runs every case once)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10}
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
go test -c -o "$bin" ./middleware/
for _ in $(seq "$rounds"); do
	"$bin" -test.run '^$' -test.bench 'BenchmarkTelemetryCost' -test.benchmem -test.count 1 |
		awk '/^BenchmarkTelemetryCost\// {sub(/^BenchmarkTelemetryCost\//, "", $1); sub(/-[0-9]+$/, "", $1); printf "%s=%s ", $1, $3} END {print ""}'
done | awk '{
	for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	otel = v["otelhttp/sdk"] - v["bare"]
	ours = (v["proxyless/sdk"] - v["off/global-noop"]) - otel
	r[NR] = ours / otel
	printf "round %2d: bare %6.0f ns  off %6.0f ns  otelhttp+sdk %7.0f ns  proxyless+sdk %7.0f ns  ->  proxyless adds %5.0f ns = %.2fx what otelhttp adds (%5.0f ns)\n", NR, v["bare"], v["off/global-noop"], v["otelhttp/sdk"], v["proxyless/sdk"], ours, r[NR], otel
} END {
	n = NR
	for (i = 2; i <= n; i++) { x = r[i]; for (j = i - 1; j >= 1 && r[j] > x; j--) r[j + 1] = r[j]; r[j + 1] = x }
	med = (n % 2) ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
	printf "median %.2fx over %d rounds (min %.2fx, max %.2fx); target <= 0.50x\n", med, n, r[1], r[n]
}'
