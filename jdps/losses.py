"""Per-example losses on model outputs: each returns one value per example, shape [B]."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jdps.data.text import PAD_ID  # token id 0 is padding in every jdps tokenizer


def cross_entropy(logits, labels):
    """l_i = -log softmax(logits_i)[y_i];  logits [B, C], labels [B] int -> [B]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def next_token_loss(logits, tokens, pad_id: int = PAD_ID):
    """Mean next-token cross-entropy over each window's non-pad targets.

    logits [B, L, V] predict tokens[:, 1:]; l_i = sum_t m_it ce_it / max(1, sum_t m_it), with
    m_it = [tokens[i, t+1] != pad_id]  -> [B].
    """
    targets = tokens[:, 1:]
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    ce = -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    mask = (targets != pad_id).astype(jnp.float32)
    return (ce * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)


def margin(logits, labels):
    """The correct-class margin f_i = log p_y - log(1 - p_y) = z_y - logsumexp_{c != y} z_c (TRAK's output
    function; higher: more confident in the label);  logits [B, C], labels [B] int -> [B]."""
    z = logits.astype(jnp.float32)
    y = labels.astype(jnp.int32)
    correct = jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0]
    others = jnp.where(jax.nn.one_hot(y, z.shape[-1], dtype=bool), -jnp.inf, z)
    return correct - jax.nn.logsumexp(others, axis=-1)
