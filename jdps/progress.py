"""Progress bars for long calls: one helper over tqdm, driven from the host between compiled calls.

Every long call takes `progress=`: False / None (silent, the library's default), True (a bar on stderr
with a rate and an ETA), a string (a bar with that label), or a callable (the epoch driver's hook
`progress(epoch, epochs, step, info)`, jdps.loop). The bar is updated between jit-compiled epochs or
blocks, never inside one, so it costs no step time.

    bar = progress.bar(True, total=20, desc="bads", unit="epoch")    # a tqdm bar, or a no-op one
    hook = progress.epochs(True, "train")                            # the epoch driver's hook, or None

Why tqdm: one small pure-Python package with no dependencies of its own, whose bars degrade to plain
lines in logs and pipes and show rate and ETA by default; rich draws finer bars but pulls in pygments and
markdown-it for nothing jdps needs. Setting the environment variable JDPS_PROGRESS=0 silences every bar
(the test suite sets it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def enabled(progress) -> bool:
    """Whether `progress` asks for a bar (True or a label) and JDPS_PROGRESS does not forbid it."""
    if progress is None or progress is False or callable(progress):
        return False
    return os.environ.get("JDPS_PROGRESS", "1") not in ("0", "false", "no")


class _Silent:
    """The bar when progress is off: every call does nothing."""

    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def bar(progress, *, total: int | None, desc: str = "", unit: str = "it"):
    """A tqdm bar of `total` units on stderr when `progress` asks for one (True or a label, which then
    replaces `desc`), else a silent stand-in with the same methods (update, set_postfix_str, close)."""
    if not enabled(progress):
        return _Silent()
    from tqdm.auto import tqdm

    label = progress if isinstance(progress, str) else desc
    return tqdm(total=total, desc=label, unit=unit, leave=True, dynamic_ncols=True, mininterval=0.5)


class Batches:
    """A re-iterable of batches (e.g. `jdps.data.batching.scoring_batches`) that draws a bar over each pass
    when `progress` asks for one; `len` and the batches are those of `batches`."""

    def __init__(self, batches, progress, desc: str, unit: str = "batch"):
        self.batches, self.progress, self.desc, self.unit = batches, progress, desc, unit

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        total = len(self.batches) if hasattr(self.batches, "__len__") else None
        with bar(self.progress, total=total, desc=self.desc, unit=self.unit) as b:
            for batch in self.batches:
                yield batch
                b.update(1)


def epochs(progress, desc: str = "epochs") -> Callable[[int, int, int, Any], None] | None:
    """The epoch driver's hook (`jdps.loop.run(progress=)`) for `progress`: a callable is returned as it
    is; True or a label gives a hook that draws an epoch bar (with the epoch's mean loss when the step's
    info carries one); off gives None."""
    if callable(progress):
        return progress
    if not enabled(progress):
        return None
    state = {"bar": None}

    def hook(epoch: int, total: int, step: int, info) -> None:
        if state["bar"] is None:
            state["bar"] = bar(progress, total=total, desc=desc, unit="epoch")
            state["bar"].update(epoch - 1)          # a resumed run starts part-way
        b = state["bar"]
        loss = _mean_loss(info)
        if loss is not None:
            b.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        b.update(1)
        if epoch >= total:
            b.close()

    return hook


def _mean_loss(info) -> float | None:
    """The mean of a `loss` entry of a step's info (a dict or a NamedTuple), when it has one."""
    import numpy as np

    if isinstance(info, np.ndarray):
        value = info                                        # plain training: the step losses [steps]
    else:
        value = info.get("loss") if isinstance(info, dict) else getattr(info, "loss", None)
    if value is None:
        return None
    try:
        return float(np.mean(np.asarray(value)))
    except (TypeError, ValueError):
        return None
