#!/usr/bin/env bash
# The whole life of a cluster against an emulated AWS on this machine: set up, start the
# emulated AWS, apply the example cluster, print its outputs, show that a second plan has
# nothing to do, destroy it, stop the emulated AWS. Nothing leaves 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

heading() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

heading "Setting up"
scripts/setup.sh

work=$(mktemp -d)
emulator_pid=""
cleanup() {
  if [ -n "$emulator_pid" ]; then kill "$emulator_pid" 2>/dev/null || true; wait "$emulator_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A copy keeps the cluster's state (keys, pinned AMIs) out of the source tree.
cp examples/cluster.toml "$work/cluster.toml"
config="$work/cluster.toml"
zone_id=$(sed -n 's/^dns_zone_id *= *"\(.*\)"/\1/p' "$config")
zone=$(sed -n 's/^dns_zone *= *"\(.*\)"/\1/p' "$config")

heading "Starting the emulated AWS (a moto server on 127.0.0.1)"
# The emulator gives the hosted zone the very id the example file names.
.venv/bin/python -m squall.emulator --zone "$zone=$zone_id" --env-file "$work/aws.env" </dev/null &
emulator_pid=$!
for _ in $(seq 150); do
  [ -s "$work/aws.env" ] && break
  kill -0 "$emulator_pid" 2>/dev/null || { echo "the emulated AWS failed to start" >&2; exit 1; }
  sleep 0.2
done
[ -s "$work/aws.env" ] || { echo "the emulated AWS did not start in time" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/aws.env"
echo "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL (zone $zone = $zone_id)"

squall=.venv/bin/squall

heading "squall apply --yes --no-bootstrap"
SECONDS=0
$squall apply "$config" --yes --no-bootstrap
echo "apply took ${SECONDS}s"

heading "squall outputs"
$squall outputs "$config"

heading "squall plan (a second run has nothing to do)"
$squall plan "$config"
changes=$($squall plan "$config" --json | .venv/bin/python -c 'import json,sys; print(len(json.load(sys.stdin)["changes"]))')
echo "changes in --json: $changes"
[ "$changes" = 0 ] || { echo "expected no changes" >&2; exit 1; }

heading "squall destroy --yes"
$squall destroy "$config" --yes

heading "squall plan after destroy (everything would be created again)"
$squall plan "$config" --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["summary"])'

heading "Stopping the emulated AWS"
kill "$emulator_pid"; wait "$emulator_pid" 2>/dev/null || true
emulator_pid=""
echo "done"
