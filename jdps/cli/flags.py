"""The flags the commands share, each defined once (docs/cli.md is their table), and the help format.

Choices that the library defines (iHVP methods, presets, solvers) are `Lazy`: read from their module
the first time argparse needs them (a value to check, or --help), so building the parser imports no jax.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence

from jdps.errors import InputError


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
    """The sequence `module.name`, imported on first use."""
    return Lazy(lambda: getattr(importlib.import_module(module), name))


def command(subparsers, name: str, help: str, run: Callable, doc: str | None = None) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help, description=doc or help, formatter_class=Formatter)
    p.set_defaults(run=run)
    return p


def choice(p, flag: str, names: Sequence[str], help: str, **kwargs) -> None:
    """A flag whose value is one of `names` (a tuple, or `Lazy`: then listed by --help only)."""
    metavar = "NAME" if isinstance(names, Lazy) else None
    p.add_argument(flag, choices=names, metavar=metavar, help=f"{help}: %(choices)s", **kwargs)


def seed(p, what: str = "model init and training order") -> None:
    p.add_argument("--seed", type=int, default=0, help=f"random seed ({what})")


def run_length(p, epochs: int, what: str = "training") -> None:
    """--epochs E | --steps S: exactly one may be given; neither means `epochs` epochs."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=int, help=f"{what}: epochs over the training set (default: {epochs} "
                                              "unless --steps)")
    g.add_argument("--steps", type=int, help=f"{what}: optimizer steps instead of epochs")
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
    g.add_argument("--budget", type=int, help=f"k, the number of examples to select{note}")
    g.add_argument("--fraction", type=float, help=f"select ceil(fraction N) of the N examples{note}")


def out(p, help: str, required: bool = True) -> None:
    p.add_argument("--out", required=required, help=help)


def quiet(p) -> None:
    p.add_argument("--quiet", action="store_true", help="print only the final one-line JSON summary")


def num_classes(p) -> None:
    p.add_argument("--num-classes", type=int, help="classes C of the classifier; every label must lie in [0, C) "
                                                   "(default: max label of the training file + 1)")


def batch_size(p, default: int) -> None:
    p.add_argument("--batch-size", type=int, default=default, help="examples a step")


def lr(p, default: float | None, help: str = "Adam learning rate") -> None:
    p.add_argument("--lr", type=float, default=default, help=help)


def model(p, kinds: tuple[str, ...], default: str | None, help: str = "the model") -> None:
    p.add_argument("--model", choices=kinds, default=default, help=help)
    p.add_argument("--hidden", default="256,128", help="MLP hidden widths, comma-separated ('' for none)")


def csv(text: str, kind, flag: str) -> tuple:
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def hidden(args) -> tuple[int, ...]:
    return csv(args.hidden, int, "--hidden")
