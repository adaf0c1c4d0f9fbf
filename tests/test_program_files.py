"""Program files: large arrays stored and mapped on load without a copy, small ones deflated
where it pays, corruption caught, first-layout files still read; ``nmc run`` and ``nmc report``
import neither ONNX nor the compiler."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import nmc
from nmc.isa import ProgramError, format_program, load_program, parse_program, save_program
from nmc.isa.container import STORE_FROM, _digest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PROGRAM = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [64]
.output "y" out1 f32 [300]
.buffer in0 f32 64 global
.buffer t0 f32 64 core0
.buffer t1 f32 300 core0
.buffer out1 f32 300 global
.const w f32 [1, 300, 64]
.const b f32 [300]
.const zeros f32 [300]
.layer 0 "fc" "Gemm"
.core 0
    load t0[0; 64:1], in0[0; 64:1]
    mvm t1[0; 300:1], @w[0], t0[0; 64:1] !0
    add t1[0; 300:1], t1[0; 300:1], b[0; 300:1] !0
    add t1[0; 300:1], t1[0; 300:1], zeros[0; 300:1] !0
    store out1[0; 300:1], t1[0; 300:1]
"""


def _program():
    p = parse_program(PROGRAM)
    rng = np.random.default_rng(0)
    p.data = {"w": rng.standard_normal((1, 300, 64)).astype(np.float32),  # 75 KiB: stored, mapped
              "b": rng.standard_normal(300).astype(np.float32),        # small, random: stored
              "zeros": np.zeros(300, np.float32)}                       # small, compressible: deflated
    return p


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "p.nmc"
    save_program(_program(), path, {"target.toml": "[chip]\n"})
    return path


def test_large_arrays_are_stored_aligned_and_mapped(saved):
    assert _program().data["w"].nbytes >= STORE_FROM > _program().data["b"].nbytes
    with zipfile.ZipFile(saved) as z:
        kinds = {i.filename: i.compress_type for i in z.infolist()}
    assert kinds["data/w.npy"] == kinds["data/b.npy"] == zipfile.ZIP_STORED
    assert kinds["data/zeros.npy"] == zipfile.ZIP_DEFLATED
    p, attachments = load_program(saved)
    assert attachments == {"target.toml": "[chip]\n"} and format_program(p) == PROGRAM
    for name, value in _program().data.items():
        assert p.data[name].dtype == value.dtype and p.data[name].shape == value.shape
        np.testing.assert_array_equal(p.data[name], value)
    w = p.data["w"]
    assert not w.flags.owndata and not w.flags.writeable and w.flags.aligned
    assert w.ctypes.data % 64 == 0  # the member's data starts 64-byte aligned


def test_a_changed_byte_of_a_mapped_array_fails_the_checksum(saved, tmp_path):
    raw = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("data/w.npy")
    raw[info.header_offset + 200 + 30 + len(info.filename) + len(info.extra)] ^= 0x40
    (tmp_path / "flipped.nmc").write_bytes(bytes(raw))
    with pytest.raises(ProgramError, match="checksum mismatch"):
        load_program(tmp_path / "flipped.nmc")


def test_a_member_that_does_not_hold_its_array_is_a_clear_error(saved, tmp_path):
    bad = tmp_path / "short.nmc"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            if item.filename == "data/w.npy":
                content = content[:-256]  # the header still promises 300 × 64 values
            dst.writestr(item, content)
    with pytest.raises(ProgramError, match="corrupt or truncated.*does not fill its member"):
        load_program(bad)
    (tmp_path / "cut.nmc").write_bytes(saved.read_bytes()[:40000])
    with pytest.raises(ProgramError, match="corrupt or truncated"):
        load_program(tmp_path / "cut.nmc")


def test_rewritten_zip_members_still_load(saved, tmp_path):
    """Members moved to unaligned offsets (a zip tool rewrote the file) load as copies."""
    moved = tmp_path / "moved.nmc"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(moved, "w") as dst:
        dst.writestr("pad", b"x")
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item))
    p, _ = load_program(moved)
    np.testing.assert_array_equal(p.data["w"], _program().data["w"])
    assert p.data["w"].flags.aligned


def test_files_of_the_first_layout_still_load(tmp_path):
    """Before: all arrays in one deflated ``data.npz``."""
    p = _program()
    asm = format_program(p)
    data = io.BytesIO()
    np.savez(data, **p.data)
    manifest = {"magic": "nmc-program", "format_version": p.version, "target": p.target,
                "inputs": [], "outputs": [], "batched": True, "attachments": [],
                "sha256": _digest(asm, p.data, {})}
    old = tmp_path / "old.nmc"
    with zipfile.ZipFile(old, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest))
        z.writestr("program.s", asm)
        z.writestr("data.npz", data.getvalue())
    q, _ = load_program(old)
    for name, value in p.data.items():
        np.testing.assert_array_equal(q.data[name], value)


def test_the_digest_is_the_sha256_of_the_arrays_bytes():
    """The checksum reads the arrays' memory in place; its value is the one earlier files carry."""
    p = _program()
    h = hashlib.sha256(b"asm")
    for name in sorted(p.data):
        h.update(f"{name}:{p.data[name].dtype.str}:{p.data[name].shape}".encode() + p.data[name].tobytes())
    assert _digest("asm", p.data, {}) == h.hexdigest()
    assert _digest("asm", {"s": np.float32(2.0)}, {}) == _digest("asm", {"s": np.array(2.0, np.float32)}, {})


@pytest.fixture(scope="module")
def program_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    nmc.compile(EXAMPLES / "digits_cnn.onnx", "pcm").save(out / "p.nmc")
    np.save(out / "x.npy", np.load(EXAMPLES / "digits_test.npz")["x_image"][:4])
    return out


_NO_COMPILER = ("bad = sorted(m for m in sys.modules if m == 'onnx' or m.startswith('onnx.') "
                "or m.startswith(('nmc.compiler.driver', 'nmc.compiler.frontend', 'nmc.compiler.passes')));"
                "assert not bad, bad")


@pytest.mark.parametrize("how", [
    "import nmc; p = nmc.load(d / 'p.nmc'); p.run(np.load(d / 'x.npy'), time='1d'); p.stats()",
    "from nmc.compiler.cli import main; assert main(['run', str(d / 'p.nmc'), '-i', str(d / 'x.npy'), '-q']) == 0",
    "from nmc.compiler.cli import main; assert main(['report', str(d / 'p.nmc'), '-o', str(d / 'r.json'), '-q']) == 0",
], ids=["api-run", "cli-run", "cli-report"])
def test_running_and_reporting_import_no_onnx_and_no_compiler(program_file, how):
    code = f"import sys, numpy as np; from pathlib import Path; d = Path(sys.argv[1]); {how}; {_NO_COMPILER}"
    done = subprocess.run([sys.executable, "-c", code, str(program_file)], capture_output=True, text=True,
                          cwd=program_file, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
