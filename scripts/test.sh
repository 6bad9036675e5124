#!/usr/bin/env bash
# Sets up (see setup.sh) and runs the whole test suite: lint, then pytest on both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest -n 2 "$@"
