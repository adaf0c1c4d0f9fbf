"""The generated parts of the documentation are up to date with the code."""
from __future__ import annotations

from nmc.isa.docs import DEFAULT_PATH, render_reference, update
from nmc.isa.instructions import OPCODES


def test_isa_md_is_up_to_date():
    text = DEFAULT_PATH.read_text()
    assert update(text) == text, "docs/isa.md is out of date with isa/instructions.py: run `python -m nmc.isa.docs`"


def test_every_opcode_has_an_entry():
    reference = render_reference()
    for name, spec in OPCODES.items():
        assert f"\n#### {name}\n" in reference
        assert f"[`{name}`](#{name})" in reference
