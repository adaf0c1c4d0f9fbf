"""The ``.nmc`` program file: one zip holding a manifest, the assembly, the data arrays and
any attached documents (the target description, the mapping table), sealed by a SHA-256.

Each array is one ``.npy`` member, ``data/NAME.npy``. Arrays of ``STORE_FROM`` bytes or more are
stored uncompressed at a 64-byte aligned offset, and loading maps them from the file without a
copy (read-only arrays); smaller ones are deflated where that saves a tenth. Weights rarely
compress, and inflating them would cost more time at every load than the disk they save.
Files of the first layout (all arrays in one ``data.npz``) still load.
"""
from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from nmc.isa.asm import format_program, parse_program
from nmc.isa.errors import NmcError, ProgramError
from nmc.isa.files import write_atomic
from nmc.isa.program import FORMAT_VERSION, Program
from nmc.isa.validate import validate

MAGIC = "nmc-program"
STORE_FROM = 64 * 1024  # bytes: arrays this large are stored (and mapped on load), never deflated
_ALIGN = 64  # the .npy header is padded to 64 bytes, so the array itself starts aligned too
_PADDING_ID = 0xD935  # the extra-field id zipalign pads with
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra field length


def _digest(asm: str, data: dict[str, np.ndarray], attachments: dict[str, str]) -> str:
    h = hashlib.sha256(asm.encode())
    for name in sorted(data):
        arr = np.ascontiguousarray(data[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(_bytes(arr))
    for name in sorted(attachments):
        h.update(f"{name}:".encode() + attachments[name].encode())
    return h.hexdigest()


def _bytes(arr: np.ndarray) -> memoryview:
    """The bytes of a contiguous array, without a copy."""
    return memoryview(arr.reshape(-1).view(np.uint8))


def _member(name: str) -> str:
    return f"data/{name}.npy"


def save_program(p: Program, path: str | os.PathLike, attachments: dict[str, str] | None = None) -> None:
    """Write ``p`` to ``path`` atomically (a failed write leaves no partial file)."""
    attachments = dict(attachments or {})
    validate(p)
    asm = format_program(p)
    data = {name: np.ascontiguousarray(arr) for name, arr in p.data.items()}
    manifest = {
        "magic": MAGIC, "format_version": p.version, "target": p.target,
        "inputs": [{"name": q.name, "shape": list(q.shape), "dtype": q.dtype} for q in p.inputs],
        "outputs": [{"name": q.name, "shape": list(q.shape), "dtype": q.dtype} for q in p.outputs],
        "batched": p.batched, "attachments": sorted(attachments), "data": list(data),
        "sha256": _digest(asm, data, attachments),
    }

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("manifest.json", json.dumps(manifest, indent=1))
            z.writestr("program.s", asm)
            for name in data:
                _write_array(z, f, _member(name), data[name])
            for name, text in attachments.items():
                z.writestr(f"attach/{name}", text)

    write_atomic(path, write)


def _write_array(z: zipfile.ZipFile, f, member: str, arr: np.ndarray) -> None:
    """``arr`` as the ``.npy`` member ``member``: deflated if small and that pays, else stored
    with its data at an offset aligned for mapping (``f`` is the file ``z`` writes to)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(arr))
    head = header.getvalue()
    info = zipfile.ZipInfo(member)
    info.external_attr = 0o644 << 16  # what extracting tools give the file
    if arr.nbytes < STORE_FROM:
        raw = head + _bytes(arr).tobytes()
        pays = len(zlib.compress(raw)) < 0.9 * len(raw)
        z.writestr(info, raw, compress_type=zipfile.ZIP_DEFLATED if pays else zipfile.ZIP_STORED)
        return
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = len(head) + arr.nbytes
    zip64 = info.file_size * 1.05 > zipfile.ZIP64_LIMIT  # as zipfile decides; its extra field comes last
    start = f.tell() + 30 + len(member.encode()) + (20 if zip64 else 0)
    pad = -(start + 4) % _ALIGN
    info.extra = struct.pack("<HH", _PADDING_ID, pad) + bytes(pad)
    with z.open(info, "w", force_zip64=zip64) as out:
        out.write(head)
        out.write(_bytes(arr))


def load_program(path: str | os.PathLike) -> tuple[Program, dict[str, str]]:
    """Read and check a ``.nmc`` file; returns the program and its attachments."""
    path = Path(path)
    if not path.exists():
        raise NmcError(f"{path}: no such program file")
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as z:
            names = set(z.namelist())
            for needed in ("manifest.json", "program.s"):
                if needed not in names:
                    raise ProgramError(f"{path}: not an nmc program (missing {needed})")
            manifest = json.loads(z.read("manifest.json"))
            asm = z.read("program.s").decode()
            if "data.npz" in names:  # the first layout
                with np.load(io.BytesIO(z.read("data.npz")), allow_pickle=False) as npz:
                    data = {name: npz[name] for name in npz.files}
            elif isinstance(manifest.get("data"), list):
                data = _read_arrays(path, f, z, manifest["data"], names)
            else:
                raise ProgramError(f"{path}: not an nmc program (no data arrays)")
            attachments = {n[len("attach/"):]: z.read(n).decode() for n in names if n.startswith("attach/")}
    except ProgramError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError, struct.error) as e:
        raise ProgramError(f"{path}: corrupt or truncated program file ({e})") from None
    if manifest.get("magic") != MAGIC:
        raise ProgramError(f"{path}: not an nmc program (bad magic)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ProgramError(f"{path}: format version {manifest.get('format_version')} is not supported "
                           f"(this nmc reads version {FORMAT_VERSION})")
    if _digest(asm, data, attachments) != manifest.get("sha256"):
        raise ProgramError(f"{path}: checksum mismatch, the file is corrupt")
    try:
        p = parse_program(asm)
    except ProgramError as e:
        raise ProgramError(f"{path}: {e}") from None
    p.data = data
    validate(p)
    return p, attachments


def _read_arrays(path: Path, f, z: zipfile.ZipFile, listed: list, names: set[str]) -> dict[str, np.ndarray]:
    """The listed arrays: stored members mapped from the file, deflated ones read."""
    data, mapped = {}, None
    for name in listed:
        member = _member(str(name))
        if member not in names:
            raise ProgramError(f"{path}: not an nmc program (missing {member})")
        info = z.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED or info.file_size < STORE_FROM:
            data[name] = np.load(io.BytesIO(z.read(info)), allow_pickle=False)
            continue
        f.seek(info.header_offset)
        signature, name_length, extra_length = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if signature != b"PK\x03\x04":
            raise ProgramError(f"{path}: corrupt or truncated program file (bad local header of {member})")
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        f.seek(start)
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
        offset = f.tell()
        count = int(np.prod(shape, dtype=np.int64))
        if fortran or dtype.hasobject or offset - start + count * dtype.itemsize != info.file_size:
            raise ProgramError(f"{path}: corrupt or truncated program file (array {name!r} does not fill its member)")
        if mapped is None:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if offset + count * dtype.itemsize > len(mapped):
            raise ProgramError(f"{path}: corrupt or truncated program file (array {name!r} runs past the end)")
        arr = np.frombuffer(mapped, dtype, count, offset).reshape(shape)
        data[name] = arr if arr.flags.aligned else arr.copy()
    return data
