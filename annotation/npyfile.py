""".npy files from data folders, checked from the header before any data is read.

A crafted header can declare a shape of 10^12 rows or an object dtype: `np.load`
would then allocate until the process dies, or unpickle. Here the header is
parsed first (NumPy's own parser, versions 1.0 and 2.0), the shape and dtype are
compared with what the caller expects and the file size with what the header
promises; only then is the data read. Errors name the file and what was expected.
"""
from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.lib import format as npy_format

from annotation.errors import DataFileError

MAGIC = b"\x93NUMPY"
ShapeCheck = Callable[[tuple[int, ...]], bool]


@functools.lru_cache(maxsize=64)
def _parse_header(version: tuple[int, ...], header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """NumPy's own (safe, literal-only) header parser; memoised because a data folder holds
    thousands of files with byte-identical headers."""
    reader = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}.get(version)
    if reader is None:
        raise ValueError(f"unsupported .npy format version {'.'.join(map(str, version))}")
    with warnings.catch_warnings():  # NumPy warns about Python 2 headers on stderr
        warnings.simplefilter("ignore")
        shape, fortran, dtype = reader(io.BytesIO(header))
    return tuple(int(n) for n in shape), bool(fortran), dtype


def read_header(path: Path, handle, expected: str, clip: str | None = None) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of an open .npy file, positioned at its data."""
    prefix = handle.read(len(MAGIC) + 2)
    if prefix[: len(MAGIC)] != MAGIC:
        raise DataFileError(path, f"not a .npy file (no NumPy header); expected {expected}", clip=clip)
    version = tuple(prefix[len(MAGIC):])
    width = 2 if version == (1, 0) else 4
    size_bytes = handle.read(width)
    header = size_bytes + handle.read(int.from_bytes(size_bytes, "little")) if len(size_bytes) == width else b""
    try:
        shape, fortran, dtype = _parse_header(version, header)
    except Exception as exc:  # noqa: BLE001 - the parser raises whatever crafted bytes provoke (ValueError, TokenError...)
        raise DataFileError(path, f"not a readable .npy array ({exc}); expected {expected}", clip=clip) from None
    if dtype.hasobject:
        raise DataFileError(path, f"holds Python objects (dtype {dtype}), which are never unpickled; expected {expected}",
                            clip=clip)
    return shape, fortran, dtype


def read_npy(path: str | Path, *, shape: tuple[int, ...] | ShapeCheck, kinds: str, expected: str,
             clip: str | None = None, finite: bool = False) -> np.ndarray:
    """The array in `path` after its header passed the checks.

    `shape`: the exact shape, or a predicate on it; `kinds`: allowed dtype kinds (e.g. "iub",
    "f"); `expected`: the words used in errors ("(10, 25) 0/1 integers"); `finite`: refuse
    NaN and infinities (features, embeddings)."""
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DataFileError(path, f"not found; expected {expected}", clip=clip) from None
    except OSError as exc:
        raise DataFileError(path, f"cannot open: {exc.strerror}", clip=clip) from None
    with handle:
        found, fortran, dtype = read_header(path, handle, expected, clip)
        shape_ok = shape(found) if callable(shape) else found == tuple(shape)
        if not shape_ok:
            raise DataFileError(path, f"shape {found}; expected {expected}", clip=clip)
        if dtype.kind not in kinds:
            raise DataFileError(path, f"dtype {dtype}; expected {expected}", clip=clip)
        count = int(np.prod(found, dtype=np.int64))
        needed = handle.tell() + count * dtype.itemsize
        size = os.fstat(handle.fileno()).st_size
        if size != needed:
            raise DataFileError(path, f"{size} bytes where the header promises {needed} "
                                      f"({'truncated' if size < needed else 'trailing data'}); expected {expected}",
                                clip=clip)
        try:
            buffer = bytearray(count * dtype.itemsize)  # writable, unlike bytes
            if handle.readinto(buffer) != len(buffer):
                raise DataFileError(path, f"truncated while being read; expected {expected}", clip=clip)
            data = np.frombuffer(buffer, dtype=dtype)
        except OSError as exc:
            raise DataFileError(path, f"read error: {exc.strerror or exc}", clip=clip) from None
    array = data.reshape(found[::-1]).transpose() if fortran else data.reshape(found)
    if finite and array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise DataFileError(path, f"{bad} non-finite value(s) (NaN or infinity); expected {expected}", clip=clip)
    return array


def npy_shape(path: str | Path, expected: str) -> tuple[int, ...]:
    """The shape a .npy header declares (no data read)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return read_header(path, handle, expected)[0]
    except OSError as exc:
        raise DataFileError(path, f"cannot open: {exc.strerror}") from None


@functools.lru_cache(maxsize=16)
def _header_bytes(shape: tuple[int, ...], descr: str) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """What np.save writes for `array`, with the header of each (shape, dtype) built once (writing
    tens of thousands of small label files is then 4x faster)."""
    array = np.ascontiguousarray(array)
    return _header_bytes(array.shape, npy_format.dtype_to_descr(array.dtype)) + array.tobytes()
