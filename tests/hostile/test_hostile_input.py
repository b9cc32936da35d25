"""Hostile input through the real CLI: each file is built here, given to ``python -m nnchain``
in a child process limited to 2 GB of address space and a minute, and must be refused with
exit 2, exactly one line on stderr and nothing written (no ``nnchain-runs`` store or ledger).

A regression that loads a bomb hits the memory limit (MemoryError, or a kill) or the time
limit and fails here at once instead of swapping. The cases are those of issue 19; every one
is refused by validation, before MLflow or Ray is started.
"""

from __future__ import annotations

import io
import math
import os
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

MEMORY_LIMIT = 2 << 30
TIME_LIMIT = 60  # seconds: a refused input takes about two (the interpreter's start)
HUGE = "9" * 400  # a 400-digit integer


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m nnchain ARGS`` in ``cwd`` under the memory and time limits."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("MLFLOW_TRACKING", "NNCHAIN_", "RAY_ADDRESS"))}
    clean.update(MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0",
                 OPENBLAS_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "nnchain", *args], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=TIME_LIMIT,
                          preexec_fn=_limit_memory)


# --- files -----------------------------------------------------------------------------

def alias_bomb(where: str) -> str:
    """Billion laughs (1.3 KB): nine levels of nine aliases, 9**9 strings once expanded."""
    levels = ['&a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"&{name} [{', '.join([f'*{previous}'] * 9)}]")
    return where.replace("BOMB", "[" + ", ".join(levels) + "]")


def _crc32_zeros(crc: int, count: int) -> int:
    """zlib.crc32(bytes(count), crc) without reading count bytes: the CRC's one-zero-byte
    operator (a 32x32 GF(2) matrix, as zlib's crc32_combine) raised to ``count``."""
    def times(matrix: list[int], vector: int) -> int:
        out, bit = 0, 0
        while vector:
            if vector & 1:
                out ^= matrix[bit]
            vector, bit = vector >> 1, bit + 1
        return out

    operator = [0xEDB88320] + [1 << bit for bit in range(31)]  # one zero bit
    for _ in range(3):
        operator = [times(operator, column) for column in operator]
    state = crc ^ 0xFFFFFFFF
    while count:
        if count & 1:
            state = times(operator, state)
        operator = [times(operator, column) for column in operator]
        count >>= 1
    return state ^ 0xFFFFFFFF


def _deflated_zeros_npy(shape: tuple[int, ...]) -> tuple[bytes, int, int]:
    """A float64 zeros ``.npy`` of ``shape`` deflated without ever holding it: after a full
    flush the compressor restarts, so each 16 MiB block of zeros deflates to the same bytes.
    Returns (deflated bytes, size, crc32)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    header, nbytes = buffer.getvalue(), math.prod(shape) * 8
    block = 1 << 24
    blocks, rest = divmod(nbytes, block)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(bytes(rest)) + compressor.flush()
    crc = _crc32_zeros(zlib.crc32(header), nbytes)
    return head + body * blocks + tail, len(header) + nbytes, crc


def write_npz(path: Path, bomb_name: str, bomb_shape: tuple[int, ...],
              small: dict[str, np.ndarray]) -> Path:
    """An ``.npz`` holding ``small`` arrays (as np.savez writes them) and one deflated bomb
    member, its sizes in a zip64 extra field as zipfile writes one."""
    with io.BytesIO() as buffer:
        np.savez(buffer, **small)
        small_zip = buffer.getvalue()
    with zipfile.ZipFile(io.BytesIO(small_zip)) as archive:
        directory_start, count = archive.start_dir, len(archive.infolist())
    data, size, crc = _deflated_zeros_npy(bomb_shape)
    name = f"{bomb_name}.npy".encode()
    sizes = struct.pack("<HHQQ", 1, 16, size, len(data))  # zip64 extra: sizes, 0xFFFFFFFF above
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF,
                        0xFFFFFFFF, len(name), len(sizes)) + name + sizes
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, crc,
                          0xFFFFFFFF, 0xFFFFFFFF, len(name), len(sizes), 0, 0, 0, 0,
                          directory_start) + name + sizes
    members = small_zip[:directory_start] + local + data
    directory = small_zip[directory_start:small_zip.rfind(b"PK\x05\x06")] + central
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count + 1, count + 1, len(directory),
                      len(members), 0)
    path.write_bytes(members + directory + end)
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """4 MB .npz files declaring a (2, 2**28) float64 array: 4 GiB once inflated."""
    folder = tmp_path_factory.mktemp("bombs")
    return {
        "weights": write_npz(folder / "weights.npz", "W1", (2, 2**28),
                             {"b1": np.zeros(2)}),
        "data": write_npz(folder / "data.npz", "X", (2, 2**28), {"y": np.array([0, 1])}),
    }


# --- cases -----------------------------------------------------------------------------

TRAIN = "data: {name: xor, n_samples: 8}\nmodel: {hidden: [2]}\ntrain: {epochs: 1}\n"
SWEEP = "name: hostile\ndata: {name: xor, n_samples: 8}\ntrain: {epochs: 1}\n"


@dataclass
class Case:
    """A command, the files it needs (name -> text or a builder), what stderr must say."""

    command: list[str]
    expected: str
    files: dict[str, str | Callable[[Path], None]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def _csv_columns(count: int, duplicate: bool = False) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        names = [f"c{index}" for index in range(count - 1)]
        if duplicate:  # the last two: a check that counts each name in turn reaches it last
            names[-1] = names[-2]
        path.write_text(",".join([*names, "label"]) + "\n" + ",".join(["1"] * count) + "\n")
    return build


def _csv_rows(rows: list[tuple[str, str]]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        path.write_text("x,label\n" + "".join(f"{x},{label}\n" for x, label in rows))
    return build


def _npy_renamed(path: Path) -> None:
    np.save(path.with_suffix(".npy"), np.zeros((2, 3)))
    path.with_suffix(".npy").rename(path)


def _train_csv(name: str) -> str:
    return f"data: {{path: {name}, target: label}}\ntrain: {{epochs: 1}}\n"


CASES: dict[str, Case] = {
    "alias bomb in train.lr": Case(
        ["train", "spec.yaml"], "aliases expanded",
        {"spec.yaml": alias_bomb(TRAIN.replace("epochs: 1", "epochs: 1, lr: BOMB"))}),
    "alias bomb in a sweep value": Case(
        ["sweep", "run", "spec.yaml"], "aliases expanded",
        {"spec.yaml": alias_bomb(SWEEP + "parameters:\n  train.lr: {values: BOMB}\n")}),
    "deeply nested YAML": Case(
        ["train", "spec.yaml"], "nest at most",
        {"spec.yaml": TRAIN + "seed: " + "[" * 100_000 + "]" * 100_000 + "\n"}),
    "zip bomb to --init-weights": Case(
        ["train", "spec.yaml", "--init-weights", "BOMB:weights"], "width limit",
        {"spec.yaml": TRAIN}),
    "zip bomb to the NPZ data loader": Case(
        ["train", "spec.yaml"], "columns limit",
        {"spec.yaml": "data: {path: BOMB:data}\ntrain: {epochs: 1}\n"}),
    ".npy renamed .npz to --init-weights": Case(
        ["train", "spec.yaml", "--init-weights", "w.npz"], "single .npy array",
        {"spec.yaml": TRAIN, "w.npz": _npy_renamed}),
    ".npy renamed .npz as data": Case(
        ["train", "spec.yaml"], "single .npy array",
        {"spec.yaml": "data: {path: d.npz}\n", "d.npz": _npy_renamed}),
    "40,000-column CSV": Case(
        ["train", "spec.yaml"], "columns limit",
        {"spec.yaml": _train_csv("wide.csv"), "wide.csv": _csv_columns(40_000)}),
    "1M-column CSV": Case(
        ["train", "spec.yaml"], "columns limit",
        {"spec.yaml": _train_csv("wide.csv"), "wide.csv": _csv_columns(1_000_000)}),
    # the cap raised: the header check itself is linear (quadratic was hours at this width)
    "200,000-column CSV, cap raised, last names duplicated": Case(
        ["train", "spec.yaml"], "must be unique",
        {"spec.yaml": _train_csv("wide.csv"), "wide.csv": _csv_columns(200_000, True)},
        {"NNCHAIN_LIMITS": "columns=300000"}),
    "n_samples: 1e10": Case(
        ["train", "spec.yaml"], "n_samples limit",
        {"spec.yaml": TRAIN.replace("n_samples: 8", "n_samples: 1e10")}),
    "hidden: [1e6, 1e6]": Case(
        ["train", "spec.yaml"], "width limit",
        {"spec.yaml": TRAIN.replace("[2]", "[1000000, 1000000]")}),
    # past the caps (raised), memory runs out: translated at the CLI boundary, not a traceback
    "hidden: [1e6, 1e6] with the width cap raised": Case(
        ["train", "spec.yaml"], "needs more memory than this process may use",
        {"spec.yaml": TRAIN.replace("[2]", "[1000000, 1000000]")},
        {"NNCHAIN_LIMITS": "width=1000000"}),
    "CSV with 30,000 labels": Case(
        ["train", "spec.yaml"], "classes limit",
        {"spec.yaml": _train_csv("labels.csv"),
         "labels.csv": _csv_rows([(str(row % 7), f"l{row}") for row in range(30_000)])}),
    "400-digit lr": Case(
        ["train", "spec.yaml"], "train.lr: must fit a 64-bit float",
        {"spec.yaml": TRAIN.replace("epochs: 1", f"epochs: 1, lr: {HUGE}")}),
    "400-digit noise": Case(
        ["train", "spec.yaml"], "data.noise: must fit a 64-bit float",
        {"spec.yaml": TRAIN.replace("n_samples: 8", f"n_samples: 8, noise: {HUGE}")}),
    "400-digit trial_timeout": Case(
        ["sweep", "run", "spec.yaml"], "trial_timeout: must fit a 64-bit float",
        {"spec.yaml": SWEEP + f"trial_timeout: {HUGE}\n"}),
    "400-digit int_uniform": Case(
        ["sweep", "run", "spec.yaml"], "max: must fit a 64-bit integer",
        {"spec.yaml": SWEEP + "method: random\nrun_cap: 2\nparameters:\n  train.epochs: "
                              f"{{distribution: int_uniform, min: 1, max: {HUGE}}}\n"}),
    # the trials cap (issue 17: 100,000), on --max-trials and on the spec's size
    "--max-trials over the trials cap": Case(
        ["sweep", "run", "spec.yaml", "--max-trials", "100001"], "--max-trials: must be <= "
        "100,000 (the trials limit", {"spec.yaml": SWEEP + "parameters:\n  train.lr: "
                                                         "{values: [0.1]}\n"}),
    "--max-trials of 40 digits": Case(
        ["sweep", "run", "spec.yaml", "--max-trials", "9" * 40], "trials limit",
        {"spec.yaml": SWEEP + "parameters:\n  train.lr: {values: [0.1]}\n"}),
    "sweep submit --max-trials over the trials cap": Case(
        ["sweep", "submit", "spec.yaml", "--max-trials", "100001"], "trials limit",
        {"spec.yaml": SWEEP + "parameters:\n  train.lr: {values: [0.1]}\n"}),
    "a grid of 10**6 cells at --max-trials 100000": Case(
        ["sweep", "run", "spec.yaml", "--max-trials", "100000"],
        "the grid has 1000000 trials (100 x 100 x 100), more than max_trials=100000",
        {"spec.yaml": SWEEP + "parameters:\n" + "".join(
            f"  {key}: {{values: {list(range(1, 101))}}}\n"
            for key in ("train.epochs", "seed", "data.n_samples"))}),
    "random run_cap 10**9 at --max-trials 100000": Case(
        ["sweep", "run", "spec.yaml", "--max-trials", "100000"],
        "more than max_trials=100000; lower run_cap",
        {"spec.yaml": SWEEP + "method: random\nrun_cap: 1000000000\nparameters:\n  train.lr: "
                              "{distribution: log_uniform, min: 0.001, max: 1}\n"}),
    "5,000-digit integer": Case(
        ["train", "spec.yaml"], "Python cannot read",
        {"spec.yaml": TRAIN + "seed: " + "9" * 5000 + "\n"}),
    "features of +-1e308": Case(
        ["train", "spec.yaml"], "standardising cannot overflow",
        {"spec.yaml": _train_csv("big.csv"),
         "big.csv": _csv_rows([("1e308", "a"), ("-1e308", "b"), ("1e308", "a"),
                               ("-1e308", "b")])}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(name: str, tmp_path: Path,
                                                             bombs: dict[str, Path]) -> None:
    case = CASES[name]
    for file_name, content in case.files.items():
        path = tmp_path / file_name
        if callable(content):
            content(path)
        else:
            for kind, bomb in bombs.items():
                content = content.replace(f"BOMB:{kind}", str(bomb))
            path.write_text(content)
    command = [str(bombs[arg[5:]]) if arg.startswith("BOMB:") else arg for arg in case.command]
    before = sorted(tmp_path.iterdir())

    result = run_cli(command, tmp_path, case.env)

    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: ") and case.expected in lines[0], lines[0]
    assert len(lines[0]) < 400, lines[0]
    assert result.stdout == ""
    assert sorted(tmp_path.iterdir()) == before  # no nnchain-runs: no store, no ledger


def test_the_zip_bomb_is_what_it_claims(bombs: dict[str, Path]) -> None:
    """The bomb is a valid archive whose header declares 4 GiB (read without inflating it)."""
    from nnchain.npz import open_npz

    for kind, key in (("weights", "W1"), ("data", "X")):
        assert bombs[kind].stat().st_size < 5 << 20
        with open_npz(bombs[kind], "test", kind) as archive:
            assert archive.members[key].shape == (2, 2**28)
            assert archive.members[key].nbytes == 4 << 30
    small = write_npz(bombs["data"].parent / "check.npz", "X", (2, 2**20),
                      {"y": np.array([0, 1])})
    with np.load(small) as archive:  # inflates 16 MiB and checks the CRC at the end
        assert archive["X"].shape == (2, 2**20) and not archive["X"].any()
        assert list(archive["y"]) == [0, 1]
