#!/usr/bin/env bash
# The test command of README.md, and what CI runs (through .ci/run).
# On a fresh machine it installs and builds what the tests need, then vets and tests:
#   - Redis: Debian's redis-server, installed when missing (and HAProxy, for the benchmark
#     harness's smoke test, and Chromium, to render the status page in one test);
#   - Consul: v1.14.11 (MPL-2.0), built from the tools/consul module into .cache/bin when no
#     binary of that version is cached there (5 to 15 minutes on two cores, once);
# and hands the paths to the tests through PROXYLESS_REDIS_BIN, PROXYLESS_CONSUL_BIN and
# PROXYLESS_CHROMIUM_BIN.
# Under CI=true a test that needs either and cannot find it fails; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
consul_version=1.14.11

log() { printf '==> %s\n' "$*" >&2; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_updated=""
apt_install() {
	if [ -z "$apt_updated" ]; then
		$sudo apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Redis, for the rate-limit tests (its path is exported below).
if ! command -v redis-server >/dev/null 2>&1; then
	log "installing Debian's redis-server"
	apt_install redis-server
	# The package starts a system instance on 6379; the tests start their own on free ports.
	$sudo systemctl stop redis-server >/dev/null 2>&1 || $sudo service redis-server stop >/dev/null 2>&1 || true
fi
# HAProxy, the sidecar stand-in of the benchmark harness's smoke test.
if ! command -v haproxy >/dev/null 2>&1; then
	log "installing Debian's haproxy"
	apt_install haproxy
	$sudo systemctl stop haproxy >/dev/null 2>&1 || $sudo service haproxy stop >/dev/null 2>&1 || true
fi
PROXYLESS_REDIS_BIN=$(command -v redis-server)
export PROXYLESS_REDIS_BIN

# Chromium, for the test that renders the status page in a headless browser.
if ! command -v chromium >/dev/null 2>&1; then
	log "installing Debian's chromium"
	apt_install chromium
fi
PROXYLESS_CHROMIUM_BIN=$(command -v chromium)
export PROXYLESS_CHROMIUM_BIN

# Consul.
PROXYLESS_CONSUL_BIN=$root/.cache/bin/consul
if ! "$PROXYLESS_CONSUL_BIN" version 2>/dev/null | grep -q "^Consul v$consul_version\$"; then
	log "building Consul v$consul_version into .cache/bin (once; 5 to 15 minutes on two cores)"
	mkdir -p "$root/.cache/bin"
	(cd tools/consul && go build -o "$PROXYLESS_CONSUL_BIN.tmp" github.com/hashicorp/consul)
	mv "$PROXYLESS_CONSUL_BIN.tmp" "$PROXYLESS_CONSUL_BIN"
fi
export PROXYLESS_CONSUL_BIN
log "redis: $PROXYLESS_REDIS_BIN; consul: $PROXYLESS_CONSUL_BIN ($("$PROXYLESS_CONSUL_BIN" version | head -1))"

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
	printf 'gofmt would change:\n%s\n' "$unformatted" >&2
	exit 1
fi
log "go mod tidy -diff"
go mod tidy -diff
# The go line is a language version (1.26 or 1.26.0), never a patch release that would force
# one on every user.
for mod in go.mod benchmarks/go.mod; do
	if ! grep -Eq '^go [0-9]+\.[0-9]+(\.0)?$' "$mod"; then
		printf '%s: the go line %s names a patch release\n' "$mod" "$(grep -E '^go ' "$mod")" >&2
		exit 1
	fi
done
log "GOARCH=386 go build ./..."
GOARCH=386 go build ./...
log "GOOS=darwin go vet ./..., GOOS=windows go vet ./..."
GOOS=darwin go vet ./...
GOOS=windows go vet ./...
log "go vet ./..."
go vet ./...
log "go test -race -count=1 ./..."
go test -race -count=1 -timeout 15m ./...
# The race detector changes allocation counts, so the tests that assert "allocates nothing"
# skip under -race: run them once more without it.
log "allocation checks, without the race detector"
go test -count=1 -run 'Alloc' ./balancer/ ./breaker/ ./ratelimit/ ./route/
log "benchmarks/ (its own module): go mod tidy -diff, go vet, and the harness's smoke test"
(cd benchmarks && go mod tidy -diff && go vet ./... && go test -race -count=1 -timeout 10m ./...)
