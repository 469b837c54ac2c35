#!/usr/bin/env bash
# Fill wheels/ (git-ignored) with the wheels scripts/device_check.sh installs on a device machine that has no
# network: the packages jdps and its checks import, with their dependencies, at the versions this checkout's
# .venv runs (pip freeze), less what the device already has (jax, jaxlib, flax, optax, orbax, tensorstore,
# numpy, scipy and their own dependencies), each by `pip download --no-deps` for the device's Python and
# platform. device_check.sh then installs, without dependencies, only the wheels whose package is missing there.
#
#   bash scripts/fetch_wheels.sh                       # for Python 3.12 on manylinux x86_64 (the device's)
#   DEVICE_PYTHON=3.11 bash scripts/fetch_wheels.sh    # another Python on the device
#
# The folder travels with the working tree (run's `carry`: 64 MiB in all), so only what the checks need is
# fetched: no TensorFlow or tensorflow-datasets (jdps imports tfds only to load its datasets), no matplotlib, no docs tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEVICE_PYTHON=${DEVICE_PYTHON:-3.12}
mkdir -p wheels

# the requirements, pinned: the closure of ROOTS over the installed packages' metadata, less the device's stack
mapfile -t PINS < <("$PY" - <<'EOF'
import re
from importlib import metadata

ROOTS = ["blackjax", "grain", "scikit-learn", "zarr", "pytest", "hypothesis", "tqdm"]
# on the device already (jax, flax, orbax, tensorstore and what they pull in)
DEVICE = {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorstore", "numpy", "scipy", "ml-dtypes",
          "opt-einsum", "chex", "msgpack", "rich", "typing-extensions", "pyyaml", "treescope", "etils", "protobuf",
          "absl-py", "toolz", "nest-asyncio", "humanize", "simplejson", "aiofiles", "fsspec", "importlib-resources",
          "zipp", "markdown-it-py", "mdurl", "pygments", "setuptools", "wheel", "pip"}
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
seen, todo = {}, list(ROOTS)
while todo:
    name = norm(todo.pop())
    if name in seen or name in DEVICE:
        continue
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    seen[name] = dist.version
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        todo.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
for name, version in sorted(seen.items()):
    print(f"{name}=={version}")
EOF
)
echo "fetching ${#PINS[@]} wheels for Python $DEVICE_PYTHON: ${PINS[*]}" >&2
for pin in "${PINS[@]}"; do
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest wheels \
    --python-version "$DEVICE_PYTHON" --implementation cp --abi "cp${DEVICE_PYTHON/./}" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any "$pin" || echo "warning: no wheel of $pin for Python $DEVICE_PYTHON" >&2
done
du -sh wheels >&2
