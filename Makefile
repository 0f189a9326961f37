# devo-aws-collector — see README.md.
GO       ?= go
BIN      := bin/devo-aws-collector
PKGS     := ./...
# rsyslogd (the integration tests' TLS receiver) lives in /usr/sbin, often not on a user's PATH.
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: all build demo emulator test vet staticcheck fmt-check deps bench fuzz clean image image-test

all: build

build:
	$(GO) build -o $(BIN) ./cmd/devo-aws-collector

## demo: run the collector end to end against a local AWS emulator (no account needed).
demo: build
	$(GO) run ./tools/demo -collector $(BIN)

## emulator: a local SQS+S3 emulator with the queues and bucket of examples/ and sample
## events in them; prints the endpoint and queue names, runs until Ctrl-C.
EMULATOR_PORT ?= 4566
emulator: deps
	$(GO) run ./tools/emulator -port $(EMULATOR_PORT)

## deps: what the integration tests need (Node 22 + fauxqs + dynalite from npm, rsyslog from apt). Idempotent.
deps:
	./scripts/deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

## staticcheck: the linter, at a pinned version fetched through the Go module proxy.
STATICCHECK_VERSION ?= v0.8.2
staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

## test: formatting, vet, staticcheck, and every test with the race detector.
test: deps fmt-check vet staticcheck
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

## bench: the go test benchmarks (and the S3 object benchmarks again on one core, three
## times: the in-process targets), then the end-to-end harness through the binary
## (tools/bench): CloudTrail and VPC Flow against the reference pipeline and the plain SDK
## loop, one large object of each, and a 1 GB backlog with the output down at the start.
## All of it goes into one markdown report under bench/results/. About 6 minutes on 2 cores;
## BENCH_SCENARIOS=cloudtrail,vpcflow skips the memory scenarios.
BENCH_OBJECTS ?= 200
BENCH_SCENARIOS ?= all
bench: deps build
	mkdir -p bench/results
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS) | tee bench/results/gotest-latest.txt
	$(GO) test -run='^$$' -bench='CloudTrailObject|VPCFlow' -benchtime 3s -cpu 1 -count 3 ./internal/source/s3sqs | tee -a bench/results/gotest-latest.txt
	$(GO) run ./tools/bench -collector $(BIN) -objects $(BENCH_OBJECTS) -scenarios $(BENCH_SCENARIOS) -gotest bench/results/gotest-latest.txt

## image: the container image from the Dockerfile (docs/deploy.md), with docker,
## podman or buildah, whichever can build here (buildah needs no daemon).
IMAGE   ?= devo-aws-collector:dev
VERSION ?= 0.1.0-dev
image:
	@if docker info >/dev/null 2>&1; then b="docker build"; \
	elif command -v podman >/dev/null 2>&1; then b="podman build"; \
	elif command -v buildah >/dev/null 2>&1; then b="buildah bud"; \
	else echo "make image: needs docker (with its engine), podman or buildah"; exit 1; fi; \
	echo "$$b --build-arg VERSION=$(VERSION) -t $(IMAGE) ."; $$b --build-arg VERSION=$(VERSION) -t $(IMAGE) .

## image-test: build the Dockerfile with buildah (no registry, no daemon) and check
## the image against the Kubernetes manifests; also part of make test.
image-test: deps
	$(GO) test -count=1 -run 'TestContainerImage|TestKubernetes|TestSystemdUnit' ./internal/e2e/

## fuzz: every format parser's fuzz target, FUZZTIME each (default 5m).
fuzz:
	./scripts/fuzz.sh

clean:
	rm -rf bin
