# hufu — build, test and measure. `make test` is the command CI runs (see .ci/run).
GO        ?= go
PKGS      ?= ./...
BIN       := bin
FUZZTIME  ?= 10s
BENCHTIME ?= 2s
STATICCHECK_VERSION := v0.8.2

.PHONY: all build test bench fuzz lint run clean

all: build

build:
	$(GO) build $(PKGS)

# The whole suite, with the race detector. Tests that need SoftHSM2 find it through
# softhsm.FindModule (HUFU_PKCS11_MODULE or the Debian locations).
test:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

bench:
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

run:
	@echo "make run arrives with the daemon (issue: the appliance daemon); nothing to run yet." >&2; exit 1

clean:
	rm -rf $(BIN)
