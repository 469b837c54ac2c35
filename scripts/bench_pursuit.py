"""Cost of GTP: pursuit time against N, k and Td; CoSaMP against OMP; ours against scikit-learn; features/s.

Problem: A [N, Td] float32 with i.i.d. N(0, 1) entries (seed 0), target b = A_S^T w for 2k random rows S
and weights w ~ U(0.5, 1.5), so every solver has real work for all k atoms. Each time is the median of
`repeats` runs of `jdps.gtp.pursuit.solve` after one warm-up run that compiles (the compile time is reported
apart); the largest N is written to a `.npy` file and streamed from the memmap (`block_rows`), as a user's
A larger than memory would be, and timed once, compilation included. OMP against CoSaMP is timed over k at
one N, and again at a large N (2^20 rows, a multiple of the kernel's block, held on the device as a jax
array), where OMP's k scans of A dominate its cost.
The growth exponent is the least-squares slope of log(time) on log(N) (or log(k), log(Td)): 1 means
linear. Feature throughput: `jdps.gradients.features.per_example_features` (projected per-example gradients, one
checkpoint) of the small byte-level transformer LM on random windows, examples per second after warm-up.

    PYTHONPATH=. python scripts/bench_pursuit.py                 # the full run (about 20 minutes)
    PYTHONPATH=. python scripts/bench_pursuit.py --quick         # tiny sizes, a smoke run

writes experiments/results/bench_pursuit.md (the tables, the command and the machine) and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jdps import outputs

OUT = Path(__file__).resolve().parent.parent / "experiments" / "results" / "bench_pursuit"


def problem(n: int, d: int, k: int, seed: int = 0, path: str | None = None):
    """(A [n, d] float32 ~ N(0, 1), b = A_S^T w for 2k random rows S, w ~ U(0.5, 1.5)); A written to the
    `.npy` file `path` in row blocks and returned as a read-only memmap when given."""
    rng = np.random.default_rng(seed)
    if path is None:
        a = rng.standard_normal((n, d), dtype=np.float32)
    else:
        a = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        for start in range(0, n, 65536):
            a[start:start + 65536] = rng.standard_normal((min(65536, n - start), d), dtype=np.float32)
        a.flush()
        del a
        a = np.load(path, mmap_mode="r")
    support = np.sort(rng.choice(n, 2 * k, replace=False))
    w = rng.uniform(0.5, 1.5, 2 * k).astype(np.float32)
    b = (np.asarray(a[support]).T @ w).astype(np.float32)
    return a, b


def timed(fn, repeats: int):
    """(compile seconds: first run minus the median, median seconds over `repeats` runs after it, result)."""
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    med = float(np.median(times)) if times else first
    return max(first - med, 0.0) if times else float("nan"), med, out


def slope(xs, ys) -> float:
    """Least-squares slope of log y on log x."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def pursuit_row(a, b, k, method, repeats, **options):
    from jdps.gtp import pursuit
    compile_s, seconds, r = timed(lambda: pursuit.solve(a, b, k, method=method, **options), repeats)
    return {"N": int(a.shape[0]), "Td": int(a.shape[1]), "k": k, "method": method, "seconds": seconds,
            "compile_seconds": compile_s, "count": len(r.indices), "stop_reason": r.stop_reason,
            "iterations": r.iterations, "relative_residual": r.residual_norm / float(np.linalg.norm(b)),
            "streamed": "block_rows" in options or isinstance(a, np.memmap)}


def sweep_n(sizes, streamed, d, k, repeats, log):
    rows = []
    for n in sizes:
        a, b = problem(n, d, k)
        rows.append(pursuit_row(a, b, k, "omp", repeats))
        log(rows[-1])
    with tempfile.TemporaryDirectory() as tmp:
        for n in streamed:
            a, b = problem(n, d, k, path=os.path.join(tmp, f"A{n}.npy"))
            rows.append(pursuit_row(a, b, k, "omp", 0, block_rows=65536))
            log(rows[-1])
            del a
    return rows


def sweep_k(n, d, ks, repeats, log, device=False):
    """OMP, CoSaMP and top-k for each k; device: A passed as a jax array (copied to the device once, as a user
    holding A there would), not re-copied from the host on every call."""
    rows = []
    for k in ks:
        a, b = problem(n, d, k)
        if device:
            import jax.numpy as jnp

            a = jnp.asarray(a)
        for method in ("omp", "cosamp", "topk"):
            rows.append(pursuit_row(a, b, k, method, repeats))
            log(rows[-1])
        del a
    return rows


def sweep_td(n, tds, k, repeats, log):
    rows = []
    for d in tds:
        a, b = problem(n, d, k)
        rows.append(pursuit_row(a, b, k, "omp", repeats))
        log(rows[-1])
    return rows


def against_sklearn(n, d, k, repeats, log):
    """Signed OMP (ours, nonneg=False) against sklearn's OrthogonalMatchingPursuit on X = A^T [Td, N], y = b."""
    from sklearn.linear_model import OrthogonalMatchingPursuit

    a, b = problem(n, d, k)
    ours = pursuit_row(a, b, k, "omp", repeats, nonneg=False)
    nn = pursuit_row(a, b, k, "omp", repeats)
    _, sk_seconds, sk = timed(lambda: OrthogonalMatchingPursuit(n_nonzero_coefs=k, fit_intercept=False)
                              .fit(a.T, b), repeats)
    from jdps.gtp import pursuit
    mine = set(pursuit.solve(a, b, k, nonneg=False).indices.tolist())
    theirs = set(np.flatnonzero(sk.coef_).tolist())
    row = {"N": n, "Td": d, "k": k, "ours_signed": ours["seconds"], "ours_nonneg": nn["seconds"],
           "sklearn": sk_seconds, "same_support": mine == theirs, "overlap": len(mine & theirs)}
    log(row)
    return row


def feature_throughput(sizes, length, d, log):
    """Examples/s of per_example_features for the byte-level transformer LM (d_model 64, 2 layers): after a
    first call that compiles the step (reused by later calls of the same batch shape), the rate N2 / t2 and
    the marginal rate (N2 - N1) / (t2 - t1) between two pool sizes."""
    import jax

    from jdps.data.text import VOCAB_SIZE
    from jdps.gradients.features import per_example_features
    from jdps.models.transformer import transformer_lm_task

    task, params = transformer_lm_task(0, VOCAB_SIZE, d_model=64, n_heads=4, n_layers=2, max_len=length)
    x = np.random.default_rng(0).integers(3, VOCAB_SIZE, (max(sizes), length)).astype(np.int32)
    n_params = int(sum(np.size(v) for v in jax.tree.leaves(params)))
    key = jax.random.key(0)
    rows = []
    for method in ("vmap", "factored"):
        t = time.perf_counter()
        per_example_features(task, params, {"x": x[:sizes[0]]}, d=d, key=key, method=method, batch_size=256)
        compile_s = time.perf_counter() - t
        seconds = []
        for n in sizes:
            t = time.perf_counter()
            f = per_example_features(task, params, {"x": x[:n]}, d=d, key=key, method=method, batch_size=256)
            seconds.append(time.perf_counter() - t)
        rows.append({"method": method, "N": list(sizes), "L": length, "d": int(f.features.shape[1]),
                     "params": n_params, "seconds": seconds, "first_call_s": compile_s,
                     "examples_per_s": sizes[1] / seconds[1],
                     "marginal_examples_per_s": ((sizes[1] - sizes[0]) / (seconds[1] - seconds[0])
                                                 if seconds[1] > seconds[0] else float("nan"))})
        log(rows[-1])
    return rows


def machine() -> str:
    import jax

    load = os.getloadavg()[0]
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__} on "
            f"{jax.default_backend()}; 1-minute load average at the start {load:.1f} (the machine is shared)")


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def report(res: dict, command: str, host: str) -> str:
    s = res["setup"]
    n_rows = res["n"]
    mem = [r for r in n_rows if not r["streamed"]]
    n_slope = slope([r["N"] for r in mem], [r["seconds"] for r in mem])
    fmt = lambda r: [f"{r['N']:,}", r["Td"], r["k"], r["method"] + (" (memmap)" if r["streamed"] else ""),
                     f"{r['seconds']:.3f}", f"{r['compile_seconds']:.1f}", r["count"], r["stop_reason"],
                     r["iterations"], f"{r['relative_residual']:.3f}"]
    head = ["N", "Td", "k", "method", "seconds", "compile s", "atoms", "stop", "iterations", "|r|/|b|"]
    ks = res["k"]
    main_n = ks[0]["N"]  # the sweep over k; rows at other N (a large N) follow it
    omp = {r["k"]: r["seconds"] for r in ks if r["method"] == "omp" and r["N"] == main_n}
    cos = {r["k"]: r["seconds"] for r in ks if r["method"] == "cosamp" and r["N"] == main_n}
    other = {(r["N"], r["Td"], r["k"]): {} for r in ks if r["N"] != main_n}
    for r in ks:
        if r["N"] != main_n:
            other[r["N"], r["Td"], r["k"]][r["method"]] = r["seconds"]
    at_large_n = "".join(f" At N = {n:,}, Td = {d}, k = {k}: {t['omp'] / t['cosamp']:.1f}x."
                         for (n, d, k), t in other.items() if "omp" in t and "cosamp" in t)
    tds = res["td"]
    sk = res["sklearn"]
    lines = [
        "# Cost of GTP's pursuit and of its trajectory features", "",
        f"Command: `{command}`  ", f"Machine: {host}.", "",
        "Problem: A [N, Td] float32 with N(0, 1) entries, b = A_S^T w for 2k random rows S (w ~ U(0.5, 1.5)); "
        f"times are medians of {s['repeats']} runs after a warm-up run that compiles (compile s = first run minus "
        "the median); memmap rows stream A from a `.npy` file in blocks of 65,536 rows (one run, compilation "
        "included); the large-N rows of the k table pass A as a jax array, copied to the device once. |r|/|b| is "
        "the relative residual the solver reached.", "",
        "## Time against N (non-negative OMP)", "", table(head, [fmt(r) for r in n_rows]), "",
        f"Growth exponent in N (in-memory rows, log-log slope): **{n_slope:.2f}** (1 = linear).", "",
        "## Time against k: OMP, CoSaMP, top-k (and at a large N)", "", table(head, [fmt(r) for r in ks]), "",
        f"Growth exponent in k (N = {main_n:,}): OMP {slope(list(omp), list(omp.values())):.2f}, "
        f"CoSaMP {slope(list(cos), list(cos.values())):.2f}.  ",
        f"CoSaMP speed-up over OMP (time OMP / time CoSaMP) at N = {main_n:,}: " +
        ", ".join(f"k = {k}: {omp[k] / cos[k]:.1f}x" for k in omp) + "." + at_large_n, "",
        "## Time against Td (non-negative OMP)", "", table(head, [fmt(r) for r in tds]), "",
        f"Growth exponent in Td: {slope([r['Td'] for r in tds], [r['seconds'] for r in tds]):.2f}.", "",
        "## Ours against scikit-learn's OrthogonalMatchingPursuit", "",
        "sklearn fits X = A^T [Td, N], y = b, `n_nonzero_coefs=k`, `fit_intercept=False` (signed OMP, float32 "
        "input); ours is `jdps.gtp.pursuit.solve(A, b, k, nonneg=False)` (signed) and the default non-negative OMP.",
        "", table(["N", "Td", "k", "ours signed s", "ours non-negative s", "sklearn s", "sklearn / ours signed",
                   "same support"],
                  [[f"{sk['N']:,}", sk["Td"], sk["k"], f"{sk['ours_signed']:.3f}", f"{sk['ours_nonneg']:.3f}",
                    f"{sk['sklearn']:.3f}", f"{sk['sklearn'] / sk['ours_signed']:.1f}",
                    f"{sk['same_support']} ({sk['overlap']}/{sk['k']})"]]), "",
        "## Trajectory feature throughput (one checkpoint)", "",
        "`jdps.gradients.features.per_example_features` of the byte-level transformer LM (d_model 64, 4 heads, 2 layers) on "
        "random token windows, batches of 256: a first call on N1 windows compiles the step (its seconds below), "
        "then calls on N1 and N2 windows reuse it; examples/s = N2 / t2, and the marginal rate (N2 - N1) / "
        "(t2 - t1) (nan when t2 <= t1); a trajectory over T checkpoints costs T times this.", "",
        table(["method", "N", "window L", "parameters", "feature width", "first call s (compiles)",
               "seconds (each N)", "examples/s", "examples/s (marginal)"],
              [[r["method"], " / ".join(map(str, r["N"])), r["L"], f"{r['params']:,}", r["d"],
                f"{r.get('first_call_s', float('nan')):.2f}", " / ".join(f"{t:.2f}" for t in r["seconds"]),
                f"{r['examples_per_s']:.0f}", f"{r.get('marginal_examples_per_s', float('nan')):.0f}"]
               for r in res["features"]]), "",
    ]
    return "\n".join(lines)


def scan_kernels(n: int, d: int, log) -> dict:
    """Seconds of one correlation scan A r: jdps's fused row sum, the former loop over 128-row blocks, numpy."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from jdps.gtp.pursuit.rows import dots

    a, b = problem(n, d, 8)
    a_dev, r = jnp.asarray(np.pad(a, ((0, -n % 128), (0, 0)))), jnp.asarray(b)
    blocks = jax.jit(lambda a, r: lax.map(lambda x: (x * r).sum(1), a.reshape(-1, 128, a.shape[1])).reshape(-1))
    fused = jax.jit(dots)
    med = lambda f: timed(lambda: jax.block_until_ready(f()), 9)[1]
    row = {"N": n, "Td": d, "fused": med(lambda: fused(a_dev, r)), "blocks": med(lambda: blocks(a_dev, r)),
           "numpy": med(lambda: a @ b),
           "same_bits": bool(np.array_equal(np.asarray(fused(a_dev, r)), np.asarray(blocks(a_dev, r))))}
    log(row)
    return row


def part_report(args, setup, res, log) -> None:
    """One part of the benchmark (--part sklearn | large), its table written to <out>_<part>.md / .json."""
    head = [f"Command: `{res['command']}`  ", f"Machine: {res['machine']}.", ""]
    if args.part == "sklearn":
        sk = res["sklearn"] = against_sklearn(*setup["sk"], max(setup["repeats"], 3), log)
        scan = res["scan"] = scan_kernels(*setup["sk"][:2], log)
        body = ["# GTP's OMP against scikit-learn's OrthogonalMatchingPursuit", "", *head,
                "Median of 3 runs after a warm-up; sklearn fits X = A^T, y = b, `n_nonzero_coefs=k`, "
                "`fit_intercept=False`; ours is `jdps.gtp.pursuit.solve(A, b, k, nonneg=False)` on the same float32 "
                "numpy A (its copy to the device included).", "",
                table(["N", "Td", "k", "ours signed s", "ours non-negative s", "sklearn s", "sklearn / ours signed",
                       "same support"],
                      [[f"{sk['N']:,}", sk["Td"], sk["k"], f"{sk['ours_signed']:.3f}", f"{sk['ours_nonneg']:.3f}",
                        f"{sk['sklearn']:.3f}", f"{sk['sklearn'] / sk['ours_signed']:.2f}",
                        f"{sk['same_support']} ({sk['overlap']}/{sk['k']})"]]), "",
                "One correlation scan c = A r (an OMP iteration's pass over A), jit-compiled, median of 9: the "
                "fused multiply and row sum jdps uses (`jdps.gtp.pursuit.rows.dots`), the loop over 128-row blocks "
                "it used before (`lax.map`), and numpy's `A @ r` (BLAS).", "",
                table(["N", "Td", "fused row sum s", "loop over 128-row blocks s", "numpy A @ r s",
                       "same bits (fused, blocks)"],
                      [[f"{scan['N']:,}", scan["Td"], f"{scan['fused']:.4f}", f"{scan['blocks']:.4f}",
                        f"{scan['numpy']:.4f}", scan["same_bits"]]])]
    else:
        rows = res["k"] = sweep_k(*setup["large_n"], setup["repeats"], log, device=True)
        import jax

        passes = [r for r in rows if r["method"] == "omp"]
        body = ["# The pursuit at N = 2^20 (A held on the device)", "", *head,
                "One OMP iteration is one pass over A [N, Td] float32 (its correlation scan) and a small refit; "
                "bytes / (seconds / iterations) is the bandwidth one pass reaches (an upper bound on the pass's "
                f"own time). Device: {jax.devices()[0].device_kind}.", "",
                table(["N", "Td", "k", "method", "seconds", "compile s", "iterations", "GB/s a pass (OMP)"],
                      [[f"{r['N']:,}", r["Td"], r["k"], r["method"], f"{r['seconds']:.3f}",
                        f"{r['compile_seconds']:.1f}", r["iterations"],
                        f"{r['N'] * r['Td'] * 4 / (r['seconds'] / r['iterations']) / 1e9:.1f}"
                        if r in passes else ""] for r in rows])]
    out = args.out.with_name(f"{args.out.name}_{args.part}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(body) + "\n")
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    print("\n".join(body))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--part", choices=("all", "sklearn", "large"), default="all",
                        help="sklearn: only ours against scikit-learn (writes <out>_sklearn.md); large: only the "
                             "OMP / CoSaMP / top-k rows at N = 2^20 held on the device (writes <out>_large.md)")
    args = parser.parse_args(argv)
    if args.quick:
        setup = dict(n=[1000, 3000], streamed=[5000], d=64, k=8, ks=[4, 16], k_n=3000, k_d=64,
                     large_n=(16_384, 64, [8]), tds=[32, 128], td_n=2000, sk=(2000, 64, 8),
                     feat=((32, 96), 16, 64), repeats=1)
    else:
        setup = dict(n=[10_000, 30_000, 100_000], streamed=[1_000_000], d=1024, k=32,
                     ks=[16, 32, 64, 128, 256], k_n=100_000, k_d=256, large_n=(1_048_576, 256, [64, 128]),
                     tds=[128, 512, 2048], td_n=30_000, sk=(30_000, 512, 32), feat=((256, 1280), 64, 256),
                     repeats=2)
    host = machine()
    command = shlex.join(["PYTHONPATH=.", "python", "scripts/bench_pursuit.py", *(argv or sys.argv[1:])])
    log = lambda r: print(json.dumps(r), flush=True)
    rep = setup["repeats"]
    res = {"setup": setup, "command": command, "machine": host}
    if args.part != "all":
        return part_report(args, setup, res, log)
    res["n"] = sweep_n(setup["n"], setup["streamed"], setup["d"], setup["k"], rep, log)
    res["k"] = sweep_k(setup["k_n"], setup["k_d"], setup["ks"], rep, log)
    res["k"] += sweep_k(*setup["large_n"], rep, log, device=True)  # A [2^20, 256] float32: 1 GB
    res["td"] = sweep_td(setup["td_n"], setup["tds"], setup["k"], rep, log)
    res["sklearn"] = against_sklearn(*setup["sk"], rep, log)
    res["features"] = feature_throughput(*setup["feat"], log)
    text = report(res, command, host)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    outputs.write_text(args.out.with_suffix(".md"), text)
    outputs.write_json(args.out.with_suffix(".json"), res)
    print(text)


if __name__ == "__main__":
    main()
