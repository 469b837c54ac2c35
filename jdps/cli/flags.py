"""The flags the commands share, each defined once (docs/cli.md is their table), and the help format.

Choices that the library defines (iHVP methods, presets, solvers) are `Lazy`: read from their module
the first time argparse needs them (a value to check, or --help), so building the parser imports no jax.
"""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable, Sequence

from jdps.errors import InputError


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line: `jdps CMD: error: ... (see jdps CMD --help)`."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help with "(default: ...)" after every flag that has one (not after None or an off switch)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Lazy(Sequence):
    """A tuple of names computed on first use by `load()`."""

    def __init__(self, load: Callable[[], Sequence[str]]):
        self._load, self._names = load, None

    def _get(self) -> tuple:
        if self._names is None:
            self._names = tuple(self._load())
        return self._names

    def __getitem__(self, i):
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())


def attr(module: str, name: str) -> Lazy:
    """The names `module.name` (a tuple of strings, or a dict's keys), read on first use from the module's
    source when it assigns them as a literal, so that --help imports no jax; else by importing the module."""
    return Lazy(lambda: literal_names(module, name))


def literal_names(module: str, name: str) -> tuple[str, ...]:
    """`module.name` as a tuple of strings: the literal tuple / list / dict keys the module's source assigns to
    `name` (read with ast, importing nothing), else the imported value (its keys for a dict)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if not path.is_file():
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            if not any(isinstance(t, ast.Name) and t.id == name for t in targets) or node.value is None:
                continue
            value = node.value
            items = value.keys if isinstance(value, ast.Dict) else getattr(value, "elts", None)
            if items is not None and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in items):
                return tuple(k.value for k in items)
    value = getattr(importlib.import_module(module), name)
    return tuple(value)


def command(subparsers, name: str, help: str, run: Callable, doc: str | None = None) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help, description=doc or help, formatter_class=Formatter)
    p.set_defaults(run=run)
    debug(p, argparse.SUPPRESS)
    return p


def debug(p, default=False) -> None:
    """--debug, on the main parser and every command (SUPPRESS there, so `jdps --debug CMD` holds)."""
    p.add_argument("--debug", action="store_true", default=default,
                   help="on an error, show the Python traceback instead of the one-line message")


# --- checked values: argparse types whose errors name the flag and the fix (one line, exit 2) -----------

def _number(text: str, kind):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{'an integer' if kind is int else 'a number'} is needed, got "
                                         f"{text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"a finite number is needed, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"a positive integer (1, 2, ...) is needed, got {text!r}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"an integer >= 0 is needed, got {text!r}")
    return value


def seed_int(text: str) -> int:
    """A seed: an integer in [0, 2**63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is an integer >= 0 (e.g. 0), got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed is an integer in [0, 2**63) (e.g. 0), got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a number > 0 is needed, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a number >= 0 is needed, got {text!r}")
    return value


def finite_float(text: str) -> float:
    return _number(text, float)


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a fraction in (0, 1] is needed, got {text!r}; to select k examples "
                                         "pass --budget k")
    return value


def options(args, exclude=()) -> dict:
    """The command's options as a JSON-ready dict (the parsed flags but the run function and `exclude`)."""
    skip = {"run", "argv", "default_epochs", *exclude}
    return {k: v for k, v in sorted(vars(args).items()) if k not in skip and not callable(v)}


def choice(p, flag: str, names: Sequence[str], help: str, **kwargs) -> None:
    """A flag whose value is one of `names` (a tuple, or `Lazy`: then listed by --help only)."""
    metavar = "NAME" if isinstance(names, Lazy) else None
    p.add_argument(flag, choices=names, metavar=metavar, help=f"{help}: %(choices)s", **kwargs)


def seed(p, what: str = "model init and training order") -> None:
    p.add_argument("--seed", type=seed_int, default=0, help=f"random seed, an integer >= 0 ({what})")


def run_length(p, epochs: int, what: str = "training") -> None:
    """--epochs E | --steps S: exactly one may be given; neither means `epochs` epochs."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=positive_int, help=f"{what}: epochs over the training set (default: {epochs} "
                                                       "unless --steps)")
    g.add_argument("--steps", type=positive_int, help=f"{what}: optimizer steps instead of epochs")
    p.set_defaults(default_epochs=epochs)


def length(args) -> dict:
    """{"epochs": E, "steps": None} or {"epochs": None, "steps": S} from --epochs / --steps, checked."""
    if args.steps is not None:
        if args.steps < 1:
            raise InputError(f"--steps must be at least 1, got {args.steps}")
        return {"epochs": None, "steps": args.steps}
    epochs = args.default_epochs if args.epochs is None else args.epochs
    if epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    return {"epochs": epochs, "steps": None}


def size(p, required: bool, note: str = "") -> None:
    """--budget K | --fraction F (exactly one when `required`)."""
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--budget", type=positive_int, help=f"k, the number of examples to select{note}")
    g.add_argument("--fraction", type=fraction, help=f"select ceil(fraction N) of the N examples{note}")


def out(p, help: str, required: bool = True) -> None:
    p.add_argument("--out", required=required, help=help)


def store(p, what: str) -> None:
    """--store DIR: a sharded feature store (jdps.store), a zarr v3 folder that every process writes its rows of."""
    p.add_argument("--store", metavar="DIR",
                   help=f"{what} (jdps.store: a zarr v3 folder of row chunks, written by every process in "
                        "parallel; the same command resumes a killed write, and readers refuse an incomplete one)")


def checkpoint_dir(p, what: str) -> None:
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help=f"save progress in DIR ({what}); the same command with the same DIR resumes a killed run "
                        "to the uninterrupted result (a DIR of other inputs or options is refused)")


def distributed(p) -> None:
    """--coordinator, --num-processes, --process-id (a multi-process run, jdps.distributed) and --mesh-model."""
    g = p.add_argument_group("multi-process runs (one process per host; docs/multihost.md)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address and a free port; with --num-processes and --process-id this process "
                        "joins a jax.distributed run (default: JDPS_COORDINATOR, or a cluster launcher's environment)")
    g.add_argument("--num-processes", type=positive_int, help="processes P of the run (default: JDPS_NUM_PROCESSES)")
    g.add_argument("--process-id", type=nonneg_int, help="this process's index I in [0, P); process 0 writes the "
                                                          "outputs (default: JDPS_PROCESS_ID)")
    g.add_argument("--mesh-model", type=positive_int, default=1,
                   help="devices of the mesh's 'model' axis, which splits each large parameter matrix (the rest "
                        "form the 'data' axis the examples are split over)")


def quiet(p) -> None:
    p.add_argument("--quiet", action="store_true", help="print only the final one-line JSON summary")


def num_classes(p) -> None:
    p.add_argument("--num-classes", type=positive_int, help="classes C of the classifier; every label must lie in [0, C) "
                                                   "(default: max label of the training file + 1)")


def batch_size(p, default: int) -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, help="examples a step")


def lr(p, default: float | None, help: str = "Adam learning rate") -> None:
    p.add_argument("--lr", type=positive_float, default=default, help=help)


def model(p, kinds: tuple[str, ...], default: str | None, help: str = "the model") -> None:
    p.add_argument("--model", choices=kinds, default=default, help=help)
    p.add_argument("--hidden", default="256,128", help="MLP hidden widths, comma-separated ('' for none)")


def csv(text: str, kind, flag: str) -> tuple:
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def hidden(args) -> tuple[int, ...]:
    widths = csv(args.hidden, int, "--hidden")
    if any(w < 1 for w in widths):
        raise InputError(f"--hidden takes positive layer widths (e.g. 256,128, or '' for none), got {args.hidden!r}")
    return widths
