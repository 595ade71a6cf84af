.PHONY: test demo bench fuzz

# Installs and starts what the tests need (Redis, a Consul agent), then vets and tests.
test:
	./scripts/test.sh

# The main job: the demo on embedded defaults.
demo:
	go run ./examples/demo

bench:
	go test -run '^$$' -bench . -benchmem -count 5 ./...

# Runs each fuzz target for a while (go test runs their seed corpora on every test run).
fuzz:
	go test -run '^$$' -fuzz FuzzEndpoints -fuzztime 30s ./discovery/consul/
	go test -run '^$$' -fuzz FuzzCompileChain -fuzztime 30s ./discovery/consul/
	go test -run '^$$' -fuzz FuzzParseSubsetFilter -fuzztime 30s ./discovery/consul/
