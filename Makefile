# mcpca: the two set-up commands are `make demo` and `make test`.
GO      ?= go
BIN     ?= bin
TESTFLAGS ?= -count=1 -timeout 45m

.PHONY: all build test demo bench bench-issue bench-replicas bench-gateway bench-oauth bench-storm storm rotation soak fuzz vet clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Every test, including the end-to-end tests that build and run the binaries,
# and the PostgreSQL ones (store backend, CA replicas) on a throwaway cluster
# of their own (internal/pgtest); without PostgreSQL installed they skip and
# say why, unless MCPCA_REQUIRE_POSTGRES=1 (.ci/run sets it).
test:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: the files above are not formatted"; exit 1; }
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) -skip '^TestInterop(Node|Gateway|OAuth)$$' ./...
	./scripts/interop-node/run.sh
	./scripts/interop-gateway/run.sh
	./scripts/interop-oauth/run.sh
	./scripts/check-consumer-deps.sh

# The main job: a CA, enrolment, renewal and revocation on embedded defaults.
demo: build
	./scripts/demo.sh

# go test benchmarks of the libraries.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Issuance throughput: mcpca versus upstream step-ca v0.30.2, same run.
bench-issue: build
	./scripts/bench-issue.sh

bench-storm: build
	go run ./scripts/bench-storm -mcpca bin/mcpca

# The long storm runs: 100,000 simulated agents, 500 real sources against a
# real `mcpca serve` (make test runs 10,000 and 200).
storm:
	MCPCA_STORM_AGENTS=100000 MCPCA_STORM_SOURCES=500 go test -count=1 -v -run 'TestStormSimulation|TestCLIRenewalStorm' ./agent/ ./cmd/mcpca/

# The long rotation run: 5 rounds of intermediate, root and retire under
# load against real processes (make test runs 1).
rotation:
	MCPCA_ROTATION_ROUNDS=5 go test -count=1 -v -run 'TestCLIRotationUnderLoad' ./cmd/mcpca/

# Certificates/s at 16 clients: one replica on bbolt, one and two on
# PostgreSQL, same run; PostgreSQL round trips per issuance.
bench-replicas: build
	./scripts/bench-replicas.sh

# The MCP gateway versus nginx as a plain mTLS proxy: same upstream, same run.
bench-gateway:
	./scripts/bench-gateway.sh

# Tokens/s at the CA's token endpoint (16 clients) and the cost of an API key check.
bench-oauth:
	./scripts/bench-oauth.sh

# The store's growth test at full length: 100,000 issuances with 5-minute
# tokens on an injected clock; the live records and the file stay bounded.
SOAK_ISSUANCES ?= 100000
soak:
	MCPCA_STORE_GROWTH=$(SOAK_ISSUANCES) $(GO) test -count=1 -run 'TestGrowthIsBounded' -v ./ca/store/

# A short run of every fuzz target (FUZZTIME=1m make fuzz for longer).
FUZZTIME ?= 10s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf $(BIN) demo
