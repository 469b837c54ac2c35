"""Byte tokenizer and windows: round trips, hand-counted windows, next-token targets and domain mixtures."""

import jax
import numpy as np
import pytest

from jdps.data.dataset import Document
from jdps.data.text import BOS_ID, EOS_ID, VOCAB_SIZE, decode, encode, mixture, windows
from jdps.errors import InputError
from jdps.losses import next_token_loss

TEXTS = ["", "a", "plain ascii text.", "héllo wörld — ünïcode ✓", "emoji 🙂 and 中文", "x" * 37]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(text):
    tokens = encode(text)
    assert tokens.dtype == np.int32 and len(tokens) == len(text.encode("utf-8")) + 2
    assert tokens[0] == BOS_ID and tokens[-1] == EOS_ID and 0 < tokens.min() and tokens.max() < VOCAB_SIZE
    assert decode(tokens) == text


def test_encode_by_hand():
    np.testing.assert_array_equal(encode("ab"), [1, 100, 101, 2])  # ord('a') = 97, shifted by 3
    np.testing.assert_array_equal(encode("é"), [1, 0xC3 + 3, 0xA9 + 3, 2])
    assert VOCAB_SIZE == 259
    with pytest.raises(InputError, match="token ids"):
        decode([1, 300])


@pytest.mark.parametrize("n_bytes, length, stride, starts", [
    (8, 4, None, [0, 3, 6]),   # T = 10 tokens, stride 3: windows [0:4] [3:7] [6:10]
    (8, 4, 4, [0, 4, 8]),      # [8:10] still holds one target
    (7, 4, 4, [0, 4]),         # T = 9: a window at 8 would hold only EOS, no target
    (8, 16, None, [0]),        # one padded window
    (8, 10, None, [0]),        # exactly one full window
    (5, 3, 1, [0, 1, 2, 3, 4]),  # T = 7, last window [4:7]
])
def test_window_counts_by_hand(n_bytes, length, stride, starts):
    doc = Document("z" * n_bytes, "d", "doc")
    data = windows([doc], length, stride=stride)
    tokens = encode(doc.text)
    assert data.x.shape == (len(starts), length) and data.x.dtype == np.int32 and data.y is None
    np.testing.assert_array_equal(data.columns["start"], starts)
    for row, s in zip(data.x, starts):
        piece = tokens[s:s + length]
        np.testing.assert_array_equal(row[:len(piece)], piece)
        assert not row[len(piece):].any()  # padded with 0
    assert list(data.ids) == [f"doc@{s}" for s in starts]


def test_every_target_once_with_the_default_stride():
    rng = np.random.default_rng(0)
    docs = [Document("".join(rng.choice(list("abcé🙂 "), size=n)), "d", str(i))
            for i, n in enumerate([1, 5, 6, 7, 30, 61])]
    data = windows(docs, 8)
    for i, d in enumerate(docs):
        rows = data.x[data.columns["doc"] == i]
        targets = np.concatenate([r[1:][r[1:] != 0] for r in rows])
        np.testing.assert_array_equal(targets, encode(d.text)[1:])


def test_windowed_loss_equals_the_document_loss():
    """With a bigram model, sum_i next_token_loss_i * (targets in window i) is the document's total NLL."""
    table = np.random.default_rng(1).normal(size=(VOCAB_SIZE, VOCAB_SIZE)).astype(np.float32)
    logp = table - np.log(np.exp(table).sum(1, keepdims=True))
    docs = [Document("the quick brown fox jumps", "d", "0"), Document("över the lazy dög", "d", "1")]
    data = windows(docs, 6)
    losses = np.asarray(next_token_loss(jax.numpy.asarray(table[data.x]), data.x))
    n_targets = (data.x[:, 1:] != 0).sum(1)
    total = (losses * n_targets).sum()
    expected = sum(-logp[t[:-1], t[1:]].sum() for t in (encode(d.text) for d in docs))
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_columns_labels_and_domains():
    docs = [Document("first doc", "news", "a"), Document("", "news", "b"),
            Document("second document here", "fiction", "c"), Document("third", "news", "d")]
    data = windows(docs, 8, labels=[1, 0, 0, 1])
    assert data.info.domain_names == ("news", "fiction")  # order of first appearance
    # ceil((T - 1) / 7) windows: "first doc" T = 11 -> 2; "" none; 20 bytes, T = 22 -> 3; "third" T = 7 -> 1
    expected_docs = [0, 0, 2, 2, 2, 3]
    np.testing.assert_array_equal(data.columns["doc"], expected_docs)
    np.testing.assert_array_equal(data.columns["domain"], [0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(data.y, [1, 1, 0, 0, 0, 1])
    first = windows(docs, 8, labels=[1, 0, 0, 1], max_windows_per_doc=1)
    np.testing.assert_array_equal(first.columns["doc"], [0, 2, 3])
    named = windows(docs, 8, domain_names=["fiction", "news"])
    np.testing.assert_array_equal(named.columns["domain"], [1, 1, 0, 0, 0, 1])


def test_window_errors():
    docs = [Document("text", "d", "0")]
    with pytest.raises(InputError, match=">= 2"):
        windows(docs, 1)
    for stride in (0, 9):
        with pytest.raises(InputError, match="stride"):
            windows(docs, 8, stride=stride)
    with pytest.raises(InputError, match="one label per document"):
        windows(docs, 8, labels=[0, 1])
    with pytest.raises(InputError, match="missing from domain_names"):
        windows(docs, 8, domain_names=["other"])


def corpora():
    kjv = [Document(f"In the beginning {i} " * 3, book, f"{book}{i}")
           for book in ("Genesis", "Exodus") for i in range(5)]
    brown = [Document(f"A sentence of genre {g} number {i}. " * 2, g, f"{g}{i}")
             for g in ("news", "humor") for i in range(4)]
    return {"kjv": kjv, "brown": brown}


def domain_counts(data):
    names = data.info.domain_names
    return dict(zip(names, np.bincount(data.columns["domain"], minlength=len(names))))


def test_mixture_domains():
    by_doc = mixture(corpora(), 16)
    assert by_doc.info.domain_names == ("Genesis", "Exodus", "news", "humor")
    assert by_doc.ids[0].startswith("kjv/Genesis0@")
    by_src = mixture(corpora(), 16, domain_by="corpus")
    assert by_src.info.domain_names == ("kjv", "brown")
    np.testing.assert_array_equal(by_src.x, by_doc.x)
    counts = domain_counts(by_src)
    # hand count: a KJV document of T tokens gives ceil((T - 1) / 15) windows
    kjv_t = [len(d.text.encode()) + 2 for d in corpora()["kjv"]]
    assert counts["kjv"] == sum(-(-(t - 1) // 15) for t in kjv_t)


def test_mixture_caps_and_proportions():
    full = domain_counts(mixture(corpora(), 16, domain_by="corpus"))
    capped = mixture(corpora(), 16, domain_by="corpus", caps={"kjv": 7}, seed=0)
    assert domain_counts(capped) == {"kjv": 7, "brown": full["brown"]}
    mixed = mixture(corpora(), 16, domain_by="corpus", proportions={"kjv": 3, "brown": 1}, seed=0)
    total = min(full["kjv"] / 0.75, full["brown"] / 0.25)
    assert domain_counts(mixed) == {"kjv": int(total * 0.75), "brown": int(total * 0.25)}
    again = mixture(corpora(), 16, domain_by="corpus", proportions={"kjv": 3, "brown": 1}, seed=0)
    np.testing.assert_array_equal(again.ids, mixed.ids)
    other = mixture(corpora(), 16, domain_by="corpus", proportions={"kjv": 3, "brown": 1}, seed=1)
    assert list(other.ids) != list(mixed.ids)
    only = mixture(corpora(), 16, proportions={"news": 1}, seed=0)
    assert set(only.columns["domain"]) == {2}
    with pytest.raises(InputError, match="do not hold"):
        mixture(corpora(), 16, caps={"Leviticus": 3})
    with pytest.raises(InputError, match="domain_by"):
        mixture(corpora(), 16, domain_by="genre")


def test_mixture_of_real_kjv_and_brown():
    sources = pytest.importorskip("jdps.data.sources")
    from jdps.errors import MissingDatasetError
    try:
        kjv, brown = sources.kjv()[:40], sources.brown()[:20]
    except MissingDatasetError as e:
        pytest.skip(str(e))
    data = mixture({"kjv": kjv, "brown": brown}, 128, domain_by="corpus", proportions={"kjv": 1, "brown": 1})
    counts = domain_counts(data)
    assert counts["kjv"] == counts["brown"] > 0
    books = mixture({"kjv": kjv}, 128)
    assert set(books.info.domain_names) == {d.domain for d in kjv}
    for i, d in enumerate(kjv[:5]):  # windows tile each chapter: every next-token target exactly once
        rows = books.x[books.columns["doc"] == i]
        domains = books.columns["domain"][books.columns["doc"] == i]
        assert np.all(domains == books.info.domain_names.index(d.domain))
        np.testing.assert_array_equal(np.concatenate([r[1:][r[1:] != 0] for r in rows]), encode(d.text)[1:])
