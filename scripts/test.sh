#!/usr/bin/env bash
# The test command of README.md, and what CI runs (through .ci/run).
# On a fresh machine it installs and builds what the tests need, then vets and tests:
#   - Redis: Debian's redis-server, installed when missing;
#   - Consul: v1.14.11 (MPL-2.0), built from the tools/consul module into .cache/bin when no
#     binary of that version is cached there (about five minutes on two cores, once);
# and hands both paths to the tests through PROXYLESS_REDIS_BIN and PROXYLESS_CONSUL_BIN.
# Under CI=true a test that needs either and cannot find it fails; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
consul_version=1.14.11

log() { printf '==> %s\n' "$*" >&2; }

# Redis.
if ! command -v redis-server >/dev/null 2>&1; then
	log "installing Debian's redis-server"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
	# The package starts a system instance on 6379; the tests start their own on free ports.
	$sudo systemctl stop redis-server >/dev/null 2>&1 || $sudo service redis-server stop >/dev/null 2>&1 || true
fi
PROXYLESS_REDIS_BIN=$(command -v redis-server)
export PROXYLESS_REDIS_BIN

# Consul.
PROXYLESS_CONSUL_BIN=$root/.cache/bin/consul
if ! "$PROXYLESS_CONSUL_BIN" version 2>/dev/null | grep -q "^Consul v$consul_version\$"; then
	log "building Consul v$consul_version into .cache/bin (once; about five minutes on two cores)"
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
log "go vet ./..."
go vet ./...
log "go test -race -count=1 ./..."
go test -race -count=1 -timeout 15m ./...
