"""Small pre-LayerNorm transformers: a causal language model and a sequence classifier.

Tokens x [B, L] (int, L <= max_len; id 0 is padding) are embedded with learned token and position
embeddings, h_0 = E[x] + P[:L]  [B, L, d], then each block applies

    h <- h + o(MHA(q(LN1 h), k(LN1 h), v(LN1 h)))
    h <- h + fc2(gelu(fc1(LN2 h)))

with multi-head attention over H heads of width d/H,

    A_hqk = softmax_k( q_hq . k_hk / sqrt(d/H)  where allowed(q, k), else -inf ),   out_hq = sum_k A_hqk v_hk.

Key k is allowed for query q when it is not padding (or k = q, so every row has one allowed key and
stays finite) and, in the language model, k <= q (causal). The LM ends with a final LayerNorm and the
output `head` -> logits [B, L, V]; the classifier ends with the final LayerNorm, a mean over its non-pad
tokens and the `head` -> logits [B, C]. Every projection is a jdps `Dense`: `blocks[i].attn.{q,k,v,o}`,
`blocks[i].{fc1,fc2}` and `head`, so the gradient engine finds them by path. No dropout: the models are
deterministic functions of their parameters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jdps.errors import InputError
from jdps.losses import PAD_ID
from jdps.models.functional import Params, functional
from jdps.models.layers import Dense
from jdps.task import Task, classification_task, lm_task


class Attention(nnx.Module):
    """Multi-head self-attention: x [B, L, d], allowed [B, L, L] bool (query, key) -> [B, L, d]."""

    def __init__(self, d_model: int, n_heads: int, *, rngs: nnx.Rngs):
        if d_model % n_heads:
            raise InputError(f"d_model={d_model} is not divisible by n_heads={n_heads}; "
                             "choose n_heads that divides d_model")
        self.n_heads = n_heads
        self.q = Dense(d_model, d_model, rngs=rngs)
        self.k = Dense(d_model, d_model, rngs=rngs)
        self.v = Dense(d_model, d_model, rngs=rngs)
        self.o = Dense(d_model, d_model, rngs=rngs)

    def __call__(self, x, allowed):
        b, length, d = x.shape
        heads = lambda t: t.reshape(b, length, self.n_heads, d // self.n_heads)
        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // self.n_heads)
        scores = jnp.where(allowed[:, None], scores, jnp.finfo(scores.dtype).min)
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)
        return self.o(out.reshape(b, length, d))


class Block(nnx.Module):
    """One pre-LayerNorm transformer block: attention then a GELU MLP, each residual."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(d_model, rngs=rngs)
        self.attn = Attention(d_model, n_heads, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d_model, rngs=rngs)
        self.fc1 = Dense(d_model, d_ff, rngs=rngs)
        self.fc2 = Dense(d_ff, d_model, rngs=rngs)

    def __call__(self, h, allowed):
        h = h + self.attn(self.ln1(h), allowed)
        return h + self.fc2(jax.nn.gelu(self.fc1(self.ln2(h))))


class _Trunk(nnx.Module):
    """Embeddings, blocks and final LayerNorm shared by the LM and the classifier."""

    causal: bool

    def __init__(self, vocab_size: int, d_model: int, n_heads: int, n_layers: int, max_len: int, *,
                 rngs: nnx.Rngs, d_ff: int | None = None):
        init = nnx.initializers.normal(0.02)
        self.max_len = max_len
        self.tok_embed = nnx.Embed(vocab_size, d_model, embedding_init=init, rngs=rngs)
        self.pos_embed = nnx.Embed(max_len, d_model, embedding_init=init, rngs=rngs)
        self.blocks = nnx.List([Block(d_model, n_heads, d_ff or 4 * d_model, rngs=rngs)
                                for _ in range(n_layers)])
        self.ln_f = nnx.LayerNorm(d_model, rngs=rngs)

    def hidden(self, tokens):
        """tokens [B, L] -> final hidden states [B, L, d] and the non-pad mask [B, L]."""
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise InputError(f"expected integer token ids of shape [batch, length], got {tokens.dtype} "
                             f"{tokens.shape}; tokenize the text first")
        length = tokens.shape[1]
        if length > self.max_len:
            raise InputError(f"sequence length {length} exceeds max_len={self.max_len}; "
                             f"cut windows to at most {self.max_len} tokens or build the model with a larger max_len")
        real = tokens != PAD_ID
        eye = jnp.eye(length, dtype=bool)
        allowed = real[:, None, :] | eye
        if self.causal:
            allowed = allowed & jnp.tril(jnp.ones((length, length), bool))
        h = self.tok_embed(tokens) + self.pos_embed(jnp.arange(length))
        for block in self.blocks:
            h = block(h, allowed)
        return self.ln_f(h), real


class TransformerLM(_Trunk):
    """Causal language model: tokens [B, L] -> next-token logits [B, L, vocab_size]."""

    causal = True

    def __init__(self, vocab_size: int, d_model: int, n_heads: int, n_layers: int, max_len: int, *,
                 rngs: nnx.Rngs, d_ff: int | None = None):
        super().__init__(vocab_size, d_model, n_heads, n_layers, max_len, rngs=rngs, d_ff=d_ff)
        self.head = Dense(d_model, vocab_size, rngs=rngs)

    def __call__(self, tokens):
        return self.head(self.hidden(tokens)[0])


class TransformerClassifier(_Trunk):
    """Bidirectional encoder with mean pooling over non-pad tokens: tokens [B, L] -> logits [B, C]."""

    causal = False

    def __init__(self, vocab_size: int, d_model: int, n_heads: int, n_layers: int, max_len: int,
                 num_classes: int, *, rngs: nnx.Rngs, d_ff: int | None = None):
        super().__init__(vocab_size, d_model, n_heads, n_layers, max_len, rngs=rngs, d_ff=d_ff)
        self.head = Dense(d_model, num_classes, rngs=rngs)

    def __call__(self, tokens):
        h, real = self.hidden(tokens)
        m = real[..., None].astype(h.dtype)
        return self.head((h * m).sum(1) / jnp.maximum(m.sum(1), 1.0))


def transformer_lm_task(key_or_seed, vocab_size: int, d_model: int = 64, n_heads: int = 4,
                        n_layers: int = 2, max_len: int = 128, d_ff: int | None = None) -> tuple[Task, Params]:
    """A next-token task (mean over non-pad targets) on a fresh TransformerLM, and its parameters."""
    module = TransformerLM(vocab_size, d_model, n_heads, n_layers, max_len, rngs=nnx.Rngs(key_or_seed),
                           d_ff=d_ff)
    model, params = functional(module)
    return lm_task(model), params


def transformer_classifier_task(key_or_seed, vocab_size: int, num_classes: int, d_model: int = 64,
                                n_heads: int = 4, n_layers: int = 2, max_len: int = 128,
                                d_ff: int | None = None) -> tuple[Task, Params]:
    """A cross-entropy task on a fresh TransformerClassifier, and its parameters."""
    module = TransformerClassifier(vocab_size, d_model, n_heads, n_layers, max_len, num_classes,
                                   rngs=nnx.Rngs(key_or_seed), d_ff=d_ff)
    model, params = functional(module)
    return classification_task(model), params
