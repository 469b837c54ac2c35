#!/usr/bin/env bash
# Install what the tests need (scripts/setup.sh) and run the whole test suite.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 "$@"   # two workers: one per core of the reference machine
