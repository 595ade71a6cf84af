#!/usr/bin/env bash
# Runs the whole comparison and writes the results to benchmarks/out/ (ignored by git):
#
#   out/machine.txt     the machine: nproc, CPU model, kernel, Go, HAProxy, load average
#   out/bench.txt       raw `go test -bench` output, every benchmark once per round
#   out/benchstat.txt   benchstat -col /impl: every contender next to its baseline
#   out/sidecar.json    the sidecar comparison (cmd/loadgen), every run
#   out/sidecar.md      its tables
#   out/summary.md      ratio tables for everything (cmd/plot)
#
# and redraws plots/*.svg (committed). Usage, from anywhere:
#
#   benchmarks/run.sh              # full: 10 rounds, about 6–8 minutes on 2 cores
#   QUICK=1 benchmarks/run.sh      # quick: 6 rounds, short runs, under 2 minutes
#   COUNT=20 BENCH='Pick|Update' SIDECAR=0 benchmarks/run.sh
#
# Environment: COUNT (runs per benchmark), BENCHTIME (go test -benchtime), BENCH (-bench
# regexp), SIDECAR=0 (skip the sidecar comparison), and for the sidecar: ROUNDS, DURATION,
# CONCURRENCY, MAX_REQUESTS.
set -euo pipefail
cd "$(dirname "$0")"
out=out
mkdir -p "$out" plots

if [[ "${QUICK:-0}" == 1 ]]; then
	count=${COUNT:-6} benchtime=${BENCHTIME:-50ms}
	rounds=${ROUNDS:-2} duration=${DURATION:-1s} warmup=100ms
else
	count=${COUNT:-10} benchtime=${BENCHTIME:-300ms}
	rounds=${ROUNDS:-5} duration=${DURATION:-3s} warmup=200ms
fi
concurrency=${CONCURRENCY:-1,8}
max_requests=${MAX_REQUESTS:-300000}

haproxy_bin=$(command -v haproxy || ls /usr/sbin/haproxy 2>/dev/null || true)
{
	echo "date:       $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "nproc:      $(nproc)"
	echo "cpu:        $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "kernel:     $(uname -sr)"
	echo "go:         $(go version)"
	if [[ -n $haproxy_bin ]]; then
		echo "haproxy:    $("$haproxy_bin" -v 2>&1 | sed -n 1p)"
	else
		echo "haproxy:    not installed"
	fi
	echo "loadavg:    $(cut -d' ' -f1-3 /proc/loadavg) (at start)"
	echo "commit:     $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- .. 2>/dev/null || echo ' (dirty)')"
	echo "bench:      $count × (go test -run '^\$' -bench '${BENCH:-.}' -benchmem -count 1 -benchtime $benchtime .)"
	echo "sidecar:    loadgen -rounds $rounds -duration $duration -warmup $warmup -concurrency $concurrency -max-requests $max_requests"
} | tee "$out/machine.txt" >&2

# 1. Go benchmarks, then benchstat. The test binary runs once per round, every benchmark once
#    per round, so that the machine's drift hits every contender alike (go test -count N would
#    run each benchmark N times in a row).
echo "==> go benchmarks ($count rounds, -benchtime $benchtime)" >&2
go test -c -o "$out/bench.test" .
: >"$out/bench.txt"
for round in $(seq "$count"); do
	echo "  round $round/$count" >&2
	"$out/bench.test" -test.run '^$' -test.bench "${BENCH:-.}" -test.benchmem -test.count 1 \
		-test.benchtime "$benchtime" -test.timeout 30m >>"$out/bench.txt"
done
grep -cE '^Benchmark' "$out/bench.txt" | sed 's/^/  benchmark lines: /' >&2

benchstat=$(command -v benchstat || true)
if [[ -z $benchstat ]]; then
	gobin=$(go env GOBIN)
	gobin=${gobin:-$(go env GOPATH)/bin}
	if [[ ! -x $gobin/benchstat ]]; then
		echo "==> installing benchstat into $gobin" >&2
		go install golang.org/x/perf/cmd/benchstat@latest
	fi
	benchstat=$gobin/benchstat
fi
# One table per top-level benchmark, its contenders (impl=) as columns, the first the baseline.
: >"$out/benchstat.txt"
for name in $(grep -oE '^Benchmark[A-Za-z0-9]+' "$out/bench.txt" | sed 's/^Benchmark//' | awk '!seen[$0]++'); do
	{ echo "### $name"; "$benchstat" -filter ".name:$name" -col /impl "$out/bench.txt"; echo; } >>"$out/benchstat.txt"
done
cat "$out/benchstat.txt"

# 2. The sidecar comparison.
if [[ "${SIDECAR:-1}" != 0 ]]; then
	setups=bare,proxyless,haproxy
	if [[ -z $haproxy_bin ]]; then
		if [[ "${CI:-}" == true ]]; then
			echo "haproxy is not installed (apt-get install -y haproxy); CI=true requires it" >&2
			exit 1
		fi
		echo "==> haproxy is not installed (apt-get install -y haproxy): comparing bare and proxyless only" >&2
		setups=bare,proxyless
	fi
	echo "==> sidecar comparison ($setups)" >&2
	go build -o "$out/loadgen" ./cmd/loadgen
	"$out/loadgen" -setups "$setups" -rounds "$rounds" -duration "$duration" -warmup "$warmup" \
		-concurrency "$concurrency" -max-requests "$max_requests" -out "$out"
fi

# 3. Plots and the ratio summary.
go run ./cmd/plot -in "$out" -plots plots
echo "==> done: $out/summary.md, plots/*.svg" >&2
