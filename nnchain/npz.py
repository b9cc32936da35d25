"""Bounded ``.npz`` reading: every member's ``.npy`` header first, arrays only on request.

``np.load`` reads a member when it is indexed, and a deflated member of a few megabytes
may declare gigabytes. ``open_npz`` reads only the headers (name, dtype, shape), so the
caller checks them against what it needs before ``NpzArchive.load`` reads one array.
Arrays are read with ``allow_pickle=False``; object dtypes are refused from the header.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from nnchain.errors import SpecError, shown
from nnchain.limits import MAX_NPZ_MEMBERS

_NPY_MAGIC = b"\x93NUMPY"
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class Member:
    """One array of an archive as its header declares it."""

    name: str  # the key: the member's file name without ".npy"
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


class NpzArchive:
    """An open archive: ``members`` (from the headers) and ``load`` (one array)."""

    def __init__(self, archive: zipfile.ZipFile, members: dict[str, Member],
                 infos: dict[str, zipfile.ZipInfo], field: str, where: str) -> None:
        self._archive, self._infos = archive, infos
        self.members, self.field, self.where = members, field, where

    def load(self, name: str) -> np.ndarray:
        """Read one member's array; ``members[name]`` says what it will hold."""
        try:
            with self._archive.open(self._infos[name]) as handle:
                return npy_format.read_array(handle, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise SpecError(self.field, f"must be a readable .npz archive, array {name!r} of "
                                        f"{self.where} is not ({_first_line(exc)})") from None

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_npz(source: str | Path | bytes, field: str, where: str) -> NpzArchive:
    """Open an archive (a path, or its bytes) and read every member's header.

    A single ``.npy``, a file that is not a zip, a member that is not a ``.npy``, an
    object dtype, a header that declares more bytes than the member holds, or more than
    ``MAX_NPZ_MEMBERS`` members: one SpecError on ``field``, ``where`` naming the source.
    """
    handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    try:
        if handle.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
            raise SpecError(field, f"must be an .npz archive, {where} is a single .npy array "
                                   "(np.save writes .npy; np.savez writes .npz)")
        handle.seek(0)
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        handle.close()
        raise SpecError(field, f"must be an .npz archive (a zip of .npy arrays), {where} is "
                               f"not ({_first_line(exc)})") from None
    except BaseException:
        handle.close()
        raise
    try:
        members, infos = _read_headers(archive, field, where)
    except BaseException:
        archive.close()
        handle.close()
        raise
    return NpzArchive(archive, members, infos, field, where)


def _read_headers(archive: zipfile.ZipFile, field: str,
                  where: str) -> tuple[dict[str, Member], dict[str, zipfile.ZipInfo]]:
    infos = archive.infolist()
    if len(infos) > MAX_NPZ_MEMBERS:
        raise SpecError(field, f"an .npz must hold at most {MAX_NPZ_MEMBERS:,} arrays, "
                               f"{where} holds {len(infos):,}")
    members: dict[str, Member] = {}
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise SpecError(field, f"an .npz must hold only .npy arrays, {where} holds "
                                   f"{shown(info.filename)}")
        name = info.filename[:-len(".npy")]
        try:
            with archive.open(info) as member:
                version = npy_format.read_magic(member)
                read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                               else npy_format.read_array_header_2_0)
                shape, _fortran, dtype = read_header(member)
                header_bytes = member.tell() if member.seekable() else None
        except _READ_ERRORS as exc:
            raise SpecError(field, f"must be a readable .npz archive, array {shown(name)} of "
                                   f"{where} has no valid .npy header "
                                   f"({_first_line(exc)})") from None
        if dtype.hasobject:
            raise SpecError(field, f"must hold numeric arrays only, array {shown(name)} of "
                                   f"{where} holds Python objects (pickled data is never "
                                   "loaded)")
        found = Member(name, tuple(shape), dtype)
        held = info.file_size - (header_bytes or 0)
        if found.nbytes > held:
            raise SpecError(field, f"array {shown(name)} of {where} declares shape "
                                   f"{found.shape} ({found.nbytes:,} bytes) but holds "
                                   f"{max(held, 0):,} bytes")
        members[name], by_name[name] = found, info
    return members, by_name


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:160]
