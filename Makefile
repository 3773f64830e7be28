# p2pd — see README.md. `make help` lists the targets.
GO        ?= go
BIN       := bin
FUZZTIME  ?= 30s
HUGE_GIB  ?= 10
PEER_RSS_SIZE ?= 4GiB
PKGS      := ./...

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## build p2pd and p2pctl into bin/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: test
test: ## run all tests with the race detector (what CI runs); installs iproute2 for the netns tests if missing
	./scripts/test-deps.sh
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

.PHONY: testbed
testbed: ## the fault scenarios at full size (40 peers in emulation, stalled peers included; minutes)
	$(GO) test -count=1 -timeout 60m -v -run 'TestKillFifth|TestTrackerOutage|TestOriginRestart|TestStalledPeers' ./testbed/emu -testbed.large

.PHONY: test-short
test-short: ## quick tests without -race, skipping the long ones
	$(GO) test -short -count=1 $(PKGS)

.PHONY: demo
demo: build ## tracker + origin + 20 peers: push 256 MiB, every peer pulls and verifies it
	$(BIN)/p2pd dev --peers 20 --demo 256MiB

.PHONY: demo-chunker
demo-chunker: build ## chunk a generated 1 GiB stream: manifest summary and throughput
	$(BIN)/p2pctl bench chunker --size 1GiB

.PHONY: bench
bench: build ## Go benchmarks, the chunker bench at 4 GiB, and a $(HUGE_GIB) GiB streaming test
	$(GO) test -run '^$$' -bench . -benchtime 20x $(PKGS)
	$(BIN)/p2pctl bench chunker --size 4GiB
	$(BIN)/p2pctl bench transfer --size 1GiB
	$(GO) test -count=1 -run '^TestHugeStream$$' -timeout 30m -v ./chunker -chunker.huge=$(HUGE_GIB)

.PHONY: peer-rss
peer-rss: ## peer RSS while it pulls, then serves, a PEER_RSS_SIZE blob (default 4GiB; needs 3x that in TMPDIR)
	GO=$(GO) ./scripts/peer-rss.sh $(PEER_RSS_SIZE)

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 30s); crashers land in testdata/fuzz as regression seeds
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
