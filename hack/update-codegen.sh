#!/usr/bin/env bash
# Regenerates deepcopy functions and the typed clientset, listers and
# informers (with watch) under pkg/generated, with the code-generator version
# pinned in go.mod so the output matches the client-go it compiles against.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${ROOT}"
MODULE="$(go list -m)"
# go list names the module's directory only once it is in the module cache:
# on a fresh machine it is not until something downloads it.
go mod download k8s.io/code-generator
CODEGEN_PKG="$(go list -m -f '{{.Dir}}' k8s.io/code-generator)"

# kube_codegen.sh installs the generators into GOBIN; keep them out of the
# user's GOPATH/bin and next to the build cache instead.
export GOBIN="${GOBIN:-$(go env GOCACHE)/../cita-node-operator/codegen-bin}"
mkdir -p "${GOBIN}"

# shellcheck source=/dev/null
source "${CODEGEN_PKG}/kube_codegen.sh"

kube::codegen::gen_helpers \
  --boilerplate "${ROOT}/hack/boilerplate.go.txt" \
  "${ROOT}/pkg/apis"

kube::codegen::gen_client \
  --with-watch \
  --output-dir "${ROOT}/pkg/generated" \
  --output-pkg "${MODULE}/pkg/generated" \
  --boilerplate "${ROOT}/hack/boilerplate.go.txt" \
  "${ROOT}/pkg/apis"
