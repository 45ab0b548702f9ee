#!/usr/bin/env bash
# Builds the pinned binaries of the local control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok, helm) and links them
# into the repository's bin/, with kwok's stage files in bin/kwok-stages/.
#
# Binaries are cached outside the checkout so that a fresh clone (CI) or
# `git clean` does not pay the ~10 minute cold build again:
#   ${CITA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cita-node-operator/tools}/<name>-<version>-<recipe>
# <version> comes from hack/tools/go.mod (kwok: KWOK_VERSION below); <recipe> is a
# hash of this script, the tools module (go.mod, go.sum, etcd/main.go) and the Go
# version, so any change to what or how we build misses the cache instead of
# reusing a stale binary.
#
# Usage: hack/tools/build.sh [name...]   (default: all)
# Environment: CITA_BIN_DIR (default <repo>/bin, also read by test/localcluster),
# CITA_TOOLS_CACHE, TOOLS_BUILD_JOBS (parallel compiles, default 2).
set -euo pipefail

# kwok v0.8.0 is built with k8s.io/* v0.36; the tools module pins v0.37 for
# k8s.io/kubernetes, so kwok is built from its own module with `go install`.
KWOK_VERSION=v0.8.0

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TOOLS_DIR}/../.." && pwd)"
BIN_DIR="${CITA_BIN_DIR:-${REPO_ROOT}/bin}"
CACHE_DIR="${CITA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cita-node-operator/tools}"
ALL=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

# -p=2 bounds the memory of parallel compiles and links on small CI runners.
export GOFLAGS="-p=${TOOLS_BUILD_JOBS:-2} -trimpath ${GOFLAGS:-}"
export CGO_ENABLED=0

log() { printf '[tools] %s\n' "$*" >&2; }

# package path inside the tools module for each binary built there
pkg_of() {
  case "$1" in
    etcd) echo "github.com/cita-cloud/cita-node-operator/hack/tools/etcd" ;;
    helm) echo "helm.sh/helm/v3/cmd/helm" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) echo "k8s.io/kubernetes/cmd/$1" ;;
    *) return 1 ;;
  esac
}

load_versions() {
  # one `go list` for all three keeps the warm path fast
  local out
  out="$(cd "${TOOLS_DIR}" && go list -m -f '{{.Path}} {{.Version}}' \
    k8s.io/kubernetes go.etcd.io/etcd/server/v3 helm.sh/helm/v3)"
  K8S_VERSION="$(awk '$1=="k8s.io/kubernetes"{print $2}' <<<"${out}")"
  ETCD_VERSION="$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' <<<"${out}")"
  HELM_VERSION="$(awk '$1=="helm.sh/helm/v3"{print $2}' <<<"${out}")"
  RECIPE="$( (cat "${BASH_SOURCE[0]}" "${TOOLS_DIR}/go.mod" "${TOOLS_DIR}/go.sum" "${TOOLS_DIR}/etcd/main.go"
    go env GOVERSION) | sha256sum | cut -c1-10)"
}

version_of() {
  case "$1" in
    etcd) echo "${ETCD_VERSION}" ;;
    helm) echo "${HELM_VERSION}" ;;
    kwok) echo "${KWOK_VERSION}" ;;
    *) echo "${K8S_VERSION}" ;;
  esac
}

cache_path() {
  echo "${CACHE_DIR}/$1-$(version_of "$1")-${RECIPE}"
}

# ldflags for the tools module: strip symbols, and stamp the versions that a
# release build stamps (the binaries report them, e.g. the apiserver's /version,
# which helm checks against a chart's kubeVersion). -X of a variable a binary
# does not link is ignored, so one set serves every binary.
module_ldflags() {
  local k8s_minor flags=(-s -w)
  k8s_minor="$(cut -d. -f2 <<<"${K8S_VERSION}")"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=(-X "${pkg}.gitVersion=${K8S_VERSION}" -X "${pkg}.gitMajor=1" -X "${pkg}.gitMinor=${k8s_minor}"
      -X "${pkg}.gitTreeState=clean")
  done
  flags+=(-X "helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
    -X "helm.sh/helm/v3/internal/version.gitTreeState=clean"
    -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
    -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor}"
    -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
    -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8s_minor}")
  echo "${flags[*]}"
}

# link_into_bin puts the cached binary into bin/: a hard link when the cache is on
# the same filesystem, else a copy (a symlink would dangle if the cache is cleared).
link_into_bin() {
  local name="$1" src="$2"
  [[ "${BIN_DIR}/${name}" -ef "${src}" ]] && return 0
  mkdir -p "${BIN_DIR}"
  rm -f "${BIN_DIR}/${name}.tmp"
  ln "${src}" "${BIN_DIR}/${name}.tmp" 2>/dev/null || cp "${src}" "${BIN_DIR}/${name}.tmp"
  mv -f "${BIN_DIR}/${name}.tmp" "${BIN_DIR}/${name}"
}

# install_kwok_stages copies the stage files shipped in the kwok module (node,
# pod and volume lifecycles) to bin/kwok-stages/, keeping kwok's directory layout
# (e.g. pod/fast/pod-ready.yaml). test/localcluster reads them from there and
# adapts them, so the stages always match the kwok binary that runs them.
install_kwok_stages() {
  local cached="${CACHE_DIR}/kwok-stages-${KWOK_VERSION}"
  if [[ ! -f "${cached}/.complete" ]]; then
    local dir
    dir="$(cd "${TOOLS_DIR}" && GOFLAGS= go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "${dir}/kustomize/stage" ]] || { log "kwok stages not found in module dir '${dir}'"; exit 1; }
    rm -rf "${cached}"
    (cd "${dir}/kustomize/stage" && find . -name '*.yaml' ! -name kustomization.yaml ! -path '*/testdata/*' |
      while read -r f; do install -D -m 0644 "${f}" "${cached}/${f#./}"; done)
    touch "${cached}/.complete"
  fi
  rm -rf "${BIN_DIR}/kwok-stages"
  cp -r "${cached}" "${BIN_DIR}/kwok-stages"
}

# prune_cache removes the other builds of a tool just built, so that the cache
# (and a CI cache saved from it) holds one build per tool.
prune_cache() {
  local name="$1" keep
  keep="$(basename "$(cache_path "${name}")")"
  find "${CACHE_DIR}" -maxdepth 1 -type f -name "${name}-v*" ! -name "${keep}" -delete
}

tmp=""
cleanup() { [[ -z "${tmp}" ]] || rm -rf "${tmp}"; }
trap cleanup EXIT

main() {
  local names=("$@")
  [[ ${#names[@]} -eq 0 ]] && names=("${ALL[@]}")
  mkdir -p "${CACHE_DIR}" "${BIN_DIR}"
  load_versions

  local missing_mod=() missing_kwok="" name
  for name in "${names[@]}"; do
    [[ -n "$(version_of "${name}")" ]] || { log "no version for ${name}"; exit 1; }
    if [[ -x "$(cache_path "${name}")" ]]; then
      continue
    fi
    if [[ "${name}" == kwok ]]; then
      missing_kwok=1
    elif pkg_of "${name}" >/dev/null; then
      missing_mod+=("${name}")
    else
      log "unknown tool ${name} (known: ${ALL[*]})"
      exit 1
    fi
  done

  tmp="$(mktemp -d "${CACHE_DIR}/.build.XXXXXX")"
  if [[ ${#missing_mod[@]} -gt 0 ]]; then
    local pkgs=()
    for name in "${missing_mod[@]}"; do pkgs+=("$(pkg_of "${name}")"); done
    log "building ${missing_mod[*]} (cold build of the Kubernetes binaries takes ~10 min on 2 cores)"
    local start=${SECONDS}
    # One `go build` for all packages so shared dependencies compile once.
    (cd "${TOOLS_DIR}" && go build -ldflags="$(module_ldflags)" -o "${tmp}/" "${pkgs[@]}")
    for name in "${missing_mod[@]}"; do
      mv -f "${tmp}/${name}" "$(cache_path "${name}")"
      prune_cache "${name}"
    done
    log "built in $((SECONDS - start))s"
  fi
  if [[ -n "${missing_kwok}" ]]; then
    log "building kwok ${KWOK_VERSION}"
    GOBIN="${tmp}" go install -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
    mv -f "${tmp}/kwok" "$(cache_path kwok)"
    prune_cache kwok
  fi

  for name in "${names[@]}"; do
    link_into_bin "${name}" "$(cache_path "${name}")"
  done
  if [[ " ${names[*]} " == *" kwok "* ]]; then
    install_kwok_stages
  fi
  log "bin/: ${names[*]} (cache ${CACHE_DIR}, recipe ${RECIPE})"
}

main "$@"
