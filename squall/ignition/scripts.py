"""Shell scripts squall puts on nodes. Each is static: what varies comes from its environment.

Keeping them free of substitutions means the same text runs on a node and in tests, where the
environment points it at a scratch root or a metadata service on loopback.
"""

from __future__ import annotations

# Reads this instance's identity for the kubelet. IMDSv2 only: a session token is PUT first
# and every read carries it, so the metadata service can require tokens with a hop limit of 1.
NODE_METADATA = r"""#!/bin/bash
# Writes the instance's zone, id and hostname from the EC2 metadata service (IMDSv2).
set -euo pipefail
imds=${IMDS_ENDPOINT:-http://169.254.169.254}
out=${METADATA_FILE:-/run/metadata/squall}
fetch() {
  curl --silent --show-error --fail --max-time 5 \
    --retry 60 --retry-delay 2 --retry-connrefused "$@"
}
token=$(fetch -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$imds/latest/api/token")
get() {
  local value
  value=$(fetch -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/$1")
  if [[ ! $value =~ ^[A-Za-z0-9.-]+$ ]]; then
    echo "node-metadata: unexpected $1: '$value'" >&2
    exit 1
  fi
  printf '%s' "$value"
}
zone=$(get placement/availability-zone)
id=$(get instance-id)
name=$(get local-hostname)
mkdir -p "$(dirname "$out")"
printf 'AWS_AVAILABILITY_ZONE=%s\nAWS_INSTANCE_ID=%s\nAWS_HOSTNAME=%s\n' \
  "$zone" "$id" "$name" >"$out.tmp"
mv -f "$out.tmp" "$out"
"""

# Moves the controller asset bundle into place. The destinations are a contract shared with
# the asset bundle and the static pods; LAYOUT_ROOT prefixes them (empty on a node).
LAYOUT = r"""#!/bin/bash
# Lays out the controller asset bundle copied to /home/core/assets, then removes it.
set -euo pipefail
shopt -s nullglob
root=${LAYOUT_ROOT:-}
src=${ASSETS_DIR:-$root/home/core/assets}
etcd_tls=$root/etc/ssl/etcd/etcd
pki=$root/etc/kubernetes/pki
static=$root/etc/kubernetes/manifests
cluster=$root/opt/bootstrap/assets
if [[ ! -d $src ]]; then
  echo "layout: no asset bundle at $src" >&2
  exit 1
fi
umask 077
mkdir -p "$etcd_tls" "$pki" "$static" "$cluster"

# An incomplete bundle stops here rather than start half a control plane.
place() {
  local dest=$1 f
  shift
  if (($# == 0)); then
    echo "layout: the bundle has nothing for $dest" >&2
    exit 1
  fi
  for f in "$@"; do
    mv -f "$f" "$dest/"
    case $f in
      *.key | *.conf) chmod 0600 "$dest/${f##*/}" ;;
      *) chmod 0644 "$dest/${f##*/}" ;;
    esac
    chown root:root "$dest/${f##*/}"
  done
}
place "$etcd_tls" "$src"/tls/etcd/server* "$src"/tls/etcd/peer*
place "$pki" "$src"/tls/etcd/etcd-client*
place "$pki" "$src"/tls/k8s/*
place "$pki" "$src"/auth/*
chmod 0700 "$etcd_tls" "$pki"
if getent passwd etcd >/dev/null; then
  chown -R etcd:etcd "$root/etc/ssl/etcd"
  if [[ -d $root/var/lib/etcd ]]; then chown -R etcd:etcd "$root/var/lib/etcd"; fi
fi
# The cluster manifests hold the bootstrap token: private to root.
rm -rf "$cluster/manifests"
mv "$src/manifests" "$cluster/manifests"
chown -R root:root "$cluster/manifests"
chmod -R go-rwx "$cluster/manifests"
# Last, because the kubelet starts static pods as soon as they appear.
place "$static" "$src"/static-manifests/*
if command -v selinuxenabled >/dev/null && selinuxenabled; then
  # Moved files keep the home directory's label; give them the one their place calls for,
  # then let containers (the control plane's static pods) read the PKI.
  restorecon -R "$root/etc/ssl/etcd" "$root/etc/kubernetes" "$root/opt/bootstrap"
  chcon -R -u system_u -t container_file_t "$pki"
fi
rm -rf "$src"
"""

# Runs inside the kubelet image, which carries kubectl. It talks to the local kube-apiserver
# (not the NLB, which only routes once the health checks pass) and checks its certificate
# against the cluster's API name. The tries are capped so that a manifest the API refuses
# fails the unit, with kubectl's complaint in its journal, well before squall stops waiting
# (120 failed tries 5 s apart: about 10 minutes).
APPLY = r"""#!/bin/bash
# Waits for kube-apiserver, then applies the cluster manifests; gives up after 120 failed tries.
set -uo pipefail
attempts=120
failed=0
k() {
  kubectl --kubeconfig=/etc/kubernetes/pki/admin.conf --server=https://127.0.0.1:6443 \
    --tls-server-name="$API_SERVER_NAME" "$@"
}
ready() { k --request-timeout=10s get --raw=/readyz >/dev/null; }
manifests() { k apply --server-side --force-conflicts --recursive --filename=/assets/manifests; }
# Both steps draw on one budget, so the whole script is bounded, not each step.
try() {
  until "$2"; do
    if ((++failed >= attempts)); then
      echo "bootstrap: gave up $1 after $failed failed tries" >&2
      exit 1
    fi
    echo "bootstrap: $1 (try $failed of $attempts failed)"
    sleep 5
  done
}
try "waiting for kube-apiserver" ready
try "applying the cluster manifests" manifests
"""
