#!/usr/bin/env bash
# Installs, where missing, what the real-node lane runs pods with besides the
# kubelet (hack/tools/kubelet.sh): Debian's containerd, runc and CNI plugins,
# and busybox-static (the shell and file tools of the test images' stand-in
# cloud-op). No daemon is started or enabled: test/localcluster runs
# containerd itself, with its own root, state and socket.
set -euo pipefail

need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || need+=(containernetworking-plugins)
[[ -x /bin/busybox ]] || need+=(busybox-static)
if [[ ${#need[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "[tools] the real-node lane needs ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
  exit 1
fi
echo "[tools] installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
