from __future__ import annotations

import pathlib
from pathlib import Path

import numpy as np
import pytest

from nnchain.data import load_dataset
from nnchain.errors import SpecError


def load(path: Path, target: str | None = None):
    return load_dataset(path=str(path), target=target, rng=np.random.default_rng(0))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_string_labels_sorted(tmp_path: Path) -> None:
    path = write(tmp_path, "flowers.csv",
                 "a,label,b\n1,versicolor,2\n3,setosa,4\n\n5,virginica,6\n7,setosa,8\n")
    dataset = load(path, "label")
    np.testing.assert_array_equal(dataset.x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert dataset.x.dtype == np.float64
    np.testing.assert_array_equal(dataset.y, [1, 0, 2, 0])
    assert dataset.y.dtype == np.int64
    assert dataset.class_names == ("setosa", "versicolor", "virginica")
    assert dataset.feature_names == ("a", "b")
    assert dataset.task == "multiclass" and dataset.n_classes == 3


def test_csv_numeric_labels_in_numeric_order(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "x,y\n0.5,10\n1.5,2\n2.5,10\n3.5,2\n")
    dataset = load(path, "y")
    np.testing.assert_array_equal(dataset.y, [1, 0, 1, 0])
    assert dataset.class_names == ("2", "10")
    assert dataset.task == "binary"


def test_csv_integral_float_labels_are_classes(tmp_path: Path) -> None:
    dataset = load(write(tmp_path, "d.csv", "x,y\n0,1.0\n1,0.0\n2,1.0\n"), "y")
    assert dataset.task == "binary" and dataset.class_names == ("0", "1")


def test_csv_regression(tmp_path: Path) -> None:
    dataset = load(write(tmp_path, "r.csv", "x1,x2,price\n1,2,0.5\n3,4,1.25\n5,6,-2\n"), "price")
    assert dataset.task == "regression" and dataset.n_classes == 0
    assert dataset.class_names == ()
    assert dataset.y.shape == (3, 1) and dataset.y.dtype == np.float64
    np.testing.assert_array_equal(dataset.y[:, 0], [0.5, 1.25, -2])


@pytest.mark.parametrize(("text", "target", "field", "fragments"), [
    ("a,b\n1,2\n3,4\n", "label", "data.target", ["'label'", "a, b"]),
    ("a,b,label\n1,2,x\n3,oops,y\n", "label", "data.path", ["'b'", "'oops'", "line 3"]),
    ("a,b,label\n1,,x\n3,4,y\n", "label", "data.path", ["'b'", "line 2"]),
    ("a,label\n1,x\n2,x\n", "label", "data.target", ["2 classes", "'x'"]),
    ("a,label\n1,x\n", "label", "data.path", ["2 samples"]),
    ("a,label\nnan,x\n1,y\n", "label", "data.path", ["finite", "'a'"]),
    ("a,label\n1,x\n2,y,3\n", "label", "data.path", ["line 3"]),
    ("a,a,label\n1,2,x\n", "label", "data.path", ["unique", "'a'"]),
    ("a,label\n1,x\n2,\n", "label", "data.target", ["empty", "line 3"]),
    ("a,label\n1,0.5\n2,inf\n", "label", "data.target", ["finite"]),
    ("label\nx\ny\n", "label", "data.path", ["feature column"]),
    ("", "label", "data.path", ["header"]),
    ("a,b\n1,2\n3,4\n", None, "data.target", ["label column"]),
])
def test_bad_csv(tmp_path: Path, text: str, target: str | None, field: str,
                 fragments: list[str]) -> None:
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(SpecError) as caught:
        load(path, target)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)
    for fragment in fragments:
        assert fragment in caught.value.message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    with pytest.raises(SpecError) as caught:
        load(path, "label")
    assert caught.value.field == "data.path"
    assert caught.value.message == f"file must exist, got {str(path)!r}"


def test_unknown_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", "a,b\n1,2\n")
    with pytest.raises(SpecError) as caught:
        load(path, "b")
    assert caught.value.field == "data.path" and ".csv" in caught.value.message


def test_npz_classification_round_trip(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.array([5, 3, 5, 7, 3, 7])
    np.savez(tmp_path / "c.npz", X=x, y=y)
    dataset = load(tmp_path / "c.npz")
    np.testing.assert_array_equal(dataset.x, x)
    assert dataset.x.dtype == np.float64
    np.testing.assert_array_equal(dataset.y, [1, 0, 1, 2, 0, 2])
    assert dataset.class_names == ("3", "5", "7") and dataset.task == "multiclass"
    assert dataset.feature_names == ("x0", "x1")


def test_npz_regression_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(5, 3))
    y = np.linspace(0.1, 0.9, 10).reshape(5, 2)
    np.savez(tmp_path / "r.npz", X=x, y=y)
    dataset = load(tmp_path / "r.npz")
    assert dataset.task == "regression" and dataset.y.shape == (5, 2)
    np.testing.assert_array_equal(dataset.y, y)
    np.savez(tmp_path / "r1.npz", X=x, y=y[:, 0])
    assert load(tmp_path / "r1.npz").y.shape == (5, 1)


def test_npz_integral_floats_are_classes(tmp_path: Path) -> None:
    np.savez(tmp_path / "b.npz", X=np.zeros((4, 1)), y=np.array([0.0, 1.0, 1.0, 0.0]))
    dataset = load(tmp_path / "b.npz")
    assert dataset.task == "binary" and dataset.y.dtype == np.int64


@pytest.mark.parametrize(("arrays", "fragment"), [
    ({"X": np.zeros((3, 2))}, "'y'"),
    ({"X": np.zeros(3), "y": np.zeros(3)}, "2-D"),
    ({"X": np.zeros((3, 2)), "y": np.zeros(4)}, "rows"),
    ({"X": np.full((3, 2), np.inf), "y": np.array([0, 1, 0])}, "finite"),
])
def test_bad_npz(tmp_path: Path, arrays: dict, fragment: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SpecError) as caught:
        load(tmp_path / "bad.npz")
    assert caught.value.field == "data.path" and fragment in caught.value.message


def test_npz_refuses_target(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", X=np.zeros((2, 1)), y=np.array([0, 1]))
    with pytest.raises(SpecError) as caught:
        load(tmp_path / "c.npz", "y")
    assert caught.value.field == "data.target"


def test_not_an_npz_archive(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(SpecError) as caught:
        load(tmp_path / "junk.npz")
    assert caught.value.field == "data.path"


class Payload:
    """Unpickling this creates the marker file: proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize("key", ["X", "y"])
def test_npz_with_object_array_is_refused_without_unpickling(tmp_path: Path, key: str) -> None:
    marker = tmp_path / "pwned"
    arrays = {"X": np.zeros((2, 1)), "y": np.array([0, 1])}
    arrays[key] = np.array([Payload(marker), Payload(marker)], dtype=object)
    if key == "X":
        arrays[key] = arrays[key].reshape(2, 1)
    np.savez(tmp_path / "evil.npz", allow_pickle=True, **arrays)

    with pytest.raises(SpecError) as caught:
        load(tmp_path / "evil.npz")
    assert caught.value.field == "data.path"
    assert not marker.exists()

    # the payload is live: loading it the unsafe way does create the file
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as archive:
        archive[key]
    assert marker.exists()


def test_single_npy_array_named_npz(tmp_path: Path) -> None:
    with open(tmp_path / "single.npz", "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(SpecError) as caught:
        load(tmp_path / "single.npz")
    assert caught.value.field == "data.path" and "single" in caught.value.message


def test_npz_string_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", X=np.zeros((3, 1)), y=np.array(["cat", "ant", "cat"]))
    dataset = load(tmp_path / "s.npz")
    assert dataset.class_names == ("ant", "cat")
    np.testing.assert_array_equal(dataset.y, [1, 0, 1])
