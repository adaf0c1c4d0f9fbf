"""Core buffers: what each core of a program holds, the compile summary's line, and the
``buffer_kib`` limit a target may state (a clear error, nothing written)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nmc.backends.target import TargetError, load_target, with_fields
from nmc.compiler import compile_model
from nmc.compiler.buffers import check_buffers, core_buffer_bytes, describe
from nmc.compiler.passes import CapacityError

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "examples" / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def compiled():
    return compile_model(str(CNN), "pcm")


def test_core_buffers_are_the_sum_of_the_core_local_buffers_in_bytes(compiled):
    p = compiled.program
    need = core_buffer_bytes(p)
    by_hand = {}
    for b in p.buffers.values():
        if b.space != "global":
            by_hand[int(b.space[4:])] = by_hand.get(int(b.space[4:]), 0) + 4 * b.size   # f32 and i32: 4 bytes
    assert need == by_hand and set(need) == {0, 1}
    assert sum(need.values()) == 4 * sum(b.size for b in p.buffers.values() if b.space != "global")
    line = describe(p, compiled.target)
    assert f"vector cores up to {need[0] / 1024:,.1f} KiB (core 0; no limit stated)" in line
    assert f"crossbar cores up to {need[1] / 1024:,.1f} KiB (core 1; no limit stated)" in line


@pytest.mark.parametrize("kind, core", [("crossbar", 1), ("vector", 0)])
def test_a_core_over_its_stated_buffer_is_refused_by_name(compiled, kind, core):
    need = core_buffer_bytes(compiled.program)[core]
    enough = with_fields(compiled.target, {f"cores.{kind}.buffer_kib": need / 1024})
    check_buffers(compiled.program, enough)                       # exactly enough passes
    short = with_fields(compiled.target, {f"cores.{kind}.buffer_kib": need / 1024 - 0.5})
    with pytest.raises(CapacityError, match=rf"core {core} \({kind}\) needs {need / 1024:,.1f} KiB"):
        check_buffers(compiled.program, short)
    with pytest.raises(CapacityError, match=f"core {core}"):
        compile_model(str(CNN), short)


def test_a_negative_buffer_is_a_target_error():
    with pytest.raises(TargetError, match="buffer_kib = -1.0 must not be negative"):
        with_fields(load_target("pcm"), {"cores.vector.buffer_kib": -1})


def test_the_cli_refuses_and_writes_nothing(tmp_path):
    out = tmp_path / "p.nmc"
    run = subprocess.run([sys.executable, "-m", "nmc.compiler.cli", "compile", str(CNN), "--target", "pcm",
                          "--set", "cores.crossbar.buffer_kib=1", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 2 and "core 1 (crossbar) needs" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()
    ok = subprocess.run([sys.executable, "-m", "nmc.compiler.cli", "compile", str(CNN), "--target", "pcm",
                         "-o", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0 and "core buffers  vector cores up to" in ok.stdout
