"""Runs on many devices and many processes: jax.distributed, the global mesh, row shards, one writer.

One process per host (a TPU VM of a pod slice, a GPU host); every process runs the same program on its
own share of the rows, and XLA's collectives join them (gloo on CPU, NCCL on GPU, ICI on TPU):

    initialize(coordinator="10.0.0.1:8476", num_processes=P, process_id=I)   or initialize() under a
        cluster launcher (SLURM, Open MPI, a TPU pod slice, Kubernetes), whose environment jax reads
    mesh = make_mesh(model=1)          every device of every process: axes ('data',), or ('data', 'model')
                                       with `model` devices a group holding each large parameter in slices
    batch = on_mesh(batch, mesh)       host rows [B, ...] -> global arrays sharded over 'data' (B a multiple
                                       of data_size(mesh)); a process places only its own devices' rows;
                                       without a mesh the batch is returned as it is
    params = put_params(params, mesh)  replicated over 'data'; with a 'model' axis, the last axis of every
                                       matrix whose width it divides is split over 'model'
    to_host(x)                         a global array as numpy on every process (the outputs' gather)
    score_rows(fn, batch, mesh)        fn on a host batch of any size, padded and split over 'data'
    is_writer()                        True on exactly one process (index 0): it writes every output file
    barrier(name)                      wait until every process got here

Library functions take `mesh=` (None: one device): per-example work (gradients, features, scores, k-means
assignments) runs on the rows each device holds, and only sums (curvature factors, gradient sums,
cluster sums) or a few chosen rows cross devices, by all-reduce. `all_gathers(compiled)` lists the
all-gathers of a compiled step, so tests can check that none gathers a per-example array [N, ...].

The environment variable JDPS_COORDINATOR (HOST:PORT), JDPS_NUM_PROCESSES and JDPS_PROCESS_ID stand in
for the flags of the same names. Imports jax inside the functions (the command lines check their
inputs first).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from jdps.errors import InputError

DATA, MODEL = "data", "model"
ENV = {"coordinator": "JDPS_COORDINATOR", "num_processes": "JDPS_NUM_PROCESSES", "process_id": "JDPS_PROCESS_ID"}


def _setting(name: str, value):
    if value is not None:
        return value
    raw = os.environ.get(ENV[name])
    if raw is None or raw == "":
        return None
    if name == "coordinator":
        return raw
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"{ENV[name]}={raw!r} must be an integer") from None


def check_settings(coordinator: str | None, num_processes: int | None, process_id: int | None) -> bool:
    """Whether these settings (flags, else JDPS_* variables) ask for a multi-process run; raises naming the
    fix when they are incomplete or inconsistent. Imports no jax."""
    coordinator = _setting("coordinator", coordinator)
    num_processes = _setting("num_processes", num_processes)
    process_id = _setting("process_id", process_id)
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if all(v is None for v in given.values()):
        return False
    missing = [flag for flag, v in given.items() if v is None]
    if missing:
        raise InputError(f"a multi-process run needs --coordinator HOST:PORT, --num-processes P and --process-id I "
                         f"together; {', '.join(missing)} missing (or run under a cluster launcher without them)")
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--coordinator {coordinator!r} must be HOST:PORT, e.g. 10.0.0.1:8476 (process 0's "
                         "address and a free port)")
    if int(num_processes) < 1:
        raise InputError(f"--num-processes must be at least 1, got {num_processes}")
    if not 0 <= int(process_id) < int(num_processes):
        raise InputError(f"--process-id must lie in [0, {num_processes}) for --num-processes {num_processes}, "
                         f"got {process_id}")
    return True


def launched() -> bool:
    """Whether a cluster launcher started this process as one of several: an srun step of more than one
    task, an mpirun of more than one rank, a TPU VM of a multi-host slice, or JAX_COORDINATOR_ADDRESS set."""
    env = os.environ

    def count(name: str) -> int:
        try:
            return int(env.get(name, "1") or 1)
        except ValueError:
            return 1

    return (bool(env.get("JAX_COORDINATOR_ADDRESS")) or ("SLURM_STEP_ID" in env and count("SLURM_NTASKS") > 1)
            or count("OMPI_COMM_WORLD_SIZE") > 1 or "," in env.get("TPU_WORKER_HOSTNAMES", ""))


def writer_before_init(process_id: int | None = None) -> bool:
    """Whether this process will write the outputs, known before jax starts: process id 0 or none given.
    (Under a cluster launcher that sets no id here every process must call `is_writer` after `initialize`.)"""
    pid = _setting("process_id", process_id)
    return pid is None or int(pid) == 0


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, launcher: bool | None = None) -> int:
    """Start jax.distributed (once per process) and return the number of processes.

    With coordinator, num_processes and process_id (flags or JDPS_* variables) it connects to process 0's
    coordinator at HOST:PORT. Without them, and under a cluster launcher (`launched()`; launcher=True forces,
    False never), `jax.distributed.initialize()` reads the launcher's environment. Otherwise nothing is
    started: one process. Safe to call again (a no-op once started).
    """
    import jax

    if _started():
        return jax.process_count()
    if check_settings(coordinator, num_processes, process_id):
        kwargs = {"coordinator_address": _setting("coordinator", coordinator),
                  "num_processes": int(_setting("num_processes", num_processes)),
                  "process_id": int(_setting("process_id", process_id))}
    elif launcher or (launcher is None and launched()):
        kwargs = {}
    else:
        return 1
    jax.distributed.initialize(**kwargs)  # on CPU with gloo collectives (jax's default)
    return jax.process_count()


def _started() -> bool:
    try:
        from jax._src import distributed
    except ImportError:  # pragma: no cover - jax moved it
        return False
    return distributed.global_state.client is not None


def process_index() -> int:
    import jax

    return jax.process_index()


def is_writer() -> bool:
    """True on exactly one process, the one that writes each output file (process 0)."""
    return process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (a no-op in one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def make_mesh(model: int = 1, devices=None):
    """The global mesh of `devices` (default: every device of every process): axes ('data',), or
    ('data', 'model') of shape (D / model, model) when `model` > 1. Devices of one process are adjacent
    on 'model', so a parameter's slices stay within a host."""
    import jax
    from jax.sharding import Mesh

    devices = list(jax.devices() if devices is None else devices)
    if int(model) != model or model < 1 or len(devices) % int(model):
        raise InputError(f"the model axis must be a whole divisor of the {len(devices)} devices, got {model}")
    grid = np.array(devices, dtype=object)
    if model == 1:
        return Mesh(grid, (DATA,))
    return Mesh(grid.reshape(-1, int(model)), (DATA, MODEL))


def data_size(mesh) -> int:
    """Shards of the 'data' axis (1 without a mesh)."""
    if mesh is None:
        return 1
    if DATA not in mesh.axis_names:
        raise InputError(f"the mesh has axes {mesh.axis_names}; jdps shards examples over an axis named "
                         f"'{DATA}': build it with jdps.distributed.make_mesh()")
    return int(mesh.shape[DATA])


def round_up(n: int, mesh) -> int:
    """n rounded up to a multiple of the 'data' shards (a batch size every shard gets rows of)."""
    s = data_size(mesh)
    return -(-int(n) // s) * s


def _rows_spec(ndim: int):
    from jax.sharding import PartitionSpec as P

    return P(DATA, *([None] * (ndim - 1)))


def put_rows(arrays, mesh):
    """Host arrays [B, ...] (a dict, or one array) -> global arrays sharded over 'data' by rows; each
    process reads and places only the rows of its own devices. B must be a multiple of data_size(mesh)."""
    import jax
    from jax.sharding import NamedSharding

    def put(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a                                      # already global
        a = np.asarray(a)
        if a.ndim == 0:
            return jax.device_put(a, NamedSharding(mesh, _rows_spec(1)[:0]))
        if len(a) % data_size(mesh):
            raise InputError(f"{len(a)} rows cannot be split over {data_size(mesh)} 'data' shards; pad them to a "
                             "multiple (jdps.distributed.round_up)")
        sharding = NamedSharding(mesh, _rows_spec(a.ndim))
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return {k: put(v) for k, v in arrays.items()} if isinstance(arrays, Mapping) else put(arrays)


def on_mesh(batch, mesh):
    """`batch` as it is without a mesh, else `put_rows(batch, mesh)`."""
    return batch if mesh is None else put_rows(batch, mesh)


def score_rows(fn, batch: Mapping, mesh):
    """fn(batch) -> [B, ...] for a host batch of any size B: without a mesh fn(batch); with one, the batch
    padded to a multiple of the 'data' shards (copies of its last row, mask False), split over 'data', and
    the B rows of the result as numpy on every process."""
    if mesh is None:
        return fn(batch)
    b = len(next(iter(batch.values())))
    extra = round_up(b, mesh) - b
    if extra:
        batch = {k: np.concatenate([np.asarray(v), np.repeat(np.asarray(v)[-1:], extra, 0)]) for k, v in batch.items()}
        if "mask" in batch:
            batch["mask"][b:] = False
    return to_host(fn(put_rows(batch, mesh)))[:b]


def param_specs(params, mesh):
    """PartitionSpecs of a params tree: replicated, or with a 'model' axis the last axis of every leaf of
    rank >= 2 whose width the axis divides split over 'model' (tensor parallel; XLA adds the collectives)."""
    import jax
    from jax.sharding import PartitionSpec as P

    m = int(mesh.shape[MODEL]) if MODEL in mesh.axis_names else 1

    def spec(leaf):
        shape = np.shape(leaf)
        if m > 1 and len(shape) >= 2 and shape[-1] % m == 0:
            return P(*([None] * (len(shape) - 1)), MODEL)
        return P()

    return jax.tree.map(spec, params)


def put_params(params, mesh):
    """params on the mesh with `param_specs` (the same values on every process are assumed)."""
    import jax
    from jax.sharding import NamedSharding

    specs = param_specs(params, mesh)
    return jax.tree.map(lambda leaf, s: jax.device_put(leaf, NamedSharding(mesh, s)), params, specs)


def replicate(tree, mesh):
    """Every leaf replicated on every device of the mesh."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    return jax.device_put(tree, NamedSharding(mesh, P()))


def to_host(x) -> np.ndarray:
    """A (global) array as numpy on every process: its own shards copied, other processes' gathered."""
    import jax

    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


_GATHER = re.compile(r"=\s*\(?([a-z0-9]+\[[0-9,]*\])[^=]*?\sall-gather(?:-start)?\(")
_AXES = re.compile(r"replica_groups=mesh\[[^\]]*\]\s*\{([^}]*)\}")


def all_gathers(compiled_text: str) -> list[tuple[tuple[int, ...], tuple[str, ...] | None]]:
    """(result shape, mesh axes gathered over, None where the HLO does not name them) of every all-gather
    in a compiled HLO module's text (`jitted.lower(...).compile().as_text()`)."""
    found = []
    for line in compiled_text.splitlines():
        m = _GATHER.search(line)
        if m:
            dims = m.group(1).split("[")[1].rstrip("]")
            axes = _AXES.search(line)
            names = tuple(a.strip().strip("'") for a in axes.group(1).split(",")) if axes else None
            found.append((tuple(int(d) for d in dims.split(",") if d), names))
    return found


def bytes_per_device(tree) -> int:
    """The largest number of bytes any one device holds of the arrays of `tree` (its shards)."""
    import jax

    held: dict = {}
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array):
            for shard in leaf.addressable_shards:
                held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
    return max(held.values(), default=0)
