"""Datasets read from the user's files: CSV with a header row, or NPZ holding X and y.

Targets decide the task. Strings or integers are class labels, mapped to 0..k-1 in sorted
order (numeric order for numbers); floats whose values are all integral count as integers.
Other floats are regression targets, y (n, m) float64. Every problem with a file is a
SpecError on "data.path" (or "data.target" for the label column), never a traceback.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable

import numpy as np

from nnchain.data.dataset import Dataset, check_features, classification_task, encode_labels
from nnchain.errors import SpecError, shown
from nnchain.limits import caps, check_cap
from nnchain.npz import open_npz

PATH_FIELD = "data.path"
TARGET_FIELD = "data.target"
MAX_LABEL_BYTES = 1024  # a string label of an .npz: 256 characters


def load_file(path: str, target: str | None) -> Dataset:
    """Dispatch on the extension (case-insensitive) after checking the file exists."""
    extension = os.path.splitext(path)[1].lower()
    loader = FILE_LOADERS.get(extension)
    if loader is None:
        raise SpecError(PATH_FIELD, f"must end in {' or '.join(FILE_LOADERS)}, got {path!r}")
    if not os.path.isfile(path):
        raise SpecError(PATH_FIELD, f"file must exist, got {path!r}")
    return loader(path, target)


def load_csv(path: str, target: str | None) -> Dataset:
    """A CSV whose header names the columns; `target` names the label column.

    Every other column is a numeric feature: x (n, d) float64 in file order.
    Blank lines are skipped; cells are stripped of surrounding spaces.
    """
    if target is None:
        raise SpecError(TARGET_FIELD, f"must name the label column of a CSV file, got nothing "
                                      f"for {path!r}")
    header, rows, lines = read_csv(path)
    if target not in header:
        raise SpecError(TARGET_FIELD, f"column {shown(target)} must exist in {path}, "
                                      f"columns are: {_listed(header)}")
    if len(header) < 2:
        raise SpecError(PATH_FIELD, f"a CSV needs at least one feature column besides "
                                    f"{shown(target)}, got none in {path}")
    target_index = header.index(target)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    feature_names = tuple(name for index, name in enumerate(header) if index != target_index)
    features = [_numeric_column(column, name, lines, path)
                for index, (name, column) in enumerate(zip(header, columns, strict=True))
                if index != target_index]
    x = np.column_stack(features) if rows else np.empty((0, len(feature_names)))
    check_features(x, feature_names, PATH_FIELD, path)
    return _with_targets(x, _csv_targets(columns[target_index], target, lines, path),
                         feature_names, TARGET_FIELD, f"column {shown(target)} of {path}")


def load_npz(path: str, target: str | None) -> Dataset:
    """An .npz archive holding X (n, d) and y (n,) or (n, m), read with allow_pickle=False.

    Object arrays are refused, never unpickled. Features are named x0..x{d-1}.
    """
    if target is not None:
        raise SpecError(TARGET_FIELD, f"only applies to CSV files, got {shown(target)} "
                                      f"for {path!r}")
    x, y = _read_npz(path)
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise SpecError(PATH_FIELD, f"X must be a 2-D numeric array, got shape {x.shape} "
                                    f"dtype {x.dtype} in {path}")
    if y.ndim not in (1, 2) or len(y) != len(x):
        raise SpecError(PATH_FIELD, f"y must be (n,) or (n, m) with n = {len(x)} rows of X, "
                                    f"got shape {y.shape} in {path}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    feature_names = tuple(f"x{index}" for index in range(x.shape[1]))
    check_features(x, feature_names, PATH_FIELD, path)
    return _with_targets(x, _npz_targets(y, path), feature_names, PATH_FIELD, f"y of {path}")


FILE_LOADERS: dict[str, Callable[[str, str | None], Dataset]] = {
    ".csv": load_csv,
    ".npz": load_npz,
}


def read_csv(path: str, field: str = PATH_FIELD) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, line number of each row); rows all as wide as the header.

    The header is checked (column cap, unique names) before any row is read, and every
    row's width and the row count as the rows stream in.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header: list[str] | None = None
            rows: list[list[str]] = []
            lines: list[int] = []
            max_rows = caps()["n_samples"]
            for row in reader:
                cells = [cell.strip() for cell in row]
                if not any(cells):
                    continue
                if header is None:
                    header = _check_header(cells, path, field)
                    continue
                if len(cells) != len(header):
                    raise SpecError(field, f"every row must have {len(header)} fields like "
                                           f"the header, got {len(cells)} on line "
                                           f"{reader.line_num} of {path}")
                if len(rows) == max_rows:
                    check_cap("n_samples", max_rows + 1, field, f"data rows in {path}")
                rows.append(cells)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SpecError(field, f"must be a readable UTF-8 CSV file, got {path} "
                               f"({_first_line(error)})") from None
    if header is None:
        raise SpecError(field, f"a CSV must start with a header row, got an empty file "
                               f"{path}")
    return header, rows, lines


def _check_header(header: list[str], path: str, field: str) -> list[str]:
    """At most the column cap of features (plus the label), names unique and non-empty:
    one pass over the names."""
    check_cap("columns", len(header) - 1, field, f"feature columns in {path}")
    counts = Counter(header)
    for name in header:
        if counts[name] > 1 or not name:
            raise SpecError(field, f"header names must be unique and non-empty, got "
                                   f"{shown(name)} {counts[name]} times in {path}")
    return header


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Arrays X and y of an .npz archive, their headers checked before either is read."""
    with open_npz(path, PATH_FIELD, path) as archive:
        members = archive.members
        missing = [key for key in ("X", "y") if key not in members]
        if missing:
            names = ", ".join(shown(key) for key in list(members)[:8]) or "none"
            raise SpecError(PATH_FIELD, f"an .npz must hold arrays 'X' and 'y', got {names} "
                                        f"in {path}")
        x, y = members["X"], members["y"]
        if len(x.shape) != 2 or x.dtype.kind not in "biuf":
            raise SpecError(PATH_FIELD, f"X must be a 2-D numeric array, got shape {x.shape} "
                                        f"dtype {x.dtype} in {path}")
        check_cap("n_samples", x.shape[0], PATH_FIELD, f"rows of X in {path}")
        check_cap("columns", x.shape[1], PATH_FIELD, f"columns of X in {path}")
        if len(y.shape) not in (1, 2) or y.shape[0] != x.shape[0]:
            raise SpecError(PATH_FIELD, f"y must be (n,) or (n, m) with n = {x.shape[0]} rows "
                                        f"of X, got shape {y.shape} in {path}")
        if len(y.shape) == 2:
            check_cap("columns", y.shape[1], PATH_FIELD, f"columns of y in {path}")
        if y.dtype.kind not in "biufUS" or y.dtype.itemsize > MAX_LABEL_BYTES:
            raise SpecError(PATH_FIELD, f"y must hold numbers or strings of at most "
                                        f"{MAX_LABEL_BYTES // 4} characters, got dtype "
                                        f"{y.dtype} in {path}")
        return archive.load("X"), archive.load("y")


def _numeric_column(cells: tuple[str, ...], name: str, lines: list[int],
                    path: str) -> np.ndarray:
    """Parse one feature column; the first bad cell is named with its line."""
    values = np.empty(len(cells))
    for row, cell in enumerate(cells):
        try:
            values[row] = float(cell)
        except ValueError:
            raise SpecError(PATH_FIELD, f"feature column {shown(name)} must be numeric, got "
                                        f"{shown(cell)} on line {lines[row]} of {path}") from None
    return values


def _csv_targets(cells: tuple[str, ...], target: str, lines: list[int],
                 path: str) -> np.ndarray:
    """The label column as int64 (integers), float64 (numbers) or str (anything else)."""
    for row, cell in enumerate(cells):
        if not cell:
            raise SpecError(TARGET_FIELD, f"column {shown(target)} must have a value in every row, "
                                          f"got an empty cell on line {lines[row]} of {path}")
    for parse, dtype in ((int, np.int64), (float, np.float64)):
        try:
            return np.array([parse(cell) for cell in cells], dtype=dtype)
        except (ValueError, OverflowError):
            continue
    return np.array(cells, dtype=str)


def _npz_targets(y: np.ndarray, path: str) -> np.ndarray:
    """y with a single column flattened for classification; only numbers and strings pass."""
    if y.dtype.kind not in "biufUS":
        raise SpecError(PATH_FIELD, f"y must hold numbers or strings, got dtype {y.dtype} "
                                    f"in {path}")
    if y.ndim == 2 and y.shape[1] == 1 and y.dtype.kind != "f":
        return y.reshape(-1)
    if y.ndim == 2 and y.dtype.kind != "f":
        raise SpecError(PATH_FIELD, f"integer or string y must be one label column, got shape "
                                    f"{y.shape} in {path}")
    return y


def _with_targets(x: np.ndarray, y: np.ndarray, feature_names: tuple[str, ...], field: str,
                  where: str) -> Dataset:
    """Classification for labels (ints, strings, integral floats in one column), else regression."""
    if y.dtype.kind == "f" and _integral_labels(y):
        y = y.reshape(-1).astype(np.int64)
    if y.dtype.kind != "f":
        codes, class_names = encode_labels(y, field, where)
        check_cap("classes", len(class_names), field, f"classes in {where}")
        return Dataset(x=x, y=codes, task=classification_task(len(class_names)),
                       n_classes=len(class_names), feature_names=feature_names,
                       class_names=class_names)
    y = np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.float64)
    if not np.isfinite(y).all():
        bad = y[~np.isfinite(y)][0]
        raise SpecError(field, f"regression targets must be finite, got {bad} in {where}")
    return Dataset(x=x, y=y, task="regression", n_classes=0, feature_names=feature_names,
                   class_names=())


def _integral_labels(y: np.ndarray) -> bool:
    """One float column of whole numbers (exact in float64, so finite) reads as class labels."""
    column = y.reshape(len(y), -1)
    return (column.shape[1] == 1 and bool((np.abs(column) < 2**53).all())
            and bool((column == np.round(column)).all()))


def _listed(names: list[str], most: int = 20) -> str:
    """Names joined by commas, the first `most` of them and a count of the rest."""
    shown_names = ", ".join(names[:most])
    return shown_names + (f", ... ({len(names) - most:,} more)" if len(names) > most else "")


def _first_line(error: Exception) -> str:
    """A library's message cut to one line, for a one-line SpecError."""
    return (str(error).splitlines() or [type(error).__name__])[0]
