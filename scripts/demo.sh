#!/usr/bin/env bash
# The main job: install jdps and the data it needs (scripts/setup.sh; quiet when nothing changed), then
# `jdps demo`: BADS against uniform, meta_only, L2RW and MWN on MNIST 5k with 50% symmetric label noise,
# 5 seeds (about 3 minutes of compute on 2 cores). It prints progress, the table and the margin of BADS over uniform,
# and writes demo.md, demo.json and demo.png to the folder it prints (--out-dir, default demo_results/).
# Usage: bash scripts/demo.sh [jdps demo flags]      (bash scripts/demo.sh --help lists them with defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
  *" --help "*|*" -h "*) [ -x .venv/bin/jdps ] || bash scripts/setup.sh ;;
  *) bash scripts/setup.sh ;;
esac
exec .venv/bin/jdps demo "$@"
