"""Every stage on a mesh and across processes (jdps.distributed) gives the one-device results.

One subprocess with 8 simulated CPU devices runs the five stages of tests/multihost_stages.py on one
device and on the 8-device mesh (XLA dumping the compiled steps), and features and EK-FAC influence on a
4 x 2 ('data', 'model') mesh (parameters and factors split over 'model'); at the same time 2 processes,
each with 2 simulated devices, run them on loopback as one
4-device jax.distributed run (ports from binding port 0). Tolerance: floats within rtol 1e-5 of the
largest magnitude of each result (sums are reassociated across shards), indices and labels identical.
"""

import fcntl
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jdps import distributed as dist
from jdps.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
STAGES = Path(__file__).with_name("multihost_stages.py")
PER_EXAMPLE_STEPS = ("_vmap_step", "_batch_sums", "jvp_scores", "_jvp_score", "_gradients", "_gradient_sum")
OTHER_STEPS = ("epoch", "_sharded_kmeans", "run_device", "device_norms")

EIGHT = '''
import sys, tempfile, numpy as np
sys.path.insert(0, sys.argv[2])
from multihost_stages import stages, problem, F, C
from jdps import distributed as dist
from jdps import gtp, influence
from jdps.influence import ihvp
from jdps.models.build import build_task
one = stages(None, tempfile.mkdtemp())
eight = stages(dist.make_mesh(), tempfile.mkdtemp())
train, _, query = problem()
task, params = build_task("mlp", (F,), C, seed=0, hidden=(8,))
mesh = dist.make_mesh(model=2)
features = gtp.fit(task, [params], train, d=8, key=0, batch_size=16, mesh=mesh).features
fitted = influence.fit(task, params, train, ihvp=ihvp.ekfac(1e-3, key=0), batch_size=16, mesh=mesh)
split = [k for k, f in fitted.state.items() if "model" in str(f["qg"].sharding.spec)]
scores = influence.query_scores(fitted, query, train, batch_size=16)
np.savez(sys.argv[1], **{f"one/{k}": v for k, v in one.items()}, **{f"eight/{k}": v for k, v in eight.items()},
         model_features=np.asarray(features), model_scores=scores, model_split=np.array(len(split)))
'''


def _env(devices: int, **extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "JDPS_PROGRESS": "0",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def runs(tmp_path_factory, worker_id):
    """{'eight': npz of the 1- and 8-device runs, 'two': npz of the 2-process run, 'dump': HLO folder},
    computed once for every xdist worker (the first takes a lock, the others read its files)."""
    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    done = shared / "distributed_runs.json"
    with open(shared / "distributed_runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            done.write_text(json.dumps(_run_all(shared / "distributed_runs")))
    return json.loads(done.read_text())


def _run_all(tmp: Path) -> dict:
    tmp.mkdir()
    dump = tmp / "hlo"
    steps = "|".join(re.escape(s) for s in PER_EXAMPLE_STEPS + OTHER_STEPS)
    (tmp / "eight.py").write_text(EIGHT)
    flags = f" --xla_dump_to={dump} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=jit_({steps})"
    eight = subprocess.Popen([sys.executable, str(tmp / "eight.py"), str(tmp / "eight.npz"), str(STAGES.parent)],
                             env=_env(8, XLA_FLAGS=f"--xla_force_host_platform_device_count=8{flags}"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = _free_port()
    two = [subprocess.Popen([sys.executable, str(STAGES), str(tmp / "two.npz"), str(tmp / "work"),
                             "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                            env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    for p in [eight, *two]:
        try:
            out, _ = p.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            for q in [eight, *two]:
                q.kill()
            pytest.fail("a distributed run did not finish within 900 s")
        assert p.returncode == 0, out.decode()[-3000:]
    return {"eight": str(tmp / "eight.npz"), "two": str(tmp / "two.npz"), "dump": str(dump)}


def assert_same(got: dict, want: dict, keys) -> None:
    for k in keys:
        a, b = np.asarray(got[k]), np.asarray(want[k])
        assert a.shape == b.shape, k
        if b.dtype.kind == "f":
            scale = max(float(np.abs(b).max()), 1e-12)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale, err_msg=k)
        else:
            np.testing.assert_array_equal(a, b, err_msg=k)


def _stage_keys(npz, prefix: str) -> list[str]:
    return [k[len(prefix):] for k in npz.files if k.startswith(prefix)]


def test_eight_devices_match_one(runs):
    r = np.load(runs["eight"])
    one = {k: r[f"one/{k}"] for k in _stage_keys(r, "one/")}
    eight = {k: r[f"eight/{k}"] for k in _stage_keys(r, "eight/")}
    assert {"bads/weights", "features/A", "pursuit/indices", "influence/scores", "quad/indices"} <= set(one)
    assert_same(eight, one, one)
    # the one-device results are not trivial: weights moved, the pursuit and Quad selected examples
    assert np.ptp(one["bads/weights"]) > 1e-3 and len(one["pursuit/indices"]) == 6 and len(one["quad/indices"]) >= 1
    np.testing.assert_array_equal(one["bads/resumed_weights"], one["bads/weights"])
    # a ('data', 'model') = 4 x 2 mesh: the hidden layer's columns and the EK-FAC factors split over 'model'
    np.testing.assert_allclose(r["model_features"], one["features/A"][:, :8], rtol=1e-5, atol=1e-6)
    assert int(r["model_split"]) >= 1
    assert_same({"s": r["model_scores"]}, {"s": one["influence/query_scores"]}, ["s"])


def _all_gathers(dump: str) -> dict[str, list]:
    found = {}
    for f in Path(dump).glob("*after_optimizations.txt"):
        name = re.sub(r"^module_\d+\.jit_", "", f.name).split(".")[0]
        found.setdefault(name, []).extend(dist.all_gathers(f.read_text()))
    return found


def test_no_step_all_gathers_a_per_example_array(runs):
    from tests.multihost_stages import BATCH, N

    found = _all_gathers(runs["dump"])
    assert set(PER_EXAMPLE_STEPS) <= set(found), sorted(found)   # every step was compiled for the mesh
    assert {"epoch", "_sharded_kmeans", "run_device"} <= set(found)
    for step in PER_EXAMPLE_STEPS:     # gradients, features, scores and factor sums of a batch: no all-gather
        # yields the batch's or the pool's rows (on the 8-device mesh none at all; the 4 x 2 mesh's 'model' axis
        # gathers a parameter's columns, for the BATCH / 4 rows one data shard holds: tensor parallelism)
        assert not [s for s, _ in found[step] if BATCH in s or N in s], (step, found[step])
    pursuit_rows = -(-N // 1024) * 1024  # the pursuit's rows, padded to whole 128-row blocks on 8 shards
    for step in OTHER_STEPS:
        assert not [s for s, _ in found.get(step, []) if N in s or pursuit_rows in s], (step, found[step])
    assert any(found[s] for s in ("epoch", "_sharded_kmeans", "run_device"))  # the parser does see all-gathers


def test_two_processes_match_one(runs):
    two, r = np.load(runs["two"]), np.load(runs["eight"])
    assert int(two["processes"]) == 2 and int(two["devices"]) == 4
    keys = [k for k in two.files if k not in ("processes", "devices")]
    one = {k: r[f"one/{k}"] for k in keys}
    assert_same({k: two[k] for k in keys}, one, keys)
    # the resumed run restored every process's shards of the saved global state: the same weights
    np.testing.assert_array_equal(two["bads/resumed_weights"], two["bads/weights"])


def test_settings_are_checked_before_jax_starts(monkeypatch):
    for name in dist.ENV.values():
        monkeypatch.delenv(name, raising=False)
    assert dist.check_settings(None, None, None) is False
    assert dist.check_settings("10.0.0.1:8476", 2, 1) is True
    for bad, says in [(("10.0.0.1:8476", 2, None), "--process-id missing"),
                      (("10.0.0.1", 2, 0), "HOST:PORT"),
                      (("h:8476", 2, 2), "[0, 2)"),
                      (("h:8476", 0, 0), "at least 1")]:
        with pytest.raises(InputError, match=re.escape(says)):
            dist.check_settings(*bad)
    monkeypatch.setenv("JDPS_COORDINATOR", "h:1")
    monkeypatch.setenv("JDPS_NUM_PROCESSES", "2")
    monkeypatch.setenv("JDPS_PROCESS_ID", "1")
    assert dist.check_settings(None, None, None) is True and not dist.writer_before_init()


def test_all_gather_shapes_are_read_from_hlo_text():
    text = """
  %all-gather.3 = f32[64,5]{1,0} all-gather(%p), channel_id=1, replica_groups=[1,8]<=[8], dimensions={0}
  %ag = (s32[16]{0}, f32[8]{0}) all-gather-start(%a), dimensions={0}
  %all-gather.9 = f32[4,5,8]{2,1,0} all-gather(%q), replica_groups=mesh['data'=4,'model'=2] {'model'}, dimensions={2}
  %all-reduce.1 = f32[3]{0} all-reduce(%x), to_apply=%add
  %b = s32[16,1]{1,0} bitcast(%all-gather.3)
"""
    assert dist.all_gathers(text) == [((64, 5), None), ((16,), None), ((4, 5, 8), ("model",))]


def test_a_launcher_is_recognised_only_when_it_started_several_processes(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_STEP_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
                 "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    assert not dist.launched()
    monkeypatch.setenv("SLURM_NTASKS", "4")            # an sbatch script's body: no srun step
    assert not dist.launched()
    monkeypatch.setenv("SLURM_STEP_ID", "0")           # one of 4 srun tasks
    assert dist.launched()
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert not dist.launched()
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1,t2")  # a TPU VM of a two-host slice
    assert dist.launched()
