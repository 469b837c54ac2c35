"""What the experiments share: models, warm-up and subset training, selectors and baselines by name, the
text corpora, seed loops, reports and figures. Every experiment runs as a module from the repository root
(`python -m experiments.<name> ...`).

Models and training
    mlp(hidden, seed)                    the Fashion-MNIST MLP 784-hidden-10: (task, params)
    lm_task(setup, seed)                 the byte-level transformer LM of setup.d_model, n_heads, n_layers and
                                         length (the window): (task, params)
    adam(lr)                             one optax.adam per learning rate, so compiled epochs are reused
    warmup_checkpoints(task, params, data, epochs=, seed=, batch_size=, optimizer=)
                                         the parameters after each warm-up epoch (GTP's, TracIn's checkpoints)
    train_subset(task, params, data, indices, weights, seed=, steps=, batch_size=, optimizer=, repeat=)
                                         parameters trained on a (weighted) selection for about `steps` steps
    repeat_to(indices, total, rng)       `total` rows spread evenly over `indices`

Selection
    fit_selector(name, task, params, pool, reference, key=, fit_options=) -> FittedSelector
                                         a `jdps.selectors` method fitted once (timed); .select(...) per size
    run_selector(name, task, params, pool, reference, seed=, budget= | fraction=, fit_options=,
                 select_options=) -> Selection        fit and select in one call (info: fit_s, select_s)
    BASELINES                            `jdps.baselines.NAMES`, the oracle last (the reports' row order)
    run_named_baseline(name, task, params, train, meta, seed=, epochs=, batch_size=, ...)
                                         a baseline with Adam(adam_lr) and its options filled in
    kept_size(weights)                   how many examples BADS keeps: those weighing at least the mean
    overrides(["rho=0.5", ...])          BADSConfig fields from the command line, values as Python literals
    preset_changes(name)                 the fields in which a BADS preset differs from BADSConfig()

Text
    corpus(domains)                      the Documents of KJV, Brown (or a genre), ham, spam
    domain_windows(docs, length, domains, counts, rng, what)   counts[g] random windows of each domain g
    target_split(domains, target, ...)   (train, meta, test) windows; meta and test from held-out documents
    domain_means(weights, domain, D)     the mean weight of each domain

Runs and reports
    timed(fn, *args, **kw)               (fn's result, seconds)
    run_seeds(seeds, run_one, save)      records of every seed, saved after each
    mean_std(values, scale, digits)      "m ± s" over seeds (population std; one value: just it)
    markdown_table(header, rows)         a Markdown table from a header row and rows of cells
    seconds_line(records, methods)       "Seconds a run ...: m1 12, m2 30"
    command_line(module, argv)           the exact command that made a report: python -m <module> ...
    provenance(command, setup=, seeds=, datasets=)   what made a report (jdps version, command, setup,
                                         seeds, the catalogue datasets read)
    write_report(out, report, payload, provenance)   <out>.md (the report) and <out>.json (the payload),
                                         atomically, each with its provenance
    pyplot(), save_figure(fig, path, provenance=)    matplotlib (Agg) for the figures, and writing one
                                         (atomically, the provenance in the PNG's Description)

Resume
    with experiment_run(module, argv, out, setup=, seeds=, checkpoint_dir=) as run:   the command, the
                                         provenance, a lock on <out>.lock, and run.cells: the finished
                                         cells of --checkpoint-dir (Cells)
    Cells(dir, fingerprint).run(fn, seed=0, method=...)   a cell's stored record, or fn()'s, stored
    plot_by_fraction(panels, path, ylabel)  one panel per record set: mean ± std of a value against the
                                         selected fraction (log x), one line per method, the full pool dashed
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import json
import shlex
import sys
import time
import types
from functools import cache
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from jdps import bads, outputs, selectors
from jdps.baselines import NAMES, run_baseline
from jdps.data.catalogue import load
from jdps.data.corruptions import subsample_groups
from jdps.data.text import VOCAB_SIZE, windows
from jdps.errors import InputError
from jdps.models.mlp import mlp_task
from jdps.models.transformer import transformer_lm_task
from jdps.selection import Selection
from jdps.train import train

RESULTS = Path(__file__).resolve().parent / "results"
BASELINES = (*(name for name in NAMES if name != "oracle"), "oracle")


# --- models and training -------------------------------------------------------------------------------

def mlp(hidden, seed: int):
    """The Fashion-MNIST MLP 784-hidden-10 of seed `seed`: (task, params)."""
    return mlp_task(seed, 28 * 28, tuple(hidden), 10)


def lm_task(setup, seed: int):
    """The byte-level transformer LM of seed `seed`: (task, params); `setup` gives d_model, n_heads,
    n_layers and length (the window, the model's max_len)."""
    return transformer_lm_task(seed, VOCAB_SIZE, d_model=setup.d_model, n_heads=setup.n_heads,
                               n_layers=setup.n_layers, max_len=setup.length)


@cache
def adam(lr: float):
    """One optax.adam per learning rate, so `jdps.train.train` compiles its epoch once."""
    return optax.adam(lr)


def warmup_checkpoints(task, params, data, *, epochs: int, seed: int, batch_size: int, optimizer) -> list:
    """The parameters after each of `epochs` epochs of training on all of `data`: the checkpoints of GTP
    and TracIn (the last one the proxy model). Epoch e is one `jdps.train.train` epoch from the previous
    parameters, keyed seed * 100 + e, with a fresh optimizer state."""
    checkpoints, p = [], params
    for e in range(epochs):
        p = train(task, p, data, key=seed * 100 + e, epochs=1, batch_size=batch_size, optimizer=optimizer).params
        checkpoints.append(p)
    return checkpoints


def repeat_to(indices, total: int, rng: np.random.Generator) -> np.ndarray:
    """`total` rows drawn from `indices` as evenly as possible: whole random permutations of them,
    concatenated and cut to `total` (each row appears floor or ceil of total / k times)."""
    idx = np.asarray(indices)
    reps = -(-total // len(idx))
    return np.concatenate([rng.permutation(idx) for _ in range(reps)])[:total]


def train_subset(task, params, data, indices, weights=None, *, seed: int, steps: int, batch_size: int, optimizer,
                 repeat: bool = False):
    """Parameters after training on the rows `indices` of `data` with `weights` (1 each by default), each
    batch's loss self-normalised by its weights, keyed by `seed`, for about `steps` steps:

        repeat=False  round(steps / (k // batch_size)) epochs over the k rows (at least one; a batch larger
                      than k is cut to k)
        repeat=True   exactly `steps` steps: one pass over steps * batch_size rows, the k rows repeated as
                      evenly as possible (`repeat_to`, numpy's default_rng(seed))
    """
    indices = np.asarray(indices, np.int64)
    w = np.zeros(len(data["x"]), np.float32)
    w[indices] = 1.0 if weights is None else np.asarray(weights)
    if repeat:
        rows, epochs = repeat_to(indices, steps * batch_size, np.random.default_rng(seed)), 1
    else:
        rows, epochs = np.sort(indices), max(1, round(steps / max(1, len(indices) // batch_size)))
    return train(task, params, data, key=seed, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                 indices=rows, weights=w, normalize="weights").params


# --- selection -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FittedSelector:
    """A `jdps.selectors` method with its fitted state and the seconds `fit` took."""

    selector: Any
    state: Any
    fit_s: float

    def select(self, *, budget: int | None = None, fraction: float | None = None, key=None,
               **select_options) -> Selection:
        """The selector's `select` on the fitted state; info gains fit_s and select_s (seconds)."""
        sel, seconds = timed(self.selector.select, self.state, budget=budget, fraction=fraction, key=key,
                             **select_options)
        return dataclasses.replace(sel, info={**sel.info, "fit_s": self.fit_s, "select_s": seconds})


def fit_selector(name: str, task, params, pool, reference=None, *, key, fit_options: dict | None = None,
                 **fit_kwargs) -> FittedSelector:
    """`jdps.selectors.make(name, task, params, **fit_options).fit(pool, reference, key=key, **fit_kwargs)`,
    timed; `fit_kwargs` are the method's extra fit arguments (e.g. quad's embeddings)."""
    selector = selectors.make(name, task, params, **(fit_options or {}))
    state, seconds = timed(selector.fit, pool, reference, key=key, **fit_kwargs)
    return FittedSelector(selector, state, seconds)


def run_selector(name: str, task, params, pool, reference=None, *, seed, budget: int | None = None,
                 fraction: float | None = None, fit_options: dict | None = None,
                 select_options: dict | None = None) -> Selection:
    """Selector `name` fitted on the pool (and the reference set) and read out at one size, fit and select
    both keyed by `seed`; the Selection's info holds fit_s and select_s."""
    fitted = fit_selector(name, task, params, pool, reference, key=seed, fit_options=fit_options)
    return fitted.select(budget=budget, fraction=fraction, key=seed, **(select_options or {}))


def run_named_baseline(name: str, task, params, train, meta, *, seed: int, epochs: int, batch_size: int,
                       adam_lr: float = 1e-3, meta_batch_size: int = 100, kept: int | None = None,
                       clean=None, on_epoch=None):
    """Baseline `name` trained from `params` for BADS's budget of epochs * (N // batch_size) steps with
    Adam(adam_lr); `random` trains on `kept` random training examples (BADS's kept size), `oracle` on the
    examples `clean` (bool [N]) marks (default: the training set's `corrupted` column), l2rw and mwn draw
    min(meta_batch_size, M) meta examples a step; `on_epoch(epoch, params)` after every epoch."""
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
                        optimizer=adam(adam_lr), on_epoch=on_epoch, **options)


def snapshot_accuracy(task, snapshots, x, y) -> tuple[float, float]:
    """(accuracy of the mean softmax over `snapshots` (a list of params), accuracy of the last one alone):
    the one way every method predicts in the BADS experiments (BADS's snapshots are its theta samples)."""
    apply = jax.jit(task.apply)
    probs = [np.asarray(jax.nn.softmax(apply(p, x))) for p in snapshots]
    y = np.asarray(y)
    return float((np.mean(probs, 0).argmax(1) == y).mean()), float((probs[-1].argmax(1) == y).mean())


def kept_size(weights) -> int:
    """|{i : w_i >= mean(w)}|: the size of the subset BADS keeps (and `random` draws)."""
    w = np.asarray(weights)
    return int((w >= w.mean()).sum())


def overrides(pairs) -> dict:
    """["name=value", ...] -> {name: value}, each value a Python literal (0.5, 'contrastive', None)."""
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


def preset_changes(name: str) -> dict:
    """The fields in which `jdps.bads.PRESETS[name]` differs from `BADSConfig()` (what a report prints)."""
    default = dataclasses.asdict(bads.BADSConfig())
    return {k: v for k, v in dataclasses.asdict(bads.PRESETS[name]).items() if v != default[k]}


# --- text ----------------------------------------------------------------------------------------------

def corpus(domains) -> list:
    """The Documents of `domains`, each Document's domain set to its domain name: "kjv" (the whole KJV),
    "brown" (the whole Brown corpus), "ham" / "spam" (SpamAssassin) or a Brown genre
    (`jdps.data.sources.BROWN_GENRES`)."""
    docs, loaded = [], {}
    for d in domains:
        source = d if d in ("kjv", "brown") else "spam_assassin" if d in ("ham", "spam") else "brown"
        if source not in loaded:
            loaded[source] = load(source)
        whole = d in ("kjv", "brown")
        found = [dataclasses.replace(doc, domain=d) for doc in loaded[source] if whole or doc.domain == d]
        if not found:
            raise InputError(f"no documents of domain {d!r}; use 'kjv', 'brown', 'ham', 'spam' or a Brown genre "
                             "(jdps.data.sources.BROWN_GENRES)")
        docs += found
    return docs


def domain_windows(docs, length: int, domains, counts, rng, what: str):
    """Windows of `length` tokens of `docs` (column `domain` indexing `domains`), counts[g] random ones of
    domain g (`subsample_groups` with `rng`)."""
    data = windows(docs, length, domain_names=domains)
    have = np.bincount(data.columns["domain"], minlength=len(domains))
    short = [f"{domains[g]!r} ({have[g]} < {c})" for g, c in enumerate(counts) if have[g] < c]
    if short:
        raise InputError(f"too few {what} windows in {', '.join(short)}; ask for fewer {what} windows")
    return subsample_groups(data, counts, column="domain", seed=rng)


def target_split(domains, target: str, *, length: int, per_domain: int, meta_windows: int, test_windows: int,
                 meta_docs: int, test_docs: int, seed: int):
    """(train [per_domain windows of each domain, `domain` column], meta, test) for one seed: the target's
    documents in a random order (numpy's default_rng(seed)) give `test_docs` test documents, then
    `meta_docs` meta documents; training windows come from every other document, so meta, test and
    training share no document."""
    if target not in domains:
        raise InputError(f"target {target!r} is not one of the domains {tuple(domains)}; add it")
    rng = np.random.default_rng(seed)
    docs = corpus(domains)
    of_target = [i for i, d in enumerate(docs) if d.domain == target]
    if len(of_target) <= meta_docs + test_docs:
        raise InputError(f"{target!r} has {len(of_target)} documents, too few for {test_docs} test and "
                         f"{meta_docs} meta documents and some training ones; lower test_docs or meta_docs")
    order = rng.permutation(of_target)
    test_idx, meta_idx = order[:test_docs], order[test_docs:test_docs + meta_docs]
    held = set(test_idx.tolist()) | set(meta_idx.tolist())
    domains = list(domains)
    only = np.zeros(len(domains), np.int64)
    only[domains.index(target)] = 1
    train_set = domain_windows([d for i, d in enumerate(docs) if i not in held], length, domains,
                               np.full(len(domains), per_domain), rng, "training")
    meta = domain_windows([docs[i] for i in meta_idx], length, domains, only * meta_windows, rng, "meta")
    test = domain_windows([docs[i] for i in test_idx], length, domains, only * test_windows, rng, "test")
    return train_set, meta, test


def domain_means(weights, domain, n_domains: int) -> list[float]:
    """Mean weight of each domain: weights [N], domain int [N] in [0, D) -> [D]."""
    return (np.bincount(domain, weights=weights, minlength=n_domains)
            / np.bincount(domain, minlength=n_domains)).tolist()


# --- runs and reports ----------------------------------------------------------------------------------

def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), seconds it took)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def run_seeds(seeds, run_one, save=None) -> list[dict]:
    """The records of run_one(seed) for every seed, concatenated; save(records) after each seed, so a long
    run keeps the seeds it finished."""
    records = []
    for seed in seeds:
        records += run_one(seed)
        if save is not None:
            save(records)
    return records


def paired(records, a: str, b: str, value) -> list[float] | None:
    """value(a's record) - value(b's record) seed by seed (records of one setting each: the seeds both
    methods have, in order), or None when they share no seed."""
    get = lambda m: {r["seed"]: value(r) for r in records if r["method"] == m}
    va, vb = get(a), get(b)
    seeds = sorted(set(va) & set(vb))
    return [va[s] - vb[s] for s in seeds] if seeds else None


def sample_std(values) -> float:
    """The sample standard deviation (ddof 1) of `values`; NaN for fewer than two."""
    v = np.asarray(values, np.float64)
    return float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def beyond_spread(diffs, lower: bool) -> str:
    """'yes' when every paired difference has the wanted sign (negative if `lower`, else positive) and
    |mean| exceeds their sample standard deviation (ddof 1): the issue's "beyond the seed spread"."""
    d = np.asarray(diffs, np.float64)
    same = np.all(d < 0) if lower else np.all(d > 0)
    return "yes" if same and len(d) > 1 and abs(d.mean()) > sample_std(d) else "no"


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


def seconds_line(records, methods, what: str = "Seconds a run (mean over the runs; 2 CPU cores, shared)") -> str:
    """'<what>: m1 12, m2 30': the mean `seconds` of each method's records."""
    return f"{what}: " + ", ".join(
        f"{m} {np.mean([r['seconds'] for r in records if r['method'] == m]):.0f}" for m in methods)


def command_line(module: str, argv=None) -> str:
    """'python -m <module> <argv...>', shell-quoted; argv None: this process's arguments."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def provenance(command: str, *, setup=None, seeds=None, datasets=(), options: dict | None = None) -> dict:
    """What made a report (`jdps.outputs.provenance`): jdps version, the command, the setup and options,
    the seeds and the inputs: the catalogue datasets read, each by its size as the catalogue records it."""
    from jdps.data.catalogue import CATALOGUE

    inputs = {f"catalogue:{d}": (f"{CATALOGUE[d].source}, {CATALOGUE[d].examples} examples, "
                                 f"{CATALOGUE[d].size_bytes} bytes") if d in CATALOGUE else "?" for d in datasets}
    opts = {**({"setup": dataclasses.asdict(setup)} if dataclasses.is_dataclass(setup) else {}), **(options or {})}
    return outputs.provenance(command=command, options=opts, seed=seeds, inputs=inputs)


def _default_provenance(payload: dict) -> dict:
    """A report written without a provenance still records the jdps version, the command and the setup."""
    command = payload.get("command") if isinstance(payload, dict) else None
    options = {"setup": payload["setup"]} if isinstance(payload, dict) and "setup" in payload else {}
    return outputs.provenance(command=command or shlex.join(["python", *sys.argv]), options=options)


def write_report(out: Path, report: str, payload: dict, provenance: dict | None = None) -> None:
    """Write `report` to <out>.md and `payload` (JSON-serialisable) to <out>.json, each atomically (a
    temporary file renamed into place) and with its provenance: the .md's last line, the .json's key
    `provenance` (default: the jdps version, payload["command"] or this process's, payload["setup"])."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prov = _default_provenance(payload) if provenance is None else provenance
    outputs.write_text(out.with_suffix(".md"), report, prov)
    outputs.write_json(out.with_suffix(".json"), payload, prov)


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only); imported here, when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 120, provenance: dict | None = None) -> None:
    """Lay `fig` out tightly, write it to `path` (PNG, atomically; the provenance, default the jdps version
    and this process's command, in its `Description` text chunk) and close it."""
    prov = provenance or outputs.provenance(command=shlex.join(["python", *sys.argv]))
    fig.tight_layout()
    try:
        with outputs.atomic(Path(path)) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png",
                        metadata={"Software": f"jdps {prov['jdps']}", "Description": json.dumps(prov, default=str)})
    finally:
        pyplot().close(fig)


# --- resume: finished cells, and one writer per report ---------------------------------------------------

def add_checkpoint_dir(parser, cell: str) -> None:
    """The experiments' --checkpoint-dir flag; `cell` names what identifies a finished cell."""
    parser.add_argument("--checkpoint-dir", type=Path, metavar="DIR",
                        help=f"keep every finished cell ({cell}) in DIR; the same command with the same DIR skips "
                             "them (a DIR of another setup is refused)")


class Cells:
    """The finished cells of an experiment in `directory` (its --checkpoint-dir), one JSON file each, written
    atomically: `run(fn, seed=0, method="gtp-omp", ...)` returns the cell's stored record, or computes
    fn() and stores it, so a killed experiment re-run with the same directory skips what it finished and
    ends with the records of an uninterrupted run. A directory made with another `fingerprint` (the setup
    and the options that change results) is refused. directory None: nothing is stored, every cell runs."""

    FINGERPRINT = "fingerprint.json"

    def __init__(self, directory: Path | str | None, fingerprint: dict):
        self.directory = None if directory is None else Path(directory)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        if self.directory is None:
            return
        if self.directory.exists() and not self.directory.is_dir():
            raise InputError(f"--checkpoint-dir {self.directory} is a file; pass a directory (created if missing)")
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".*.tmp"):    # left by a write killed mid-way
            stale.unlink(missing_ok=True)
        path = self.directory / self.FINGERPRINT
        if path.exists():
            have = json.loads(path.read_text())
            if have != self.fingerprint:
                keys = sorted(k for k in set(have) | set(self.fingerprint) if have.get(k) != self.fingerprint.get(k))
                raise InputError(f"--checkpoint-dir {self.directory} holds the cells of another setup (they differ "
                                 f"in {keys}); pass another directory, or delete this one to start over")
        elif any(self.directory.glob("*.cell.json")):
            raise InputError(f"--checkpoint-dir {self.directory} holds cells without a fingerprint; pass an empty "
                             "or new directory")
        else:
            outputs.write_json(path, self.fingerprint)

    def _path(self, parts: dict) -> Path:
        key = json.dumps(parts, sort_keys=True, default=str)
        slug = "_".join(f"{k}={v}" for k, v in sorted(parts.items()))
        slug = "".join(c if c.isalnum() or c in "._=-" else "-" for c in slug)[:120]
        return self.directory / f"{slug}.{hashlib.sha256(key.encode()).hexdigest()[:10]}.cell.json"

    def get(self, **parts):
        """The stored record of the cell `parts`, or None."""
        if self.directory is None:
            return None
        path = self._path(parts)
        if not path.exists():
            return None
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None                                  # unreadable: computed again
        return stored["record"] if stored.get("cell") == json.loads(json.dumps(parts, default=str)) else None

    def put(self, record, **parts):
        """Store `record` (JSON-serialisable) as the cell `parts`; returns it as read back (JSON types)."""
        plain = json.loads(json.dumps(record, default=_plain))
        if self.directory is not None:
            outputs.write_json(self._path(parts), {"cell": parts, "record": plain})
        return plain

    def run(self, fn, **parts):
        """The cell's stored record, else fn()'s, stored."""
        stored = self.get(**parts)
        return stored if stored is not None else self.put(fn(), **parts)

    def done(self, **parts) -> bool:
        return self.get(**parts) is not None


def _plain(x):
    """numpy scalars and arrays as JSON values."""
    return x.tolist() if isinstance(x, (np.ndarray, np.generic)) else str(x)


@contextlib.contextmanager
def experiment_run(module: str, argv, out: Path, *, setup, seeds, datasets=(), checkpoint_dir=None,
                   options: dict | None = None):
    """The frame of an experiment's main: the command that made it, the reports' provenance, an fcntl lock
    on <out>.lock (and on <checkpoint_dir>.lock) so two runs cannot interleave their reports, and the
    `Cells` of --checkpoint-dir (fingerprint: the module, the setup and `options`). Yields an object with
    .command, .provenance and .cells."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = command_line(module, argv)
    prov = provenance(command, setup=setup, seeds=list(seeds), datasets=datasets, options=options)
    locked = [out] + ([Path(checkpoint_dir)] if checkpoint_dir is not None else [])
    with outputs.OutputLock(locked, what="report"):
        outputs.remove_stale_temporaries(out)                # .<out>.md.<random>.tmp of a killed write
        fingerprint = {"experiment": module, "setup": dataclasses.asdict(setup), "options": options or {}}
        yield types.SimpleNamespace(command=command, provenance=prov, cells=Cells(checkpoint_dir, fingerprint))


def plot_by_fraction(panels, path: Path, ylabel: str, provenance: dict | None = None) -> None:
    """panels: [(title, records, methods, value)], value(record) -> float; records carry 'method' and
    'fraction' (the method 'full' is drawn as a dashed line). Writes a small PNG to `path`."""
    fig, axes = pyplot().subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
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
    save_figure(fig, path, dpi=100, provenance=provenance)
