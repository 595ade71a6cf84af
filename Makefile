.PHONY: test demo bench bench-consul fuzz

# Installs and starts what the tests need (Redis, a Consul agent), then vets and tests.
test:
	./scripts/test.sh

# The main job: the demo on embedded defaults.
demo:
	go run ./examples/demo

bench:
	go test -run '^$$' -bench . -skip 'BenchmarkScale' -benchmem -count 5 ./...  # the Consul scale runs: make bench-consul

# Consul at scale: change-to-balancer latency, memory per endpoint and per service, queries per
# watcher, against a real agent (about 4 minutes; needs PROXYLESS_CONSUL_BIN, as make test sets).
bench-consul:
	go test -run '^$$' -bench 'BenchmarkScale' -benchtime 30x -count 2 ./discovery/consul/

# Runs every fuzz target of the module for FUZZTIME each (default 10s; FUZZTIME=1m make fuzz),
# listed by go test -list, so new targets need no edit here (go test runs their seed corpora
# on every test run). See scripts/fuzz.sh.
FUZZTIME ?= 10s
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh
