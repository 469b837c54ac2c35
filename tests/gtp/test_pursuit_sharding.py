"""Every layout of A gives the same selection: rows sharded over 8 simulated CPU devices, one device, and A
streamed from a .npy memmap in row blocks. Indices identical (ties to the lowest index), floats within 1e-5.

XLA_FLAGS must be set before jax is imported, so the device runs are one small subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jdps.gtp import pursuit as pu
ROOT = Path(__file__).resolve().parents[2]
N, D, K = 1000, 16, 8
COPIES = [5, 300, 777]  # identical rows on shards 0, 2 and 6 (128 rows a shard)

SCRIPT = '''
import sys, numpy as np, jax
from jax.sharding import Mesh
sys.path.insert(0, sys.argv[2])
from test_pursuit_sharding import RUNS, problem
from jdps.gtp import pursuit as pu
a, b = problem()
out = {"devices": np.array(jax.device_count())}
for mesh_name, mesh in (("one", None), ("eight", Mesh(np.array(jax.devices()), ("data",)))):
    for name, run in RUNS.items():
        r = run(pu, a, b, mesh=mesh)
        out.update({f"{mesh_name}/{name}/indices": r.indices, f"{mesh_name}/{name}/weights": r.weights,
                    f"{mesh_name}/{name}/residual": np.array(r.residual_norm),
                    f"{mesh_name}/{name}/stop": np.array(r.stop_reason)})
np.savez(sys.argv[1], **out)
'''

RUNS = {
    "omp": lambda pu, a, b, **kw: pu.omp(a, b, K, **kw),
    "omp_signed": lambda pu, a, b, **kw: pu.omp(a, b, K, nonneg=False, **kw),
    "gradmatch": lambda pu, a, b, **kw: pu.gradmatch(a, b, K, **kw),
    "cosamp": lambda pu, a, b, **kw: pu.cosamp(a, b, K, **kw),
    "cosamp_signed": lambda pu, a, b, **kw: pu.cosamp(a, b, K, nonneg=False, **kw),
    "topk": lambda pu, a, b, **kw: pu.topk(a, b, K, **kw),
}


def problem():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(N, D)).astype(np.float32)
    b = rng.normal(size=D)
    a[COPIES] = (3 * b / np.linalg.norm(b) + 0.5 * rng.normal(size=D)).astype(np.float32)
    return a, b


@pytest.fixture(scope="module")
def device_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sharding")
    script, out = tmp / "run.py", tmp / "runs.npz"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    subprocess.run([sys.executable, str(script), str(out), str(Path(__file__).parent)], env=env, check=True,
                   timeout=600)
    return dict(np.load(out))


def assert_same(got, want):
    assert got[0].tolist() == want[0].tolist()
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-7)
    assert str(got[3]) == str(want[3])


def fields(runs, mesh, name):
    return tuple(runs[f"{mesh}/{name}/{f}"] for f in ("indices", "weights", "residual", "stop"))


@pytest.mark.parametrize("name", list(RUNS))
def test_eight_devices_match_one(device_runs, name):
    assert int(device_runs["devices"]) == 8
    one = fields(device_runs, "one", name)
    assert_same(fields(device_runs, "eight", name), one)
    chosen = [i for i in one[0] if i in COPIES]
    if name == "topk":
        assert chosen == COPIES  # every copy
    elif name == "cosamp_signed":
        assert chosen in ([], [5])  # signed CoSaMP may swap the strong row out again, but never takes two
    else:
        assert chosen == [5]  # one copy, the lowest index


@pytest.mark.parametrize("name", ["omp", "omp_signed", "cosamp", "topk"])
def test_memmap_streamed_in_blocks_matches_in_memory(device_runs, tmp_path, name):
    a, b = problem()
    np.save(tmp_path / "A.npy", a)
    mm = np.load(tmp_path / "A.npy", mmap_mode="r")
    assert isinstance(mm, np.memmap)
    r = RUNS[name](pu, mm, b, block_rows=3 * pu.BLOCK)  # 3 blocks, the last one partial
    assert_same((r.indices, r.weights, np.array(r.residual_norm), np.array(r.stop_reason)),
                fields(device_runs, "one", name))
