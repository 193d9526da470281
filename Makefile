# hufu — build, test and measure. `make test` is the command CI runs (see .ci/run).
GO        ?= go
PKGS      ?= ./...
BIN       := bin
FUZZTIME  ?= 10s
BENCHTIME ?= 2s
STATICCHECK_VERSION := v0.8.2

.PHONY: all build bins test proto bench bench-all fuzz lint run clean

all: build

build: bins
	$(GO) build $(PKGS)

# The version `hufud version`, `hufu version` and hufu_build_info report, stamped with -X
# because -buildvcs=false (GOFLAGS on some machines) or a build outside a checkout leaves
# the binaries no VCS information. Outside a checkout both are empty and the binaries say
# "(devel)"; `make bins VERSION=v1.2.0` overrides. Recursive (=), so git runs only when
# the binaries are built.
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   = -X github.com/hufu-hsm/hufu/buildinfo.version=$(VERSION) -X github.com/hufu-hsm/hufu/buildinfo.revision=$(REVISION)

bins:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The whole suite, with the race detector, then the check that the generated protobuf code
# is what the .proto files produce. Tests that need SoftHSM2 find it through
# softhsm.FindModule (HUFU_PKCS11_MODULE or the Debian locations). Then the alert rules in
# deploy/prometheus are checked and unit-tested with promtool, and the Grafana dashboard must
# be JSON (jq); a missing tool fails the target rather than skipping the check. Last, the
# operator's runbook (scripts/runbook.sh) and the README's JSON walk-through
# (scripts/json-walkthrough.sh: its curl commands as written, checked with jq) run against
# the built binaries.
test:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	scripts/proto.sh check
	@command -v promtool >/dev/null 2>&1 || { echo "make test: promtool not found; it checks deploy/prometheus. Install it: apt-get install prometheus (Debian), or put promtool from a https://prometheus.io/download/ release on PATH" >&2; exit 1; }
	@command -v jq >/dev/null 2>&1 || { echo "make test: jq not found; it checks deploy/grafana/hufu-dashboard.json. Install it: apt-get install jq" >&2; exit 1; }
	promtool check rules deploy/prometheus/hufu-alerts.yml
	promtool test rules deploy/prometheus/hufu-alerts_test.yml
	jq empty deploy/grafana/hufu-dashboard.json
	$(MAKE) --no-print-directory bins
	scripts/runbook.sh
	scripts/json-walkthrough.sh

# Regenerate the Go code of every .proto (buf and the plugins are pinned in tools/go.mod).
proto:
	scripts/proto.sh gen

# The server steps beside the raw gmsm operations, then the daemon under load over gRPC
# (scripts/bench.sh; reports in bench/out). bench-all runs every package's benchmarks.
bench: bins
	$(GO) test -run '^$$' -bench 'Raw|Server|ScalarWork' -benchmem -benchtime $(BENCHTIME) ./cosign/
	scripts/bench.sh

bench-all:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

# Runs every fuzz target for FUZZTIME each (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$target"; \
	    $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

# A development appliance in ./.hufu, asked for with -development (the built-in defaults are
# production): installs SoftHSM2 if it is missing, runs the idempotent `hufud init`, then
# serves in the foreground (Ctrl-C stops).
run: bins
	@command -v softhsm2-util >/dev/null 2>&1 || { \
	  echo "installing softhsm2 (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y softhsm2; else sudo apt-get update && sudo apt-get install -y softhsm2; fi; }
	$(BIN)/hufud init -development
	$(BIN)/hufud serve -development -log.format text

clean:
	rm -rf $(BIN)
