"""The command line's files: input arrays (``--input``, ``--labels``, ``--calibration``), checks
that a path holds what it should or can be written before the work starts, and output arrays."""
from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from nmc.isa.errors import NmcError
from nmc.isa.files import write_atomic


class CliError(NmcError):
    """A bad command-line value: an unreadable array file, an unknown input name, ..."""


def one_line(e: BaseException) -> str:
    """An exception as the one line ``nmc: error: ...`` prints."""
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ----------------------------------------------------------------------------- checks
def check_writable_dir(path: str | os.PathLike) -> None:
    """Fail before the work, not after it, when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise CliError(f"{path} is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise CliError(f"{path}: cannot write, directory {parent} does not exist")
    try:  # the real test: can a file be created there (permissions, read-only file systems)?
        with tempfile.TemporaryFile(prefix=".tmp-", dir=parent):
            pass
    except OSError as e:
        raise CliError(f"{path}: cannot write in directory {parent} ({e.strerror or e})") from None


def check_model_file(path: str) -> None:
    """A clear line for the usual mix-ups: a directory, or a compiled program, given as the model."""
    if Path(path).is_dir():
        raise CliError(f"{path} is a directory, not an ONNX model file")
    if _is_program(path):
        raise CliError(f"{path} is a compiled nmc program, not an ONNX model; "
                       f"run it with: nmc run {path} --input X.npy")


def check_program_file(path: str) -> None:
    """A clear line for a directory, or an ONNX model, given where a ``.nmc`` program belongs."""
    if Path(path).is_dir():
        raise CliError(f"{path} is a directory, not a .nmc program file")
    if Path(path).is_file() and not zipfile.is_zipfile(path) and Path(path).suffix.lower() == ".onnx":
        raise CliError(f"{path} is an ONNX model, not a compiled program; "
                       f"compile it first: nmc compile {path} -o PROGRAM.nmc")


def _is_program(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return "manifest.json" in z.namelist() and "program.s" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


# ----------------------------------------------------------------------------- input arrays
def _split_key(spec: str) -> tuple[str, str | None]:
    """``data.npz:x_image`` → (``data.npz``, ``x_image``); anything else → (spec, None)."""
    match = re.match(r"^(.*\.npz):([^:/\\]+)$", spec)
    if match and not Path(spec).exists():
        return match.group(1), match.group(2)
    return spec, None


def _read_arrays(path: str) -> dict[str, np.ndarray] | np.ndarray:
    """One array from a ``.npy`` file, or the named arrays of a ``.npz`` file."""
    if not Path(path).is_file():
        raise CliError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                arrays = {name: loaded[name] for name in loaded.files}
            if not arrays:
                raise CliError(f"{path} holds no arrays")
            return arrays
        return loaded
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise CliError(f"{path}: not a readable .npy/.npz array file ({one_line(e)})") from None


def _numeric(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise CliError(f"{what} holds {array.dtype} values; give numbers (float, integer or bool)")
    return array


def _pick(value: dict[str, np.ndarray] | np.ndarray, path: str, key: str | None) -> np.ndarray:
    """The array of a ``.npy`` file, or array ``key`` of a ``.npz`` (its only one if no key)."""
    if not isinstance(value, dict):
        if key is not None:
            raise CliError(f"{path} is a single array; drop :{key}")
        return value
    if key is None:
        if len(value) != 1:
            raise CliError(f"{path} holds several arrays ({', '.join(value)}); pick one with {path}:NAME")
        return next(iter(value.values()))
    if key not in value:
        raise CliError(f"{path} has no array {key!r}; it holds: {', '.join(value) or 'nothing'}")
    return value[key]


def _read_array(spec: str) -> np.ndarray:
    """``FILE.npy``, ``FILE.npz:KEY``, or a ``.npz`` holding exactly one array."""
    path, key = _split_key(spec)
    return _pick(_read_arrays(path), path, key)


def read_labels(spec: str | None) -> np.ndarray | None:
    """``--labels``: one class index per row (``[N]`` or ``[N, 1]``)."""
    if spec is None:
        return None
    labels = _numeric(_read_array(spec), f"--labels {spec}")
    if labels.ndim > 1 and labels.size != labels.shape[0]:
        raise CliError(f"--labels {spec} has shape {list(labels.shape)}; give one class index per row "
                       f"(for one-hot labels, save their argmax)")
    return labels.reshape(-1)


def read_inputs(specs: Sequence[str], input_names: Sequence[str], flag: str = "--input") -> dict[str, np.ndarray]:
    """``--input`` values → ONNX input name → array.

    Forms: ``FILE.npy`` (the only input), ``NAME=FILE.npy``, ``NAME=FILE.npz:KEY``, and
    ``FILE.npz`` whose arrays are named after the inputs.
    """
    inputs: dict[str, np.ndarray] = {}

    def put(name: str, array: np.ndarray) -> None:
        if name not in input_names:
            raise CliError(f"unknown input {name!r}; the model takes: {', '.join(input_names)}")
        if name in inputs:
            raise CliError(f"input {name!r} given twice")
        inputs[name] = _numeric(array, f"{flag} {name!r}")

    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and name and not Path(spec).exists():
            put(name, _read_array(rest))
            continue
        path, key = _split_key(spec)
        value = _read_arrays(path)
        if isinstance(value, dict) and key is None and not (len(value) == 1 and len(input_names) == 1):
            strangers = [n for n in value if n not in input_names]
            if strangers:
                raise CliError(f"{path} holds arrays {', '.join(strangers)}, not named after the model's "
                               f"inputs ({', '.join(input_names)}); pick one with {path}:KEY or NAME={path}:KEY")
            for array_name, array in value.items():
                put(array_name, array)
            continue
        if len(input_names) != 1:
            raise CliError(f"the model takes several inputs ({', '.join(input_names)}); "
                           f"name them: {flag} NAME={spec}")
        put(input_names[0], _pick(value, path, key))
    missing = [n for n in input_names if n not in inputs]
    if missing:
        raise CliError(f"missing input(s) {', '.join(missing)}; give {flag} NAME=FILE.npy")
    return inputs


def read_calibration(specs: Sequence[str], input_names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """``--calibration`` values (the forms of ``--input``) → input name → sample array, or None."""
    return read_inputs(specs, input_names, "--calibration") if specs else None


# ----------------------------------------------------------------------------- outputs
def save_outputs(path: str, outputs: dict[str, np.ndarray]) -> None:
    """``-o Y.npy`` (one output) or ``-o Y.npz`` (named arrays), written atomically."""
    if path.endswith(".npy"):
        if len(outputs) != 1:
            raise CliError(f"the program has {len(outputs)} outputs ({', '.join(outputs)}); "
                           "write them to a .npz file")
        value = next(iter(outputs.values()))
        write_atomic(path, lambda f: np.save(f, value))
    else:
        write_atomic(path, lambda f: np.savez(f, **outputs))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """An output file (assembly, stats, report), written atomically."""
    write_atomic(path, lambda f: f.write(data))
