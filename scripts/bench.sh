#!/usr/bin/env bash
# Runs the hot-path benchmarks, each side by side with its baseline in one run, and prints
# benchstat summaries when benchstat is installed
# (go install golang.org/x/perf/cmd/benchstat@latest). Raw output goes to .cache/bench/.
#   scripts/bench.sh            # 10 runs each
#   COUNT=3 scripts/bench.sh    # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-10}
out=.cache/bench
mkdir -p "$out"
run() {
	local name=$1 pkg=$2 pattern=$3
	echo "==> $name ($pkg, -bench '$pattern', -count $count)" >&2
	go test -run '^$' -bench "$pattern" -benchmem -count "$count" "$pkg" | tee "$out/$name.txt" | grep -E '^Benchmark' >&2 || true
	if command -v benchstat >/dev/null 2>&1; then
		benchstat "$out/$name.txt"
	fi
}
run balancer ./balancer/ 'BenchmarkPickDone$|BenchmarkUpdate'
run breaker ./breaker/ 'BenchmarkAdmitRecord|BenchmarkGobreakerExecute|BenchmarkFailsafeExecutor'
run ratelimit ./ratelimit/ 'BenchmarkAllow|BenchmarkKeyedAllow'
run transport ./middleware/ 'BenchmarkWrapper|BenchmarkLoopback'
