# cita-node-operator — build, generate, verify, test.
#
# Tool binaries are cached outside the checkout, keyed by version, so a fresh
# clone (CI) reuses them: $(TOOLS_CACHE)/<tool>-<version>/.

SHELL := /usr/bin/env bash -o errexit -o nounset -o pipefail
.DEFAULT_GOAL := build

GO              ?= go
TOOLS_CACHE     ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/cita-node-operator/tools
CONTROLLER_GEN_VERSION := v0.23.0
CONTROLLER_GEN  := $(TOOLS_CACHE)/controller-gen-$(CONTROLLER_GEN_VERSION)/controller-gen
# The node's gRPC client (pkg/nodeapi): buf compiles the protos in Go, so no
# protoc binary is downloaded; the two plugins write the Go code.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
BUF                := $(TOOLS_CACHE)/buf-$(BUF_VERSION)/buf
PROTOC_GEN_GO      := $(TOOLS_CACHE)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLS_CACHE)/protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)/protoc-gen-go-grpc

VERSION         ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' charts/cita-node-operator/Chart.yaml)
IMAGE           ?= ghcr.io/cita-cloud/cita-node-operator:$(VERSION)
JOB_IMAGE       ?= ghcr.io/cita-cloud/cita-node-operator-job:$(VERSION)
CLOUD_OP_IMAGE  ?= docker.io/citacloud/cloud-op
CLOUD_OP_TAG    ?= v6.7.0

CRD_DIR         := manifests/crds
CHART_CRD_DIR   := charts/cita-node-operator/crds
PROTO_DIR       := pkg/nodeapi/proto
PROTO_GO_DIR    := pkg/nodeapi/internal/pb
GO_PACKAGES     := ./...

.PHONY: build
build: ## Build the operator and job binaries into bin/.
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/cita-node-operator ./cmd/cita-node-job

# Images without a Docker engine (hack/image): make build's binaries in one
# layer, as OCI image-layout tarballs for `ctr -n k8s.io images import`, named
# $(IMAGE) / $(JOB_IMAGE); PUSH=1 also pushes them there. The same binaries give
# the same digest. The job image's base is a registry image, or a local image
# tarball or OCI layout directory when CLOUD_OP_IMAGE is a path (then
# CLOUD_OP_TAG is not used). The Dockerfile builds the same images with Docker.
IMAGES_DIR      := bin/images
IMAGE_PUSH      = $(if $(filter 1,$(PUSH)),-push)
JOB_BASE        = $(if $(wildcard $(CLOUD_OP_IMAGE)),$(CLOUD_OP_IMAGE),$(CLOUD_OP_IMAGE):$(CLOUD_OP_TAG))

.PHONY: image
image: build ## The operator image (scratch, non-root) from bin/ into bin/images/operator.tar, tagged IMAGE; PUSH=1 pushes it.
	$(GO) run ./hack/image -preset operator -bin bin -tag $(IMAGE) -o $(IMAGES_DIR)/operator.tar $(IMAGE_PUSH)

.PHONY: image-job
image-job: build ## The Jobs' image: bin/cita-node-job on CLOUD_OP_IMAGE:CLOUD_OP_TAG (or a local image tarball) into bin/images/job.tar, tagged JOB_IMAGE; PUSH=1 pushes it.
	$(GO) run ./hack/image -preset job -bin bin -base $(JOB_BASE) -tag $(JOB_IMAGE) -o $(IMAGES_DIR)/job.tar $(IMAGE_PUSH)

.PHONY: tools
tools: ## Build (or reuse from the cache) etcd, kube-*, kubectl, kwok, helm into bin/.
	hack/tools/build.sh

$(CONTROLLER_GEN):
	GOBIN=$(dir $@) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

$(BUF):
	GOBIN=$(dir $@) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(PROTOC_GEN_GO):
	GOBIN=$(dir $@) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(PROTOC_GEN_GO_GRPC):
	GOBIN=$(dir $@) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# buf finds the plugins on PATH: the pinned ones come first. It writes each
# file at its go_package under the output root (buf.gen.yaml's module= option).
BUF_GENERATE = PATH="$(dir $(PROTOC_GEN_GO)):$(dir $(PROTOC_GEN_GO_GRPC)):$$PATH" \
	$(BUF) generate $(PROTO_DIR) --template $(PROTO_DIR)/buf.gen.yaml

.PHONY: generate
generate: generate-code generate-crds generate-proto ## Regenerate clients, deepcopy and CRDs from pkg/apis, and the node's gRPC client from its protos.

.PHONY: generate-code
generate-code:
	hack/update-codegen.sh

.PHONY: generate-crds
generate-crds: $(CONTROLLER_GEN)
	rm -f $(CRD_DIR)/*.yaml
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./pkg/apis/... output:crd:dir=$(CRD_DIR)
	rm -f $(CHART_CRD_DIR)/*.yaml
	cp $(CRD_DIR)/*.yaml $(CHART_CRD_DIR)/

.PHONY: generate-proto
generate-proto: $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) ## The node API's Go code (pkg/nodeapi/internal/pb) from pkg/nodeapi/proto.
	rm -rf $(PROTO_GO_DIR)
	$(BUF_GENERATE) --output .

.PHONY: verify
verify: verify-codegen verify-crds verify-proto verify-fmt vet ## Everything CI checks besides tests.

.PHONY: verify-codegen
verify-codegen:
	hack/verify-codegen.sh

.PHONY: verify-crds
verify-crds: $(CONTROLLER_GEN) ## CRDs match the Go types, and the chart holds the same files.
	scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./pkg/apis/... output:crd:dir=$$scratch; \
	diff -ru $$scratch $(CRD_DIR) || { echo "CRDs are out of date: run make generate" >&2; exit 1; }; \
	diff -ru $(CRD_DIR) $(CHART_CRD_DIR) || { echo "chart CRDs differ from $(CRD_DIR): run make generate" >&2; exit 1; }

.PHONY: verify-proto
verify-proto: $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) ## The node API's Go code matches its protos and the pinned plugins.
	scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	$(BUF_GENERATE) --output $$scratch; \
	mkdir -p $$scratch/$(PROTO_GO_DIR); \
	diff -ru $$scratch/$(PROTO_GO_DIR) $(PROTO_GO_DIR) || { echo "$(PROTO_GO_DIR) is out of date: run make generate-proto" >&2; exit 1; }

.PHONY: verify-fmt
verify-fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^hack/tools/')); \
	if [[ -n "$$out" ]]; then echo "gofmt needed:" >&2; echo "$$out" >&2; exit 1; fi

.PHONY: vet
vet:
	$(GO) vet $(GO_PACKAGES)

.PHONY: test
test: test-unit test-e2e test-realnode ## The README's test command: every test suite.

.PHONY: test-unit
test-unit: ## Unit tests (fake clientsets, real files); suites needing bin/ skip here.
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/)

.PHONY: test-e2e
test-e2e: tools node-tools build ## Suites on the real local control plane, kwok's nodes (required to run, never skipped).
	CITA_E2E_REQUIRED=1 CITA_REALNODE_REQUIRED=1 $(GO) test -count=1 -timeout 40m $$($(GO) list ./test/... | grep -v /test/realnode)

.PHONY: test-realnode
test-realnode: tools node-tools build ## The real-kubelet lane: the images and the chart on a real node (as root).
	CITA_REALNODE_REQUIRED=1 $(GO) test -count=1 -timeout 20m ./test/realnode/

.PHONY: node-tools
node-tools: ## A real node's kubelet (built, cached like tools) and containerd, runc, CNI plugins, busybox (apt, where missing).
	hack/tools/kubelet.sh
	hack/tools/node-runtime.sh

.PHONY: demo
demo: tools build ## Run the operator for real on a local control plane, apply the samples, print the results.
	hack/demo.sh up

.PHONY: demo-down
demo-down: ## Stop what make demo started.
	hack/demo.sh down

.PHONY: bench
bench: tools build ## The operator vs the floor on the real control plane, N=500: 2 rounds with real Jobs, 1 with instant Jobs (as root; ~20 min on 2 cores); report in bench/latest.md.
	$(GO) run ./test/bench -n $(or $(N),500) -rounds 2 -instant-rounds 1 -out bench/latest.md

.PHONY: bench-quick
bench-quick: tools build ## The same at N=50 (~1 min), printed only.
	$(GO) run ./test/bench -n 50 -rounds 2 -instant-rounds 1

.PHONY: bench-instant
bench-instant: tools build ## Only the round with instant Jobs (floor, contract floor, operator), N=50 unless N is given, printed only.
	$(GO) run ./test/bench -n $(or $(N),50) -rounds 0 -instant-rounds 1 -mixed-units 0 -stored 0

.PHONY: bench-data
bench-data: ## The Job's data work vs cp -a / sha256sum on a 2 GiB chain-like tree (root: drops caches).
	$(GO) run ./test/benchdata -dir /var/tmp/cita-bench-data -size 2GiB -runs 3

.PHONY: help
help:
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "%-16s %s\n", $$1, $$2}'
