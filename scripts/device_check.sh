#!/usr/bin/env bash
# The checks to run on a lent GPU (an H100 / H200), in under 4 minutes, each step under its own time limit
# (limits 20 + 55 + 55 + 35 + 20 + 45 = 230 s, so the script ends by then, whatever hangs; a step past its
# limit is recorded as timed out):
#
#   1. install   the packages the device lacks (blackjax, grain, tfds, scikit-learn, zarr, pytest, ...) from
#                wheels/ (filled beforehand by scripts/fetch_wheels.sh; no network on the device); jdps runs
#                from the working tree (PYTHONPATH=.)
#   2. tests     the tests that exercise the compiled kernels (pursuit, BADS kernel and SG-MCMC, curvature,
#                per-example gradients, the store), float32 matmuls at full precision
#   3. bads      scripts/bench_bads.py: BADS step / SGD step (goal on the GPU: <= 1.15)
#   4. pursuit   scripts/bench_pursuit.py --part large: OMP / CoSaMP / top-k at N = 2^20 held on the device; one
#                correlation pass's bandwidth against the device's (goal: >= 50%)
#   5. sklearn   scripts/bench_pursuit.py --part sklearn: OMP against scikit-learn's (goal: >= 10x faster)
#   6. influence scripts/bench_influence.py --synthetic --methods ekfac,identity --models mlp (random inputs of
#                Fashion-MNIST's shape; EK-FAC and TracIn on the MLP only: the other methods and the LM compile
#                for minutes)
#
# and writes experiments/results/device_check/ (each benchmark's tables and device_check.md: the device named,
# each step's status and seconds, the goals' figures), copied to $OUT when the device tool sets it.
#
#   bash scripts/device_check.sh                   # on the device (python3 there, or $PYTHON)
#   bash scripts/device_check.sh --cpu-smoke       # here: every step at smoke size on the CPU (.venv)
#   STEPS=pursuit,summary bash scripts/device_check.sh --cpu-smoke     # only some steps
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[[ "${1:-}" == "--cpu-smoke" ]] && SMOKE=1
STEPS=${STEPS:-install,tests,bads,pursuit,sklearn,influence,summary}
RESULTS=${DEVICE_RESULTS:-experiments/results/device_check}
rm -rf "$RESULTS"            # no figure of an earlier run may be read as this run's
mkdir -p "$RESULTS"
LOG="$RESULTS/steps.tsv"
: > "$LOG"
export PYTHONPATH=.
export JAX_DEFAULT_MATMUL_PRECISION=highest   # the tests' float32 tolerances (no TF32 on the GPU)
if (( SMOKE )); then
  PY=${PYTHON:-.venv/bin/python}
  export JAX_PLATFORMS=cpu
else
  PY=${PYTHON:-python3}
fi
START=$SECONDS

want() { [[ ",$STEPS," == *",$1,"* ]]; }

# step NAME LIMIT_SECONDS COMMAND...: run it under `timeout`, record status and seconds (a failure or a timeout is
# recorded and the next step runs: one slow step cannot use up the device time of the others)
step() {
  local name=$1 limit=$2; shift 2
  want "$name" || return 0
  (( SMOKE )) && limit=$((limit * ${SMOKE_SLOWDOWN:-6}))   # a shared CPU is far slower than the GPU
  local t0=$SECONDS
  echo "== $name (limit ${limit}s)" >&2
  timeout --kill-after=5 "$limit" "$@" > "$RESULTS/$name.log" 2>&1
  local rc=$?
  local status=ok
  (( rc == 124 || rc == 137 )) && status="timed out"
  (( rc != 0 && rc != 124 && rc != 137 )) && status="failed (exit $rc)"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" "$limit" >> "$LOG"
  echo "   $status in $((SECONDS - t0)) s" >&2
  tail -n 3 "$RESULTS/$name.log" >&2
}

install() {
  if [[ ! -d wheels ]] || ! ls wheels/*.whl > /dev/null 2>&1; then
    echo "no wheels/ folder: run scripts/fetch_wheels.sh beforehand where there is network (it is git-ignored and"\
         " travels with the working tree); trying with what is installed"
    return 0
  fi
  # only the wheels of packages missing there: never replace the device's own jax stack
  local missing
  mapfile -t missing < <("$PY" - wheels/*.whl <<'EOF'
import re
import sys
from importlib import metadata

for wheel in sys.argv[1:]:
    name = re.sub(r"[-_.]+", "-", wheel.rsplit("/", 1)[-1].split("-")[0]).lower()
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        print(wheel)
EOF
)
  echo "installing ${#missing[@]} wheels: ${missing[*]}"
  (( ${#missing[@]} == 0 )) || "$PY" -m pip install --no-index --no-deps --quiet "${missing[@]}"
}

if (( SMOKE )); then
  TESTS=(tests/gtp/test_pursuit.py -k "omp and not sharded")
  BADS_ARGS=(--repeats 1 --cnn-repeats 1)
  PURSUIT_ARGS=(--quick)
  INFLUENCE_ARGS=(--quick --synthetic --methods ekfac,identity --models mlp)
  step install 20 true
else
  TESTS=(tests/gtp/test_pursuit.py tests/bads/test_kernel.py tests/bads/test_sgmcmc.py
         tests/influence/test_curvature.py tests/gradients tests/test_store.py)
  BADS_ARGS=(--repeats 31 --cnn-repeats 9)
  PURSUIT_ARGS=()
  INFLUENCE_ARGS=(--synthetic --methods ekfac,identity --models mlp)
  step install 20 install
fi

step tests 55 "$PY" -m pytest -x -q -p no:randomly -p no:cacheprovider "${TESTS[@]}"
step bads 55 "$PY" scripts/bench_bads.py "${BADS_ARGS[@]}" --out "$RESULTS/bench_bads.md"
step pursuit 35 "$PY" scripts/bench_pursuit.py --part large "${PURSUIT_ARGS[@]}" --out "$RESULTS/bench_pursuit"
step sklearn 20 "$PY" scripts/bench_pursuit.py --part sklearn "${PURSUIT_ARGS[@]}" --out "$RESULTS/bench_pursuit"
step influence 45 "$PY" scripts/bench_influence.py "${INFLUENCE_ARGS[@]}" --out "$RESULTS/bench_influence"

if want summary; then
  "$PY" - "$RESULTS" "$SMOKE" "$((SECONDS - START))" <<'EOF'
"""device_check.md: the device, each step's status and time, and the goals' figures from the benchmarks' files."""
import json
import re
import sys
from pathlib import Path

import jax

results, smoke, total = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
device = jax.devices()[0]
name = device.device_kind
# peak memory bandwidth, bytes/s, of the devices this check is for (vendor data sheets)
PEAK = {"H200": 4.8e12, "H100 80GB HBM3": 3.35e12, "H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H100": 3.35e12,
        "A100-SXM4-80GB": 2.039e12, "A100-SXM4-40GB": 1.555e12}
peak = next((v for k, v in PEAK.items() if k.lower() in name.lower()), None)
lines = [f"# Device check on {name}" + (" (CPU smoke run: no GPU figures)" if smoke else ""), "",
         "Command: `bash scripts/device_check.sh" + (" --cpu-smoke`" if smoke else "`"), "",
         f"Device: {name} ({device.platform}, {jax.device_count()} device(s)), jax {jax.__version__}; "
         f"the script took {total} s.", "", "| step | status | seconds | limit s |", "|---|---|---|---|"]
for row in (results / "steps.tsv").read_text().splitlines():
    lines.append("| " + " | ".join(row.split("\t")) + " |")
lines += ["", "## Goals", ""]
bads = results / "bench_bads.md"
m = re.search(r"BADS step / plain SGD step: MLP ([0-9.]+).*?CNN ([0-9.]+)", bads.read_text()) if bads.exists() else None
lines.append(f"- BADS step / SGD step <= 1.15: MLP {m.group(1)}, CNN {m.group(2)} "
             f"({'met' if max(map(float, m.groups())) <= 1.15 else 'not met'})" if m else
             "- BADS step / SGD step: not measured (bench_bads did not finish)")
large = results / "bench_pursuit_large.json"
if large.exists():
    rows = [r for r in json.loads(large.read_text())["k"] if r["method"] == "omp"]
    rates = [r["N"] * r["Td"] * 4 / (r["seconds"] / r["iterations"]) for r in rows]
    best = max(rates)
    share = f", {best / peak:.0%} of the {peak / 1e12:.2f} TB/s peak ({'met' if best >= peak / 2 else 'not met'})" \
        if peak else " (peak bandwidth of this device unknown here)"
    lines.append(f"- One pursuit correlation pass >= 50% of the memory bandwidth: {best / 1e9:,.0f} GB/s a pass "
                 f"(OMP iteration time, the refit included: a lower bound on the pass's rate){share}")
else:
    lines.append("- Pursuit pass bandwidth: not measured (bench_pursuit --part large did not finish)")
sk = results / "bench_pursuit_sklearn.json"
if sk.exists():
    s = json.loads(sk.read_text())["sklearn"]
    speed = s["sklearn"] / s["ours_signed"]
    lines.append(f"- OMP >= 10x faster than scikit-learn's (N = {s['N']:,}, Td = {s['Td']}, k = {s['k']}): "
                 f"{speed:.1f}x ({'met' if speed >= 10 else 'not met'}), same support {s['same_support']}")
else:
    lines.append("- OMP against scikit-learn: not measured")
inf = results / "bench_influence.md"
lines.append(f"- Influence costs: {'see bench_influence.md' if inf.exists() else 'not measured'}")
(results / "device_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
fi
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
  cp -r "$RESULTS" "$OUT/"
fi
exit 0
