# reconciler — build, test, demo, bench.
#
#   make build       static binary in bin/reconciler
#   make test        unit tests, then integration (real containerd, cgroup v2)
#                    and the pure cgroup v2 VM suite; needs root and the Debian
#                    packages containerd runc busybox-static qemu-system-x86
#                    linux-image-amd64 (CI=true makes missing ones a failure)
#   make demo        converge examples/hello on this machine and curl it
#   make demo-clean  undo make demo
#   make bench       reconciler vs direct containerd and podman (QUICK=1: smoke)
#   make lint        gofmt + go vet

GO      ?= go
BIN     := bin/reconciler
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
PKGS    := ./...

export CGO_ENABLED = 0

.PHONY: all build test test-unit test-integration test-vm demo demo-clean bench bench-go lint fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/reconciler
	$(GO) build -trimpath -o bin/testimage ./cmd/testimage

# One command for everything; go test runs packages two at a time on these
# 2-core machines. Integration and VM suites skip locally (with a message)
# when their prerequisites are missing, and fail instead under CI=true.
# The VM suite runs last and alone: its emulated CPUs would otherwise starve
# the timing-sensitive watch and daemon tests running beside it.
test:
	$(GO) test -count=1 -short -timeout 30m $(PKGS)
	$(GO) test -count=1 -timeout 20m -run TestPureCgroupV2 ./test/vm/

test-unit:
	$(GO) test -count=1 -short $(PKGS)

test-integration:
	$(GO) test -count=1 -timeout 30m ./test/integration/... ./pkg/ctr/... ./pkg/testenv/...

test-vm:
	$(GO) test -count=1 -timeout 15m -v -run TestPureCgroupV2 ./test/vm/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./pkg/manifest
	$(GO) test -run '^$$' -fuzz FuzzParseQuantity -fuzztime 30s ./pkg/apis/v1beta1

demo: build
	./hack/demo.sh

demo-clean:
	./hack/demo.sh clean

# make bench: the reconciler against the direct containerd client and podman,
# measured in the same run (bench/results.json); QUICK=1 for a < 3 min smoke.
bench:
	$(GO) run ./cmd/reconciler-bench $(if $(QUICK),--quick) --out bench/results.json

# Go micro-benchmarks of the loader, tree builder and runtime package.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/manifest ./pkg/hierarchy

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
