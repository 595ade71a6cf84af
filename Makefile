.PHONY: test demo bench fuzz

# Installs and starts what the tests need (Redis, a Consul agent), then vets and tests.
test:
	./scripts/test.sh

# The main job: the demo on embedded defaults.
demo:
	go run ./examples/demo

bench:
	go test -run '^$$' -bench . -benchmem -count 5 ./...

# Runs every fuzz target of the module for FUZZTIME each (default 10s; FUZZTIME=1m make fuzz),
# listed by go test -list, so new targets need no edit here (go test runs their seed corpora
# on every test run). See scripts/fuzz.sh.
FUZZTIME ?= 10s
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh
