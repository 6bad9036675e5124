#!/usr/bin/env bash
# Sets up squall and renders the bundled example cluster into ./out, listing what it produced.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/squall render examples/cluster.toml --out out
