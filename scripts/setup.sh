#!/usr/bin/env bash
# Create (or reuse) .venv on Python >= 3.12, install jdps with its test and text extras, and install
# the offline datasets it uses (Debian packages, pip --no-deps packages, npm tarballs).
# Usage: bash scripts/setup.sh            (idempotent; a second run installs nothing new)
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local c
  for c in python3.12 python3.13 python3.14 "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 python3; do
    if command -v "$c" >/dev/null 2>&1 &&
       "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  echo "no Python >= 3.12 found: install one (e.g. 'pyenv install 3.12.1') and re-run" >&2
  return 1
}

quiet_pip() { grep -vE "^WARNING: Location .* is ignored" || true; }

if [ ! -x .venv/bin/python ] ||
   ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
  PY=$(find_python)
  echo "[setup] creating .venv with $($PY --version)"
  rm -rf .venv
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet_pip
fi

# A second run with nothing changed installs nothing and says so in one line: the stamp records the
# digest of what the install depends on (pyproject.toml, this script, the Python), and every dataset
# must still be present.
STAMP=.venv/.jdps-setup
WANT=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)-$(.venv/bin/python -V 2>&1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x .venv/bin/jdps ] &&
   .venv/bin/jdps data --check >/dev/null 2>&1; then
  echo "[setup] up to date: .venv, jdps[dev,text] and every dataset are installed"
  exit 0
fi

echo "[setup] installing jdps[dev,text]"
.venv/bin/python -m pip install -q -e ".[dev,text]" 2>&1 | quiet_pip
echo "[setup] installing the offline datasets"
.venv/bin/jdps install all
echo "$WANT" > "$STAMP"
