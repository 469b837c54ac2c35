"""One model from the data's shape: the task and initial parameters every entry point builds.

    task, params = build_task("cnn", train.x.shape[1:], num_classes=10, seed=0)

x_shape is the shape of ONE example (the data's x is [N, *x_shape]):

    mlp          any x_shape; the inputs are flattened to prod(x_shape) features; `hidden` widths
    cnn          images: (H, W) grey images get a channel axis, (H, W, 1); (H, W, C) as they are;
                 H and W at least 4 (the CNN pools twice by 2)
    transformer  token windows (T,): the causal LM (next-token loss) with max_len T; num_classes is
                 the vocabulary size (default `jdps.data.text.VOCAB_SIZE`, the byte tokens);
                 `transformer_options`: d_model, n_heads, n_layers, d_ff

A shape a model cannot take is an `InputError` that names the model to use instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from jdps.errors import InputError

KINDS = ("mlp", "cnn", "transformer")
TRANSFORMER_OPTIONS = ("d_model", "n_heads", "n_layers", "d_ff")


def image_shape(x_shape: Sequence[int]) -> tuple[int, int, int]:
    """(H, W, C) of one image: (H, W) -> (H, W, 1); (H, W, C) unchanged; anything else an `InputError`."""
    shape = tuple(int(s) for s in x_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise InputError(f"the cnn needs images shaped [N, H, W] or [N, H, W, C]; got examples of shape "
                         f"{tuple(x_shape)}: use the mlp (--model mlp), or reshape x to images")
    if min(shape[:2]) < 4:
        raise InputError(f"the cnn pools twice by 2, so images need H, W >= 4; got {shape[:2]}: use the mlp "
                         "(--model mlp)")
    return shape


def build_task(kind: str, x_shape: Sequence[int], num_classes: int | None = None, *, seed: int,
               hidden: Sequence[int] = (256, 128), **transformer_options):
    """(task, params): model `kind` (one of KINDS) for examples of shape `x_shape`, num_classes outputs,
    initialised from `seed`; see the module docstring for the shape rules."""
    if kind not in KINDS:
        raise InputError(f"unknown model {kind!r}; choose one of {KINDS}")
    if kind != "transformer" and transformer_options:
        raise InputError(f"{sorted(transformer_options)} configure the transformer, not the {kind}")
    unknown = sorted(set(transformer_options) - set(TRANSFORMER_OPTIONS))
    if unknown:
        raise InputError(f"the transformer takes no option {unknown}; its options are {TRANSFORMER_OPTIONS}")
    if kind == "transformer":
        from jdps.data.text import VOCAB_SIZE
        from jdps.models.transformer import transformer_lm_task

        if len(x_shape) != 1:
            raise InputError(f"the transformer reads token windows [N, T]; got examples of shape {tuple(x_shape)}: "
                             "use the mlp or the cnn for arrays")
        vocab = VOCAB_SIZE if num_classes is None else _positive("the vocabulary size", num_classes)
        return transformer_lm_task(seed, vocab, max_len=int(x_shape[0]), **transformer_options)
    if num_classes is None:
        raise InputError(f"the {kind} classifier needs num_classes (the number of classes)")
    num_classes = _positive("num_classes", num_classes)
    if kind == "cnn":
        from jdps.models.cnn import cnn_task

        return cnn_task(seed, image_shape(x_shape), num_classes)
    from jdps.models.mlp import mlp_task

    return mlp_task(seed, math.prod(int(s) for s in x_shape), tuple(int(h) for h in hidden), num_classes)


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
