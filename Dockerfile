# Two images from one build:
#
#   docker build --target operator -t ghcr.io/cita-cloud/cita-node-operator:<version> .
#   docker build --target job      -t ghcr.io/cita-cloud/cita-node-operator-job:<version> .
#
# The job image is named ...-job, not ...-cita-node-job: the operator replaces
# the original project's cita-node-job image wherever a CR names it.
#
# Base images are pinned to specific tags; a release build can pin them further
# by digest (name:tag@sha256:...). linux/amd64 only: CITA-Cloud publishes its
# cloud-op image for linux/amd64 only.

# Where the job image takes cloud-op from: CITA-Cloud's cloud-op image. The job
# binary detects which cloud-op generation it carries (cloud-op --help), so an
# older one (e.g. v0.2.x for CITA-Cloud <= 6.6) works too.
ARG CLOUD_OP_IMAGE=docker.io/citacloud/cloud-op
ARG CLOUD_OP_TAG=v6.7.0

# ---- build: both binaries, static, exactly as `make build` builds them ----
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -o /out/ ./cmd/cita-node-operator ./cmd/cita-node-job

# ---- cloud-op, from CITA-Cloud's image (COPY --from cannot expand build args) ----
FROM ${CLOUD_OP_IMAGE}:${CLOUD_OP_TAG} AS cloudop

# ---- job: the operations' Jobs (cita-node-job + cloud-op) ----
# cloud-op is a Rust binary linked against glibc and libstdc++ (RocksDB): a
# Debian base carries both, and bookworm's glibc is at least as new as that of
# the Debian releases cloud-op images are built on.
FROM debian:12.11-slim AS job
# Path of the binary inside the cloud-op image.
ARG CLOUD_OP_PATH=/usr/bin/cloud-op
COPY --from=cloudop ${CLOUD_OP_PATH} /usr/local/bin/cloud-op
COPY --from=build /out/cita-node-job /usr/local/bin/cita-node-job
# Fail the build, not the first operation, if cloud-op cannot run on this base
# (a missing shared library shows here).
RUN cloud-op --help >/dev/null
# Root: the Job keeps every file's owner and chowns. The operator's Job spec
# drops every capability but those file work needs, and mounts no API token.
USER 0:0
ENTRYPOINT ["/usr/local/bin/cita-node-job"]

# ---- operator: static binary on distroless, non-root ----
FROM gcr.io/distroless/static-debian12:nonroot AS operator
COPY --from=build /out/cita-node-operator /cita-node-operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/cita-node-operator"]
