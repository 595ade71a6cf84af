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

# Runs each fuzz target for a while (go test runs their seed corpora on every test run).
fuzz:
	go test -run '^$$' -fuzz FuzzEndpoints -fuzztime 30s ./discovery/consul/
	go test -run '^$$' -fuzz FuzzCompileChain -fuzztime 30s ./discovery/consul/
	go test -run '^$$' -fuzz FuzzParseSubsetFilter -fuzztime 30s ./discovery/consul/
