#!/usr/bin/env bash
# Runs every fuzz target of the module (every func FuzzX of every package), one after the
# other, for FUZZTIME each (default 10s): `make fuzz`, or `FUZZTIME=1m make fuzz`.
# `go test` already runs each target's seed corpus on every test run; this explores beyond it.
# A failure stops the run; go test writes the failing input under the package's
# testdata/fuzz/FuzzX/, where every later `go test` replays it.
# The targets are listed by `go test -list`, so a new Fuzz function is picked up by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
n=0
for pkg in $(go list ./...); do
	# A package whose tests do not build stops the run here, rather than being skipped.
	list=$(go test -list '^Fuzz' "$pkg")
	for target in $(printf '%s\n' "$list" | grep '^Fuzz' || true); do
		printf '==> %s %s (%s)\n' "$pkg" "$target" "$fuzztime" >&2
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
		n=$((n + 1))
	done
done
if [ "$n" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
printf '==> %d fuzz targets ran for %s each\n' "$n" "$fuzztime" >&2
