"""The Quad LM experiment's pure helpers (experiments/quad_lm.py): the low-quality window makers, the
document split, the token-budget repetition and cluster coverage, against hand counts."""

from collections import Counter

import numpy as np

from experiments import quad_lm as exp
from jdps.data.text import OFFSET, encode
from jdps.losses import PAD_ID


def test_shuffle_words_permutes_the_words_of_a_window():
    text = "in the beginning god created the heaven and the earth"
    tokens = encode(text)                                          # BOS ... EOS: both dropped
    out = exp.shuffle_words(tokens, 80, np.random.default_rng(0))
    assert out.shape == (80,) and out.dtype == np.int32
    body = out[out != PAD_ID]
    words = bytes((body - OFFSET).astype(np.uint8).tolist()).decode().split(" ")
    assert Counter(words) == Counter(text.split()) and words != text.split()
    assert (out[len(body):] == PAD_ID).all()
    np.testing.assert_array_equal(out, exp.shuffle_words(tokens, 80, np.random.default_rng(0)))


def test_shuffle_words_cuts_to_the_window_length():
    out = exp.shuffle_words(encode("word " * 40), 16, np.random.default_rng(1))
    assert out.shape == (16,) and (out != PAD_ID).all()


def test_header_block_is_the_text_before_the_first_blank_line():
    raw = "From: a@b\nSubject: hi\n  folded\n\nbody line\n\nmore"
    assert exp.header_block(raw) == "From: a@b\nSubject: hi\n  folded"
    assert exp.header_block("no blank line") == "no blank line"


def test_duplicate_rows_repeat_distinct_sources():
    rows = exp.duplicate_rows(50, 6, 4, np.random.default_rng(2))
    counts = Counter(rows.tolist())
    assert len(rows) == 24 and len(counts) == 6 and set(counts.values()) == {4}
    assert rows.min() >= 0 and rows.max() < 50 and (np.diff(rows) >= 0).all()


def test_split_documents_is_a_partition():
    rng = np.random.default_rng(3)
    val, ref, pool = exp.split_documents(200, True, rng)
    assert (len(val), len(ref), len(pool)) == (10, 6, 184)            # 5%, 3% of 200
    assert sorted(np.concatenate([val, ref, pool]).tolist()) == list(range(200))
    val, ref, pool = exp.split_documents(29, False, rng)
    assert (len(val), len(ref), len(pool)) == (4, 0, 25)              # at least 4; no reference


def test_repeat_to_spreads_the_budget_evenly():
    idx = np.array([3, 7, 11, 20, 21])
    rows = exp.repeat_to(idx, 23, np.random.default_rng(4))
    counts = Counter(rows.tolist())
    assert len(rows) == 23 and set(counts) == set(idx.tolist()) and set(counts.values()) <= {4, 5}


def test_coverage_counts_clusters_with_a_selected_row():
    labels = np.array([0, 0, 1, 2, 2, 3])
    assert exp.coverage(labels, [0, 1]) == 1
    assert exp.coverage(labels, [0, 2, 3, 4]) == 3
