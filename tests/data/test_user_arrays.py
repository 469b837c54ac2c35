"""User arrays and npz files: what is accepted, and the error for each kind of bad input."""

import numpy as np
import pytest

from jdps.data.user_arrays import from_arrays, load_npz
from jdps.errors import InputError


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_round_trip_keeps_values_and_user_ids(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    ids = np.array(["u7", "u3", "u9", "u1"])
    d = load_npz(_save(tmp_path / "mine.npz", x=x, y=np.array([1, 0, 2, 1]), id=ids))
    np.testing.assert_array_equal(d.x, x)
    assert d.y.tolist() == [1, 0, 2, 1] and d.y.dtype == np.int32
    assert d.ids.tolist() == ["u7", "u3", "u9", "u1"]
    assert d.info.name == "mine" and "mine.npz" in d.info.provenance
    assert d.take([2, 0]).ids.tolist() == ["u9", "u7"]


def test_npz_without_labels_or_ids_numbers_rows_from_zero(tmp_path):
    d = load_npz(_save(tmp_path / "a.npz", x=np.zeros((3, 2, 2))))
    assert d.y is None and d.ids.tolist() == [0, 1, 2] and d.x.shape == (3, 2, 2)


@pytest.mark.parametrize("arrays, message", [
    (dict(inputs=np.zeros((2, 2))), r"no array 'x' \(it holds \['inputs'\]\).*np.savez"),
    (dict(x=np.zeros((3, 2)), y=np.array([0, 1])), r"mismatched lengths \{'x': 3, 'y': 2\}"),
    (dict(x=np.zeros((2, 2)), y=np.array([0.0, 1.0])), r"labels must be integers: pass y.astype\(int\)"),
    (dict(x=np.zeros((2, 2)), y=np.array([0.5, 1.0])), r"must be integer class ids"),
    (dict(x=np.zeros((2, 2)), y=np.array([0, -1])), r"negative labels"),
    (dict(x=np.array([[0.0, np.nan], [1.0, 2.0], [np.inf, 0.0]])),
     r"NaN or Inf in 2 row\(s\), first at index \[0, 2\]"),
    (dict(x=np.zeros((2, 2), np.uint8)), r"dtype uint8 but must be floating point; convert it with x.astype"),
    (dict(x=np.array([["a", "b"], ["c", "d"]])), r"dtype <U1 but must be floating point; x must be a numeric"),
    (dict(x=np.zeros((2, 2)), id=np.array([5, 5])), r"ids must be unique, but \[5\] occur more than once"),
    (dict(x=np.zeros((2, 2)), id=np.array([[1, 2]])), r"ids must be a 1-d array"),
    (dict(x=np.zeros((0, 2))), r"at least one example"),
    (dict(x=np.zeros((2, 2)), extra=np.zeros(2)), r"arrays \['extra'\] that jdps does not read"),
])
def test_bad_npz_gets_an_input_error_naming_the_problem(tmp_path, arrays, message):
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=message):
        load_npz(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="no file .*np.savez"):
        load_npz(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable npz file"):
        load_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "objects.npz", x=np.zeros((2, 1)), id=np.array([object(), object()], dtype=object))
    with pytest.raises(InputError, match="does not unpickle"):
        load_npz(tmp_path / "objects.npz")


def test_from_arrays_checks_labels_against_class_names():
    d = from_arrays(np.ones((2, 1)), [0, 1], name="pair", class_names=("no", "yes"))
    assert d.info.class_names == ("no", "yes") and d.info.name == "pair" and d.y.tolist() == [0, 1]
    with pytest.raises(InputError, match=r"outside \[0, 2\)"):
        from_arrays(np.ones((2, 1)), [0, 2], class_names=("no", "yes"))
