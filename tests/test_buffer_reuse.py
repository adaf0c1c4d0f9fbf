"""A chunk that reuses an earlier chunk's memory: every sample's local buffers start at zero
(docs/isa.md), and the runtime zeroes only the buffers a sample could read before writing
(``runtime.machine.written_first``: the first access in the core's stream writes every element
and reads none)."""
from __future__ import annotations

import numpy as np
import pytest

from nmc.isa import parse_program
from nmc.runtime import execute
from nmc.runtime.machine import written_first

HEAD = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [4]
.output "y" out0 f32 [4]
.buffer in0 f32 4 global
.buffer out0 f32 4 global
.buffer a f32 4 core0
.buffer b f32 4 core0
.buffer c f32 4 core0
.core 0
    load a[0; 4:1], in0[0; 4:1]
"""


def _program(body: str):
    return parse_program(HEAD + body + "    store out0[0; 4:1], c[0; 4:1]\n")


@pytest.mark.parametrize("body, safe", [
    ("    mov c[0; 4:1], a[0; 4:1]\n", {"a", "c"}),                                        # whole, write only
    ("    add c[0; 4:1], c[0; 4:1], a[0; 4:1]\n", {"a"}),                                  # c read first
    ("    fill c[0; 2:1], #1.0\n    mov c[2; 2:1], a[0; 2:1]\n", {"a"}),                  # half, then half
    ("    mov c[0; 2:2, 2:1], a[0; 2:2, 2:1]\n", {"a", "c"}),                              # two dims, dense
    ("    mov c[0; 2:1, 2:2], a[0; 2:2, 2:1]\n", {"a", "c"}),                              # transposed, dense
    ("    mov c[0; 2:2], a[0; 2:1]\n", {"a"}),                                             # every other element
    ("    mov c[0; 2:1, 2:1], a[0; 2:2, 2:1]\n", {"a"}),                                  # elements 0, 1 twice
    ("    loop %i, 4 {\n        mov c[0 + 1*%i; 1:1], a[0 + 1*%i; 1:1]\n    }\n", {"a", "c"}),  # a loop covers it
    ("    loop %i, 4 {\n        mov c[0 + 1*%i; 1:1], a[0 + 1*%i; 1:1]\n"
     "        add b[0; 1:1], c[3; 1:1], a[0; 1:1]\n    }\n    mov c[0; 4:1], b[0; 4:1]\n", {"a"}),  # c read in the loop
    ("    loop %i, 2 {\n        mov c[0 + 1*%i; 1:1], a[0 + 1*%i; 1:1]\n    }\n", {"a"}),    # covers half
])
def test_only_buffers_written_whole_before_any_read_are_left_unzeroed(body, safe):
    assert written_first(_program(body)) == safe


@pytest.mark.parametrize("body", [
    "    add c[0; 4:1], c[0; 4:1], a[0; 4:1]\n",                           # c += x: c must start at 0
    "    fill c[0; 2:1], #1.0\n    add c[2; 2:1], c[2; 2:1], a[2; 2:1]\n",  # half filled, half accumulated
])
def test_every_sample_starts_from_zeroed_buffers_whatever_the_chunk(body):
    p = _program(body)
    x = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    whole = execute(p, {"x": x})["y"]
    for chunk in (1, 2):
        np.testing.assert_array_equal(execute(p, {"x": x}, chunk=chunk, workers=1)["y"], whole)
    want = x.copy()
    if "fill" in body:
        want[:, :2] = 1.0
    np.testing.assert_array_equal(whole, want)
