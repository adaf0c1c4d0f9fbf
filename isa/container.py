"""The ``.nmc`` program file: one zip holding a manifest, the assembly, the data arrays and
any attached documents (the target description, the mapping table), sealed by a SHA-256."""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from nmc.isa.asm import format_program, parse_program
from nmc.isa.errors import NmcError, ProgramError
from nmc.isa.files import write_atomic
from nmc.isa.program import FORMAT_VERSION, Program
from nmc.isa.validate import validate

MAGIC = "nmc-program"


def _digest(asm: str, data: dict[str, np.ndarray], attachments: dict[str, str]) -> str:
    h = hashlib.sha256(asm.encode())
    for name in sorted(data):
        arr = np.ascontiguousarray(data[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.tobytes())
    for name in sorted(attachments):
        h.update(f"{name}:".encode() + attachments[name].encode())
    return h.hexdigest()


def save_program(p: Program, path: str | os.PathLike, attachments: dict[str, str] | None = None) -> None:
    """Write ``p`` to ``path`` atomically (a failed write leaves no partial file)."""
    attachments = dict(attachments or {})
    validate(p)
    asm = format_program(p)
    manifest = {
        "magic": MAGIC, "format_version": p.version, "target": p.target,
        "inputs": [{"name": q.name, "shape": list(q.shape), "dtype": q.dtype} for q in p.inputs],
        "outputs": [{"name": q.name, "shape": list(q.shape), "dtype": q.dtype} for q in p.outputs],
        "batched": p.batched, "attachments": sorted(attachments),
        "sha256": _digest(asm, p.data, attachments),
    }
    data_bytes = io.BytesIO()
    np.savez(data_bytes, **{name: np.ascontiguousarray(arr) for name, arr in p.data.items()})

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:  # level 1: 5× faster, 9 % bigger
            z.writestr("manifest.json", json.dumps(manifest, indent=1))
            z.writestr("program.s", asm)
            z.writestr("data.npz", data_bytes.getvalue())
            for name, text in attachments.items():
                z.writestr(f"attach/{name}", text)

    write_atomic(path, write)


def load_program(path: str | os.PathLike) -> tuple[Program, dict[str, str]]:
    """Read and check a ``.nmc`` file; returns the program and its attachments."""
    path = Path(path)
    if not path.exists():
        raise NmcError(f"{path}: no such program file")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for needed in ("manifest.json", "program.s", "data.npz"):
                if needed not in names:
                    raise ProgramError(f"{path}: not an nmc program (missing {needed})")
            manifest = json.loads(z.read("manifest.json"))
            asm = z.read("program.s").decode()
            with np.load(io.BytesIO(z.read("data.npz")), allow_pickle=False) as npz:
                data = {name: npz[name] for name in npz.files}
            attachments = {n[len("attach/"):]: z.read(n).decode() for n in names if n.startswith("attach/")}
    except ProgramError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError) as e:
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
