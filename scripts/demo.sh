#!/usr/bin/env bash
# The main job: install jdps and its data, check the datasets, and run a short training run on
# Fashion-MNIST. Usage: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/jdps demo "$@"
