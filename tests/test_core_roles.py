"""Cores are named by role, not by the order of ``[[cores]]`` groups in a target file: vector
cores are numbered first, then crossbar cores, then CAM cores."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import nmc
from nmc.backends.target import load_target, parse_target

PRESETS = Path(nmc.__file__).resolve().parent / "backends" / "targets"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def reordered(text: str) -> str:
    """The same target with its ``[[cores]]`` groups in reverse order."""
    head, *groups = re.split(r"(?m)^\[\[cores\]\]\n", text)
    last = groups[-1]
    tail_at = re.search(r"(?m)^\[(?!\[)", last)
    tail = last[tail_at.start():] if tail_at else ""
    groups[-1] = last[:tail_at.start()] if tail_at else last
    return head + "".join("[[cores]]\n" + g.rstrip("\n") + "\n\n" for g in reversed(groups)) + tail


@pytest.mark.parametrize("preset", ["pcm", "acam", "sram-digital"])
def test_group_order_in_the_file_changes_nothing(preset):
    text = (PRESETS / f"{preset}.toml").read_text()
    flipped = parse_target(reordered(text), "flipped.toml")
    assert reordered(text) != text and [g.kind for g in flipped.cores] == [g.kind for g in load_target(preset).cores]
    target = load_target(preset)
    for role in ("vector", "crossbar", "cam"):
        assert flipped.core_range(role) == target.core_range(role)
    assert target.vector_core == 0 and target.core_range("vector").stop <= target.core_range("crossbar").start


def test_a_reordered_target_file_gives_the_same_program(tmp_path):
    text = (PRESETS / "pcm.toml").read_text()
    (tmp_path / "flipped.toml").write_text(reordered(text))
    x = np.load(EXAMPLES / "digits_test.npz")["x_image"][:16]
    a = nmc.compile(EXAMPLES / "digits_cnn.onnx", "pcm")
    b = nmc.compile(EXAMPLES / "digits_cnn.onnx", tmp_path / "flipped.toml")
    assert {t.core for t in b.program.tiles.values()} == {t.core for t in a.program.tiles.values()} == {1}
    np.testing.assert_array_equal(a.run(x, time="1d")["logits"], b.run(x, time="1d")["logits"])


def test_core_ranges():
    pcm = load_target("pcm")
    assert pcm.core_range("vector") == range(0, 1) and pcm.core_range("crossbar") == range(1, 129)
    assert len(pcm.core_range("cam")) == 0
    with pytest.raises(ValueError, match="roles: vector, crossbar, cam"):
        pcm.core_range("gpu")
