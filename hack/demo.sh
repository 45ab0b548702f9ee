#!/usr/bin/env bash
# make demo / make demo-down: run the operator for real on a local control
# plane in the background, and stop it.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DEMO_DIR="${DEMO_DIR:-/tmp/cita-node-operator-demo}"
PID_FILE="${DEMO_DIR}/demo.pid"
LOG="${DEMO_DIR}/demo.log"

running() { [[ -f "${PID_FILE}" ]] && kill -0 "$(cat "${PID_FILE}")" 2>/dev/null; }

down() {
  if running; then
    pid="$(cat "${PID_FILE}")"
    kill -TERM "${pid}"
    for _ in $(seq 1 60); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "${pid}" 2>/dev/null; then kill -KILL "${pid}"; fi
    echo "demo stopped"
  else
    echo "no demo running"
  fi
  rm -f "${PID_FILE}"
}

up() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "the demo runs Job pods in mount namespaces: run it as root" >&2
    exit 1
  fi
  running && down
  mkdir -p "${DEMO_DIR}"
  go build -o "${ROOT}/bin/cita-demo" "${ROOT}/test/demo"
  rm -f "${DEMO_DIR}/ready" "${PID_FILE}"
  # setsid: the demo outlives this make, and demo-down stops it; it writes
  # its own pid. Descriptors beyond stdio are closed so that nothing waiting
  # on this make's pipes waits for the demo too.
  (
    cd "${ROOT}"
    for fd in $(ls /proc/self/fd); do
      if [[ ${fd} -gt 2 ]]; then eval "exec ${fd}>&-" 2>/dev/null || true; fi
    done
    exec setsid "${ROOT}/bin/cita-demo" --work-dir "${DEMO_DIR}" --bin "${ROOT}/bin" --pid-file "${PID_FILE}" </dev/null >"${LOG}" 2>&1
  ) &
  for _ in $(seq 1 100); do [[ -s "${PID_FILE}" ]] && break; sleep 0.1; done
  tail -n +1 -f "${LOG}" --pid "$(cat "${PID_FILE}")" &
  tail_pid=$!
  until [[ -f "${DEMO_DIR}/ready" ]]; do
    if ! running; then
      kill "${tail_pid}" 2>/dev/null || true
      echo "demo failed: see ${LOG}" >&2
      exit 1
    fi
    sleep 0.5
  done
  kill "${tail_pid}" 2>/dev/null || true
  wait "${tail_pid}" 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
