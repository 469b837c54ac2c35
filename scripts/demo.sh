#!/usr/bin/env bash
# The main job: install jdps and its data, list the datasets, then run experiment 1 (BADS denoising
# Fashion-MNIST at 60% symmetric label noise, against its baselines) at demo size and print the table.
# Usage: bash scripts/demo.sh            (the full experiments: python -m experiments.bads_denoise, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/jdps data
exec .venv/bin/python -m experiments.bads_denoise --demo "$@"
