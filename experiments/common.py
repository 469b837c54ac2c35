"""What the BADS experiments share: running a baseline by name, summarising seeds, writing the report.

    run_named_baseline(name, task, params, train, meta, ...) -> BaselineResult
        a baseline of `jdps.baselines` with the experiments' optimizer, Adam(adam_lr), and its options
        filled in: `random` keeps `kept` examples, `oracle` the `clean` ones, l2rw and mwn draw
        `meta_batch_size` meta examples a step
    kept_size(weights) -> int            how many examples BADS keeps: those weighing at least the mean
    overrides(["rho=0.5", ...]) -> dict  BADSConfig fields from the command line, values as Python literals
    mean_std(values, scale, digits)      "m ± s" over seeds (population std; one value: just it)
    markdown_table(header, rows)         a Markdown table from a header row and rows of cells
    command_line(script, argv)           the exact command that made a report
    write_report(out, report, payload)   <out>.md (the report) and <out>.json (the payload)
    plot_by_fraction(panels, path, ylabel)  one panel per record set: mean ± std of a value against the
                                         selected fraction (log x), one line per method, the full pool dashed
"""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import numpy as np


def run_named_baseline(name: str, task, params, train, meta, *, seed: int, epochs: int, batch_size: int,
                       adam_lr: float = 1e-3, meta_batch_size: int = 100, kept: int | None = None,
                       clean=None):
    """Baseline `name` trained from `params` for BADS's budget of epochs * (N // batch_size) steps with
    Adam(adam_lr); `random` trains on `kept` random training examples (BADS's kept size), `oracle` on the
    examples `clean` (bool [N]) marks."""
    import optax

    from jdps.baselines import run_baseline
    from jdps.errors import InputError

    options = {}
    if name == "random":
        if kept is None:
            raise InputError("random keeps as many examples as BADS: run bads first and pass kept=kept_size(weights)")
        options["budget"] = kept
    elif name in ("l2rw", "mwn"):
        options["meta_batch_size"] = min(meta_batch_size, len(meta["x"]) if isinstance(meta, dict) else len(meta))
    elif name == "oracle" and clean is not None:
        options["clean"] = clean
    return run_baseline(name, task, params, train, meta, key=seed, epochs=epochs, batch_size=batch_size,
                        optimizer=optax.adam(adam_lr), **options)


def kept_size(weights) -> int:
    """|{i : w_i >= mean(w)}|: the size of the subset BADS keeps (and `random` draws)."""
    w = np.asarray(weights)
    return int((w >= w.mean()).sum())


def overrides(pairs) -> dict:
    """["name=value", ...] -> {name: value}, each value a Python literal (0.5, 'contrastive', None)."""
    from jdps.errors import InputError

    out = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise InputError(f"expected name=value (e.g. rho=0.5 or log_z='contrastive'), got {pair!r}")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value  # a bare word: a string option such as log_z=contrastive
    return out


def mean_std(values, scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± std' of scale * values (population std); one value alone; '-' for none."""
    if len(values) == 0:
        return "-"
    v = scale * np.asarray(values, np.float64)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def markdown_table(header, rows) -> str:
    """A Markdown table: header [k] cells, rows of k cells each."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def command_line(script: str, argv) -> str:
    """'python <script> <argv...>', shell-quoted."""
    return shlex.join(["python", script, *argv])


def write_report(out: Path, report: str, payload: dict) -> None:
    """Write `report` to <out>.md and `payload` (JSON-serialisable) to <out>.json."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(report)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")


def plot_by_fraction(panels, path: Path, ylabel: str) -> None:
    """panels: [(title, records, methods, value)], value(record) -> float; records carry 'method' and
    'fraction' (the method 'full' is drawn as a dashed line). Writes a small PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, records, methods, value) in zip(axes[0], panels):
        for m in methods:
            fractions = sorted({r["fraction"] for r in records if r["method"] == m})
            if not fractions:
                continue
            v = [np.array([value(r) for r in records if r["method"] == m and r["fraction"] == f]) for f in fractions]
            ax.errorbar(100 * np.array(fractions), [a.mean() for a in v], yerr=[a.std() for a in v], marker="o",
                        ms=4, capsize=3, label=m)
        full = [value(r) for r in records if r["method"] == "full"]
        if full:
            ax.axhline(np.mean(full), color="k", ls="--", lw=1, label="full pool")
        ax.set_xscale("log")
        ax.set_xlabel("selected (% of the pool)")
        ax.set_title(title, fontsize=9)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
