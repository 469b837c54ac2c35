"""Throughput of the sharded feature store (jdps.store) on this machine: MB/s written and read.

A [N, C] float32 of N(0, 1) entries (seed 0) is written into a store chunk by chunk (StoreWriter: each
chunk one tensorstore write, its sha256 and its marker), read back whole chunk by chunk (FeatureStore.blocks,
which reads the next chunk while the caller holds this one) and by 1,000 random rows (the pursuit's
gather). For reference the same matrix is written with np.save and read back from an np.memmap by the same
blocks. With --processes 2 the store is also written by 2 processes on loopback (jax.distributed), each its
own chunks, and the wall time of the whole write (process start excluded: timed inside each process
between two barriers) gives the rate. Each figure is the median of --repeats runs; reads follow the
writes, so they come from the page cache.

    PYTHONPATH=. python scripts/bench_store.py                 # N = 65,536, C = 1,024 (256 MiB), 2 processes
    PYTHONPATH=. python scripts/bench_store.py --quick         # a smoke run

writes experiments/results/bench_store.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jdps import outputs

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "experiments" / "results" / "bench_store"


def matrix(n: int, c: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, c), dtype=np.float32)


def write_store(path: Path, a: np.ndarray, chunk_rows: int | None) -> float:
    from jdps.store import StoreWriter

    shutil.rmtree(path, ignore_errors=True)
    t = time.perf_counter()
    w = StoreWriter(path, a.shape, ids=np.arange(len(a)), fingerprint={"bench": 1}, chunk_rows=chunk_rows)
    w.fill(lambda s, e: a[s:e])
    w.finish()
    return time.perf_counter() - t


def read_blocks(source, rows: int) -> float:
    t = time.perf_counter()
    total = 0.0
    if hasattr(source, "blocks"):
        for _, block in source.blocks(rows):
            total += float(block[:, 0].sum())
    else:                                    # a memmap: its rows copied into memory, as the store's read does
        for start in range(0, len(source), rows):
            total += float(np.array(source[start:start + rows])[:, 0].sum())
    return time.perf_counter() - t


def gather(source, rows: np.ndarray) -> float:
    t = time.perf_counter()
    np.asarray(source[np.sort(rows)])
    return time.perf_counter() - t


def child(args) -> None:
    """One of the processes of a multi-process write: prints its timed seconds (process 0)."""
    from jdps import distributed as dist

    dist.initialize(args.coordinator, args.num_processes, args.process_id)
    a = matrix(args.n, args.c)
    dist.barrier("bench-store-start")
    from jdps.store import StoreWriter

    t = time.perf_counter()
    w = StoreWriter(Path(args.path), a.shape, ids=np.arange(len(a)), fingerprint={"bench": 1},
                    chunk_rows=args.chunk_rows)
    w.fill(lambda s, e: a[s:e])
    w.finish()
    seconds = time.perf_counter() - t
    print(json.dumps({"process": args.process_id, "seconds": seconds}), flush=True)


def multi_write(path: Path, n: int, c: int, chunk_rows, processes: int) -> float:
    shutil.rmtree(path, ignore_errors=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    argv = [sys.executable, __file__, "--child", "--path", str(path), "--n", str(n), "--c", str(c),
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes)]
    if chunk_rows:
        argv += ["--chunk-rows", str(chunk_rows)]
    procs = [subprocess.Popen(argv + ["--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(processes)]
    outs = [p.communicate(timeout=600) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a writing process failed: " + " | ".join(o[1][-800:] for o in outs))
    times = [json.loads([line for line in o[0].splitlines() if line.startswith("{")][-1])["seconds"] for o in outs]
    return max(times)


def machine() -> str:
    import tensorstore  # noqa: F401

    from importlib.metadata import version

    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, tensorstore {version('tensorstore')}, local disk "
            f"({tempfile.gettempdir()}); 1-minute load average at the start {os.getloadavg()[0]:.1f} (the machine "
            "is shared)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--n", type=int, default=65536)
    parser.add_argument("--c", type=int, default=1024)
    parser.add_argument("--chunk-rows", type=int, help="default: jdps.store.chunk_rows_for(C, N)")
    parser.add_argument("--processes", type=int, default=2, help="also a write by this many processes (1: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.quick:
        args.n, args.c, args.repeats = 3000, 64, 1
    import jdps.checkpoint  # noqa: F401  (jax and orbax, which a writer imports, loaded before any timing)
    from jdps.store import FeatureStore, chunk_rows_for

    command = shlex.join(["PYTHONPATH=.", "python", "scripts/bench_store.py", *(argv or sys.argv[1:])])
    host = machine()
    a = matrix(args.n, args.c)
    mb = a.nbytes / 1e6
    rows = args.chunk_rows or chunk_rows_for(args.c, args.n)
    rng = np.random.default_rng(1)
    picks = rng.choice(args.n, min(1000, args.n), replace=False)
    res = {"command": command, "machine": host, "N": args.n, "C": args.c, "MB": mb, "chunk_rows": rows}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        w, r, g, nw, nws, nr = [], [], [], [], [], []
        for _ in range(args.repeats):
            w.append(write_store(tmp / "S", a, args.chunk_rows))
            store = FeatureStore(tmp / "S")
            assert np.array_equal(store[:rows], a[:rows])
            r.append(read_blocks(store, rows))
            g.append(gather(store, picks))
            t = time.perf_counter()
            np.save(tmp / "A.npy", a)
            nw.append(time.perf_counter() - t)
            fd = os.open(tmp / "A.npy", os.O_RDONLY)
            os.fsync(fd)                       # on disk, as the store's chunks are before COMPLETE.json
            os.close(fd)
            nws.append(time.perf_counter() - t)
            nr.append(read_blocks(np.load(tmp / "A.npy", mmap_mode="r"), rows))
        res.update(write_s=float(np.median(w)), read_s=float(np.median(r)), gather_s=float(np.median(g)),
                   npy_write_s=float(np.median(nw)), npy_sync_s=float(np.median(nws)), npy_read_s=float(np.median(nr)))
        if args.processes > 1:
            mw = [multi_write(tmp / "M", args.n, args.c, args.chunk_rows, args.processes) for _ in range(args.repeats)]
            equal = np.array_equal(FeatureStore(tmp / "M")[:], a)
            res.update(multi_write_s=float(np.median(mw)), processes=args.processes, multi_equal=bool(equal))
    rate = lambda s: f"{mb / s:,.0f}"
    table = ["| operation | seconds | MB/s |", "|---|---|---|",
             f"| store write, 1 process (tensorstore zarr3, sha256 and marker per chunk, fsync at the end) | {res['write_s']:.3f} | "
             f"{rate(res['write_s'])} |",
             f"| store read, chunk by chunk | {res['read_s']:.3f} | {rate(res['read_s'])} |",
             f"| store gather of {len(picks)} random rows (reads every chunk holding one) | {res['gather_s']:.3f} | "
             f"{len(picks) * args.c * 4 / 1e6 / res['gather_s']:,.0f} (of the rows' bytes) |",
             f"| np.save (reference; into the page cache) | {res['npy_write_s']:.3f} | {rate(res['npy_write_s'])} |",
             f"| np.save and fsync (reference; on disk) | {res['npy_sync_s']:.3f} | {rate(res['npy_sync_s'])} |",
             f"| np.load memmap read, same blocks (reference) | {res['npy_read_s']:.3f} | {rate(res['npy_read_s'])} |"]
    if "multi_write_s" in res:
        table.append(f"| store write, {res['processes']} processes on loopback (each its own chunks; equal to A: "
                     f"{res['multi_equal']}) | {res['multi_write_s']:.3f} | {rate(res['multi_write_s'])} |")
    text = "\n".join(["# Throughput of the feature store (jdps.store)", "", f"Command: `{command}`  ",
                      f"Machine: {host}.", "",
                      f"A [{args.n:,}, {args.c:,}] float32 ({mb:,.0f} MB), chunks of {rows:,} rows "
                      f"({rows * args.c * 4 / 2**20:.1f} MiB); medians of {args.repeats} runs; reads follow the "
                      "writes (page cache).", "", *table, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    outputs.write_text(args.out.with_suffix(".md"), text)
    outputs.write_json(args.out.with_suffix(".json"), res)
    print(text)


if __name__ == "__main__":
    main()
