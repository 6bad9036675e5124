#!/usr/bin/env bash
# Installs what squall's demo and tests need on a fresh Debian machine, idempotently:
# Debian packages (real peers for the tests), then a virtualenv with pinned Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(ignition etcd-server etcd-client openssh-server iproute2 util-linux)
missing=()
for d in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "ok installed" || missing+=("$d")
done
# kubectl: any recent client reads kubeconfigs; Debian's is the fallback when none is present.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.squall-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: installing Python packages (pinned by constraints.txt)"
  # The build backend's warnings about editable installs are noise for a user.
  PYTHONWARNINGS=ignore .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
  touch "$stamp"
fi
