# Shortcuts for the commands the README and docs/testing.md describe.
.PHONY: test integration lint bench ci

# Everything in-process: the README's test command.
test:
	go test -race ./...

# The same tests against real Kafka and Redis, started and stopped by the script.
integration:
	scripts/integration

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	go vet ./...
	staticcheck ./...

# Side-by-side comparisons; see docs/benchmarks.md.
bench:
	bench/run

ci:
	bash .ci/run
