#!/usr/bin/env bash
# Renders the Helm chart into manifests/install.yaml, the plain-kubectl install:
#
#   kubectl create namespace cita
#   kubectl apply --server-side -f manifests/crds/
#   kubectl apply -f manifests/install.yaml
#
# Default values, release cita-node-operator in namespace cita. CRDs are left
# out: they live in manifests/crds/. The namespace is left out too, on purpose:
# `kubectl delete -f manifests/install.yaml` must not delete a namespace that
# may also hold chain nodes or backups.
# test/packaging checks that the file is what this script renders.
#
# Usage: hack/render-manifests.sh [OUTPUT]   (default: manifests/install.yaml)
# Environment: HELM, the helm binary (default: bin/helm of the repository).
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
helm=${HELM:-$root/bin/helm}
out=${1:-$root/manifests/install.yaml}
namespace=cita
release=cita-node-operator

if [[ ! -x $helm ]]; then
	echo "helm not found at $helm: build it with hack/tools/build.sh or set HELM" >&2
	exit 1
fi

rendered=$("$helm" template "$release" "$root/charts/cita-node-operator" \
	--namespace "$namespace" --include-crds=false)

tmp=$(mktemp "$(dirname "$out")/.install.yaml.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
	cat <<HEADER
# cita-node-operator: plain-manifest install, rendered from charts/cita-node-operator
# by hack/render-manifests.sh (default values) — do not edit, re-render.
#
#   kubectl create namespace $namespace
#   kubectl apply --server-side -f manifests/crds/
#   kubectl apply -f manifests/install.yaml
#
# Operations in every namespace; 2 replicas with leader election in namespace
# $namespace (not created here: deleting this file's objects must not delete a
# namespace). To change values, install the chart with helm instead.
HEADER
	printf '%s\n' "$rendered"
} >"$tmp"
mv "$tmp" "$out"
trap - EXIT
