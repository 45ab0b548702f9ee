#!/usr/bin/env bash
# Fails when the generated code differs from what hack/update-codegen.sh
# would write now: a changed file, a missing one, or a new one. It generates
# into a scratch copy of the tree, so it never touches the working tree.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "${SCRATCH}"' EXIT

tar -C "${ROOT}" --exclude=./.git --exclude=./bin --exclude=./_output -cf - . | tar -C "${SCRATCH}" -xf -
"${SCRATCH}/hack/update-codegen.sh" >/dev/null

status=0
for dir in pkg/generated pkg/apis; do
  if ! diff -Nru "${ROOT}/${dir}" "${SCRATCH}/${dir}"; then
    status=1
  fi
done
if [[ ${status} -ne 0 ]]; then
  echo "generated code is out of date: run hack/update-codegen.sh" >&2
fi
exit ${status}
