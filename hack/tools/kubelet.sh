#!/usr/bin/env bash
# Builds the kubelet of the pinned k8s.io/kubernetes (hack/tools/go.mod) for the
# real-node lane of test/localcluster, and links it into bin/. Cached like the
# other tools (build.sh):
#   ${CITA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cita-node-operator/tools}/kubelet-<version>-<recipe>
# <recipe> hashes this script, the tools module's go.mod and go.sum and the Go
# version.
#
# The kubelet imports packages whose modules the tools module's go.sum does
# not list (k8s.io/cri-streaming, ...). Adding them to the tools module would
# change build.sh's recipe and rebuild every other tool (~20 min cold), so the
# kubelet is built in a copy of the module, where `-mod=mod` may add them.
# -trimpath and CGO_ENABLED=0 as for the other tools: the shared dependencies
# then come from the warm build cache (~1.5 min instead of a cold build).
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TOOLS_DIR}/../.." && pwd)"
BIN_DIR="${CITA_BIN_DIR:-${REPO_ROOT}/bin}"
CACHE_DIR="${CITA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cita-node-operator/tools}"

export GOFLAGS="-p=${TOOLS_BUILD_JOBS:-2} -trimpath"
export CGO_ENABLED=0

log() { printf '[tools] %s\n' "$*" >&2; }

K8S_VERSION="$(cd "${TOOLS_DIR}" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
RECIPE="$( (cat "${BASH_SOURCE[0]}" "${TOOLS_DIR}/go.mod" "${TOOLS_DIR}/go.sum"
  go env GOVERSION) | sha256sum | cut -c1-10)"
cached="${CACHE_DIR}/kubelet-${K8S_VERSION}-${RECIPE}"

if [[ ! -x "${cached}" ]]; then
  mkdir -p "${CACHE_DIR}"
  work="$(mktemp -d "${CACHE_DIR}/.kubelet.XXXXXX")"
  trap 'rm -rf "${work}"' EXIT
  cp "${TOOLS_DIR}/go.mod" "${TOOLS_DIR}/go.sum" "${work}/"
  minor="$(cut -d. -f2 <<<"${K8S_VERSION}")"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
  done
  log "building kubelet ${K8S_VERSION} (~1.5 min with a warm build cache)"
  start=${SECONDS}
  (cd "${work}" && go build -mod=mod -ldflags="${ldflags}" -o "${work}/kubelet" k8s.io/kubernetes/cmd/kubelet)
  mv -f "${work}/kubelet" "${cached}"
  find "${CACHE_DIR}" -maxdepth 1 -type f -name "kubelet-v*" ! -name "$(basename "${cached}")" -delete
  log "built in $((SECONDS - start))s"
fi

mkdir -p "${BIN_DIR}"
if [[ ! "${BIN_DIR}/kubelet" -ef "${cached}" ]]; then
  rm -f "${BIN_DIR}/kubelet.tmp"
  ln "${cached}" "${BIN_DIR}/kubelet.tmp" 2>/dev/null || cp "${cached}" "${BIN_DIR}/kubelet.tmp"
  mv -f "${BIN_DIR}/kubelet.tmp" "${BIN_DIR}/kubelet"
fi
log "bin/: kubelet (cache ${CACHE_DIR}, recipe ${RECIPE})"
