"""A tiny tfds dataset, prepared here as ArrayRecord without TensorFlow, read back offline."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from jdps.data import tfds_source  # noqa: E402
from jdps.errors import InputError, MissingDatasetError  # noqa: E402

CLASSES = ("cat", "dog", "fox")
SIZES = {"train": 7, "test": 3}


def example(split, i):
    """The reference: example i of a split, known independently of any reader."""
    offset = 0 if split == "train" else 100
    return {"image": np.full((3, 2), offset + i, np.uint8), "label": (offset + i) % 3, "key": f"{split}-{i}"}


class JdpsTinyTest(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(3, 2), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=CLASSES),
            "key": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in SIZES}

    def _generate_examples(self, split):
        for i in range(SIZES[split]):
            yield f"{split}-{i}", example(split, i)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    JdpsTinyTest(data_dir=str(root), file_format="array_record").download_and_prepare()
    return root


@pytest.fixture
def offline(monkeypatch):
    """Any download, generation or network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download, generate or connect")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


def test_to_dataset_reads_every_example_back(prepared, offline):
    d = tfds_source.to_dataset(prepared / "jdps_tiny_test", split="train", x_key="image", y_key="label",
                               id_key="key", x_scale=255)
    keys = [k.decode() for k in d.ids]
    assert sorted(keys) == sorted(f"train-{i}" for i in range(7)) and len(d) == 7
    for row, key in enumerate(keys):
        ref = example("train", int(key.split("-")[1]))
        np.testing.assert_allclose(d.x[row], ref["image"] / 255.0, rtol=1e-6)
        assert d.y[row] == ref["label"]
    assert d.x.dtype == np.float32 and d.y.dtype == np.int32
    assert d.info.class_names == CLASSES and d.info.name == "jdps_tiny_test"


def test_data_source_gives_random_access_by_folder_version_folder_or_name(prepared, offline):
    by_folder = tfds_source.data_source(prepared / "jdps_tiny_test", split="test")
    by_version = tfds_source.data_source(prepared / "jdps_tiny_test" / "1.0.0", split="test")
    by_name = tfds_source.data_source("jdps_tiny_test", data_dir=prepared, split="test")
    for src in (by_folder, by_version, by_name):
        assert len(src) == 3
        got = sorted(int(e["image"][0, 0]) for e in src.__getitems__([0, 1, 2]))
        assert got == [100, 101, 102]
        assert src[2]["key"] == by_folder[2]["key"]
    assert len(tfds_source.data_source(prepared / "jdps_tiny_test", split="train[:2]")) == 2


def test_tfrecord_only_dataset_says_what_to_install_or_convert(prepared, tmp_path, offline):
    copy = tmp_path / "tfrecord_only" / "1.0.0"
    shutil.copytree(prepared / "jdps_tiny_test" / "1.0.0", copy)
    info = json.loads((copy / "dataset_info.json").read_text())
    info["fileFormat"] = "tfrecord"
    (copy / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match=r"stored as tfrecord only.*pip install 'jdps\[tf\]'.*tfds convert_format"):
        tfds_source.data_source(copy, split="train")


def test_missing_and_bad_requests(prepared, tmp_path, offline):
    with pytest.raises(MissingDatasetError, match="no dataset_info.json.*tfds build .*--file_format=array_record"):
        tfds_source.data_source(tmp_path, split="train")
    with pytest.raises(MissingDatasetError, match="no prepared tfds dataset 'absent_set_xyz'"):
        tfds_source.data_source("absent_set_xyz", data_dir=tmp_path, split="train")
    with pytest.raises(InputError, match=r"no split 'validation'; its splits are \['test', 'train'\]"):
        tfds_source.data_source(prepared / "jdps_tiny_test", split="validation")
    with pytest.raises(InputError, match=r"x_key='pixels' is not a feature.*\['image', 'key', 'label'\]"):
        tfds_source.to_dataset(prepared / "jdps_tiny_test", split="train", x_key="pixels")


def test_importing_jdps_data_modules_imports_no_optional_package():
    code = ("import sys, jdps.data.tfds_source, jdps.data.catalogue, jdps.data.user_arrays; "
            "print(sorted(m for m in ('tensorflow_datasets', 'tensorflow', 'sklearn', 'mnist1d', 'mlxtend') "
            "if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"
