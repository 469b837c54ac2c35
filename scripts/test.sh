#!/usr/bin/env bash
# Install what the tests need (scripts/setup.sh), lint (ruff), build the docs (mkdocs --strict) and run the
# whole test suite.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[test] ruff check"
.venv/bin/ruff check --quiet .
echo "[test] mkdocs build --strict (the docs site, offline: a broken reference fails)"
SITE=$(mktemp -d)
if ! DOCS_LOG=$(NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$SITE" 2>&1); then
  echo "$DOCS_LOG"; rm -rf "$SITE"; exit 1
fi
rm -rf "$SITE"
exec .venv/bin/python -m pytest -n 2 "$@"   # two workers: one per core of the reference machine
