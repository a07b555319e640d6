"""The .npz archive beside a spec (np.savez: a zip of .npy members), read without pickle and
checked before any array data is read: the zip directory (plain .npy members, no encryption,
the compression numpy writes, sizes the stored bytes can hold) and every member's .npy header
(version, header length, a number dtype, a declared size equal to the member's). Every failure
is a one-line `SpecError` of the spec field that named the file.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from harness.spec.schema import SpecError, shown
from harness.spec.types import MAX_PARAMS

NPY_SUFFIX = ".npy"
NPY_MAGIC = b"\x93NUMPY"
# The largest valid init file holds MAX_PARAMS float64 numbers; twice that leaves room for
# wider dtypes and headers, and bounds the zip directory that is read before any check.
MAX_NPZ_BYTES = 2 * MAX_PARAMS * 8
# numpy's own default `max_header_size`: a real .npy header is about 128 bytes.
MAX_NPY_HEADER_BYTES = 10_000
# The .npy header versions np.savez writes for number arrays (3.0 only adds UTF-8 field names).
NPY_LENGTH_FIELD = {(1, 0): "<H", (2, 0): "<I"}
# The zip methods numpy reads and np.savez / np.savez_compressed write.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
ZIP_ENCRYPTED = 0x1               # general-purpose flag bit 0: the member is encrypted
# Deflate expands at most 1032:1 (zlib's technical notes): a member declaring more
# uncompressed bytes than that is forged.
MAX_DEFLATE_RATIO = 1032
# What a damaged or foreign archive can raise while zipfile or numpy read it (RuntimeError: an
# encrypted member, NotImplementedError: a compression zipfile lacks).
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, struct.error,
               NotImplementedError, RuntimeError, RecursionError)
MAX_REASON = 200                  # characters of a library's own explanation in a message


@dataclass(frozen=True)
class Member:
    """One array of an .npz archive, as its zip entry and .npy header declare it."""
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int                   # bytes of magic and header before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class Npz:
    """An .npz archive opened for checked reading (allow_pickle stays False: a stranger's file
    must never run code). Opening checks the zip directory and every member's .npy header
    against the member's real size, before any array data is read; `read` then reads one
    member's data. Any failure is a SpecError of `field`."""

    def __init__(self, path: Path, field: str) -> None:
        self.path, self.field, self._size = path, field, 0
        self._zip = self._open()
        try:
            self.members = {info.filename.removesuffix(NPY_SUFFIX): self._member(info)
                            for info in self._entries()}
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> Npz:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def error(self, reason: str) -> SpecError:
        """The one-line error for an archive that is not what np.savez writes."""
        return SpecError(self.field, f"cannot read {self.path.name} as .npz: {reason} "
                         "(allowed: an archive written by np.savez, of number arrays)")

    def read(self, key: str) -> np.ndarray:
        """The data of member `key`, checked as its header declared it (read-only)."""
        member = self.members[key]
        try:
            with self._zip.open(member.info) as fp:
                fp.read(member.offset)
                data = fp.read()
        except _UNREADABLE as err:
            raise self.error(_reason(err)) from None
        if len(data) != member.nbytes:
            raise self.error(f"{key}{NPY_SUFFIX} holds {len(data)} bytes of data, its header "
                             f"declares {member.nbytes}")
        order = "F" if member.fortran else "C"
        return np.frombuffer(data, member.dtype).reshape(member.shape, order=order)

    def _open(self) -> zipfile.ZipFile:
        """The zip directory, read only after the file's size and kind are checked."""
        try:
            self._size = os.stat(self.path).st_size
            with open(self.path, "rb") as f:
                head = f.read(len(NPY_MAGIC))
        except OSError as err:
            raise self.error(_reason(err)) from None
        if self._size > MAX_NPZ_BYTES:
            raise self.error(f"the file is {self._size} bytes, more than {MAX_NPZ_BYTES} (the "
                             "largest network's weights in float64, twice over)")
        if head == NPY_MAGIC:
            raise SpecError(self.field, f"{self.path.name} holds a single array, not an .npz "
                            "archive (allowed: an archive written by np.savez)")
        try:
            return zipfile.ZipFile(self.path)
        except _UNREADABLE as err:
            raise self.error(_reason(err)) from None

    def _entries(self) -> list[zipfile.ZipInfo]:
        """The zip entries, each a plain .npy member numpy can read, each name once."""
        infos = self._zip.infolist()
        seen: set[str] = set()
        for info in infos:
            name = info.filename
            if name in seen:
                raise self.error(f"member {shown(name)} appears twice")
            seen.add(name)
            if info.is_dir() or not name.endswith(NPY_SUFFIX):
                raise self.error(f"member {shown(name)} is not a .npy array")
            if info.flag_bits & ZIP_ENCRYPTED:
                raise self.error(f"member {shown(name)} is encrypted")
            if info.compress_type not in ZIP_METHODS:
                method = zipfile.compressor_names.get(info.compress_type, "unknown")
                raise self.error(f"member {shown(name)} uses compression method "
                                 f"{info.compress_type} ({method}; allowed: "
                                 f"{', '.join(ZIP_METHODS.values())})")
            if info.compress_size > self._size or info.file_size > _most_bytes(info):
                raise self.error(f"member {shown(name)} declares {info.file_size} bytes, more "
                                 f"than its {info.compress_size} stored bytes can hold")
        return infos

    def _member(self, info: zipfile.ZipInfo) -> Member:
        """A member's .npy header, checked against the member's declared size."""
        name = shown(info.filename)
        try:
            with self._zip.open(info) as fp:
                shape, fortran, dtype, offset = _npy_header(fp)
        except _UNREADABLE as err:
            raise self.error(f"member {name}: {_reason(err)}") from None
        if dtype.hasobject:
            raise self.error(f"member {name} is an object array (it would need pickle)")
        if dtype.kind not in "fiu":
            raise self.error(f"member {name} holds {dtype} values, not numbers")
        member = Member(info, shape, dtype, fortran, offset)
        if offset + member.nbytes != info.file_size:
            raise self.error(f"member {name} declares shape {shape} of {dtype} "
                             f"({member.nbytes} bytes), but holds {info.file_size - offset}")
        return member


def _most_bytes(info: zipfile.ZipInfo) -> int:
    """The most uncompressed bytes a member's stored bytes can hold."""
    if info.compress_type == zipfile.ZIP_STORED:
        return info.compress_size
    return info.compress_size * MAX_DEFLATE_RATIO


def _npy_header(fp: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, bytes before the data) of a .npy stream, reading at
    most MAX_NPY_HEADER_BYTES of header whatever its length field claims."""
    version = np.lib.format.read_magic(fp)
    if version not in NPY_LENGTH_FIELD:
        raise ValueError(f".npy format version {version[0]}.{version[1]} (allowed: "
                         f"{', '.join(f'{a}.{b}' for a, b in NPY_LENGTH_FIELD)})")
    field = NPY_LENGTH_FIELD[version]
    length_bytes = fp.read(struct.calcsize(field))
    (length,) = struct.unpack(field, length_bytes)
    if length > MAX_NPY_HEADER_BYTES:
        raise ValueError(f"a .npy header of {length} bytes (allowed: at most "
                         f"{MAX_NPY_HEADER_BYTES})")
    header = fp.read(length)
    if len(header) != length:
        raise EOFError("the .npy header is cut short")
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) \
        else np.lib.format.read_array_header_2_0
    stream = io.BytesIO(length_bytes + header)
    shape, fortran, dtype = reader(stream, max_header_size=MAX_NPY_HEADER_BYTES)
    return shape, fortran, dtype, len(NPY_MAGIC) + 2 + len(length_bytes) + length


def _reason(err: BaseException) -> str:
    """What went wrong, on one line and shortened, whatever zipfile, zlib or numpy said."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."
