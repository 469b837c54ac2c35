"""Byte-level tokens and fixed-length windows of text documents, with their document and domain.

Tokenizer: a document becomes [BOS, b_1 + OFFSET, ..., b_T + OFFSET, EOS] over its UTF-8 bytes b_t,
so ids are PAD = 0, BOS = 1, EOS = 2 and bytes 3..258 (VOCAB_SIZE = 259); it is deterministic and
needs no files.

Windows: each document's tokens are cut into windows of L tokens starting at 0, s, 2s, ... until a
window reaches the document's end; the last one is padded with PAD. With next_token_loss (targets are
tokens[1:], PAD targets ignored) the default stride s = L - 1 makes consecutive windows share one
token, so every token of a document after BOS is a target exactly once and no target pair crosses a
document boundary. A window whose only real token is the one shared with its predecessor (no target)
is never produced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from jdps.data.corruptions import Seed, subsample_groups
from jdps.data.dataset import Dataset, DatasetInfo, Document
from jdps.errors import InputError
from jdps.validate import check_labels

PAD_ID = 0  # token id 0 is padding in every jdps tokenizer (jdps.losses.PAD_ID)
BOS_ID = 1
EOS_ID = 2
OFFSET = 3  # token id of byte b is b + OFFSET
VOCAB_SIZE = 256 + OFFSET


def encode(text: str) -> np.ndarray:
    """int32 [T + 2]: BOS, the UTF-8 bytes of `text` shifted by OFFSET, EOS."""
    body = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + OFFSET
    return np.concatenate([[BOS_ID], body, [EOS_ID]]).astype(np.int32)


def decode(tokens) -> str:
    """The text of byte tokens (PAD, BOS, EOS dropped); a character cut by a window edge decodes as U+FFFD."""
    t = np.asarray(tokens).ravel()
    if t.size and (t.min() < 0 or t.max() >= VOCAB_SIZE):
        raise InputError(f"token ids must lie in [0, {VOCAB_SIZE}), got min {t.min()}, max {t.max()}; "
                         "pass tokens from jdps.data.text.encode")
    return bytes((t[t >= OFFSET] - OFFSET).astype(np.uint8).tolist()).decode("utf-8", errors="replace")


def _starts(t: int, length: int, stride: int) -> list[int]:
    """Window starts for a document of t >= 2 tokens: 0, s, 2s, ... up to the first window reaching t."""
    starts = [0]
    while starts[-1] + length < t:
        starts.append(starts[-1] + stride)
    if t - starts[-1] < 2:  # only its shared token left: no next-token target
        starts.pop()
    return starts


def windows(documents: Sequence[Document], length: int, *, stride: int | None = None, labels=None,
            max_windows_per_doc: int | None = None, domain_names: Sequence[str] | None = None,
            info: DatasetInfo | None = None) -> Dataset:
    """Cut documents into windows -> Dataset with x int32 [N, L] (PAD-padded), y, ids and columns.

    stride s in [1, L] defaults to L - 1 (see the module doc). y is None (language modelling) or, with
    `labels` int [D] (one per document), each window's document label. Columns: `doc` int [N] (position
    in `documents`), `domain` int [N] (index into `info.domain_names`, which are `domain_names` or the
    domains in order of first appearance), `start` int [N] (the window's first token in its document).
    ids are "doc_id@start". Empty documents give no window; `max_windows_per_doc` keeps each document's
    first windows only (e.g. one window per document for classification).
    """
    length = int(length)
    if length < 2:
        raise InputError(f"window length must be >= 2 (a next-token target needs two tokens), got {length}")
    stride = length - 1 if stride is None else int(stride)
    if not 1 <= stride <= length:
        raise InputError(f"stride must lie in [1, {length}] for windows of length {length}, got {stride}; "
                         f"stride {length - 1} (the default) predicts every token exactly once")
    if max_windows_per_doc is not None and max_windows_per_doc < 1:
        raise InputError(f"max_windows_per_doc must be >= 1 or None, got {max_windows_per_doc}")
    if labels is not None:
        labels = check_labels("labels", labels)
        if len(labels) != len(documents):
            raise InputError(f"labels has {len(labels)} entries for {len(documents)} documents; "
                             "give one label per document")
    names = list(domain_names) if domain_names is not None else list(dict.fromkeys(d.domain for d in documents))
    domain_of = {name: i for i, name in enumerate(names)}
    unknown = sorted({d.domain for d in documents} - domain_of.keys())
    if unknown:
        raise InputError(f"documents have domains {unknown} missing from domain_names; add them to domain_names")

    rows, doc, start, ids = [], [], [], []
    for i, d in enumerate(documents):
        if not d.text:
            continue
        tokens = encode(d.text)
        for s in _starts(len(tokens), length, stride)[:max_windows_per_doc]:
            rows.append(tokens[s:s + length])
            doc.append(i)
            start.append(s)
            ids.append(f"{d.doc_id}@{s}")
    x = np.full((len(rows), length), PAD_ID, np.int32)
    for r, w in enumerate(rows):
        x[r, :len(w)] = w
    doc = np.asarray(doc, np.int64)
    domain = np.asarray([domain_of[documents[i].domain] for i in doc], np.int64)
    info = info or DatasetInfo(name="text windows", provenance="user documents", licence="unknown")
    info = dataclasses.replace(info, domain_names=tuple(names))
    return Dataset(x=x, y=None if labels is None else labels[doc], info=info, ids=np.asarray(ids, dtype=str),
                   columns={"doc": doc, "domain": domain, "start": np.asarray(start, np.int64)})


def mixture(corpora: Mapping[str, Sequence[Document]], length: int, *, stride: int | None = None,
            domain_by: str = "document", proportions: Mapping[str, float] | None = None,
            caps: Mapping[str, int] | None = None, seed: Seed = 0, info: DatasetInfo | None = None) -> Dataset:
    """Window several corpora into one LM dataset whose `domain` column is a genre / book or a source.

    `corpora` maps a source name to its documents; `domain_by` is "document" (each Document.domain, e.g.
    genre or book) or "corpus" (the source name). Document ids become "source/doc_id", `doc` indexes the
    corpora's documents concatenated in order. Optionally, per domain name:
    `caps` keeps at most caps[d] windows of d; `proportions` (weights p_d >= 0, normalised; domains not
    named are dropped) then keeps n_d = floor(N p_d) windows with N the largest total every domain can
    supply. Windows kept are drawn uniformly without replacement by `seed` and stay in corpus order.
    """
    if domain_by not in ("document", "corpus"):
        raise InputError(f"domain_by must be 'document' or 'corpus', got {domain_by!r}")
    docs = [dataclasses.replace(d, doc_id=f"{src}/{d.doc_id}", domain=src if domain_by == "corpus" else d.domain)
            for src, corpus in corpora.items() for d in corpus]
    info = info or DatasetInfo(name="mixture of " + " + ".join(corpora), provenance="windows of " +
                               ", ".join(corpora), licence="see each corpus")
    data = windows(docs, length, stride=stride, info=info)
    if proportions is None and caps is None:
        return data
    names = data.info.domain_names
    counts = np.bincount(data.columns["domain"], minlength=len(names))
    for what, given in (("caps", caps), ("proportions", proportions)):
        unknown = sorted(set(given or ()) - set(names))
        if unknown:
            raise InputError(f"{what} names domains {unknown} that the corpora do not hold; "
                             f"the domains are {list(names)}")
    if caps is not None:
        if any(int(c) != c or c < 0 for c in caps.values()):
            raise InputError(f"caps must be non-negative integers (windows per domain), got {dict(caps)}")
        counts = np.array([min(n, int(caps.get(d, n))) for d, n in zip(names, counts)])
    if proportions is not None:
        p = np.array([float(proportions.get(d, 0.0)) for d in names])
        if not (np.all(p >= 0) and p.sum() > 0 and np.all(np.isfinite(p))):
            raise InputError("proportions must be non-negative weights with a positive sum, "
                             f"got {dict(proportions)}")
        p = p / p.sum()
        total = min(n / q for n, q in zip(counts, p) if q > 0)
        counts = np.floor(total * p + 1e-9).astype(np.int64)
    return subsample_groups(data, counts, column="domain", seed=seed)
