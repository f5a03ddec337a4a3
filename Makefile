# airlock — build, test and demo. See README.md.
SHELL   := /bin/bash
GO      ?= go
PKG     := github.com/airlock-project/airlock
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X $(PKG)/cmd/internal/cliapp.Version=$(VERSION) -X $(PKG)/cmd/internal/cliapp.Commit=$(COMMIT)
PROGRAMS := airlock airlock-fetch airlock-server airlock-node
BIN     := bin

.PHONY: all build test check bench demo clean tools

all: build

# Static binaries: no cgo, nothing to install beside them.
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(PROGRAMS))

# The full test suite. Interoperability tests use the real gpg, tar and zstd.
test: tools build
	$(GO) test -count=1 ./...

# What must hold before every commit.
check: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt -l lists:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	@cp go.mod /tmp/airlock-go.mod.bak && cp go.sum /tmp/airlock-go.sum.bak && \
	  $(GO) mod tidy && \
	  if ! cmp -s go.mod /tmp/airlock-go.mod.bak || ! cmp -s go.sum /tmp/airlock-go.sum.bak; then \
	    echo "go mod tidy changed go.mod/go.sum: commit the tidy result"; exit 1; fi

# Throughput and peak memory, side by side with the shell pipeline peers.
bench: tools build
	./scripts/bench.sh

# The whole mission on loopback, from nothing, in temporary directories.
demo: build
	./scripts/demo.sh

# gpg, tar with zstd: the interoperability peers the tests run against.
tools:
	@./scripts/need-tools.sh

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
