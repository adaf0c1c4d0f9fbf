"""The simulator: vectorised loops against a plain per-iteration reference, multi-core
streams, and input checking."""
from __future__ import annotations

import numpy as np
import pytest

from nmc.isa import Instr, Loop, parse_program
from nmc.isa.views import Affine, View, WeightRef
from nmc.runtime import SimulationError, execute
from nmc.runtime.machine import Machine


def _substitute(affine: Affine, env: dict[str, int]) -> Affine:
    return Affine(affine.const + sum(c * env[v] for v, c in affine.terms))


def _bind(ins: Instr, env: dict[str, int]) -> Instr:
    ops = []
    for op in ins.operands:
        if isinstance(op, View):
            op = View(op.buffer, _substitute(op.offset, env), op.dims)
        elif isinstance(op, WeightRef) and op.index is not None:
            op = WeightRef(op.name, _substitute(op.index, env))
        ops.append(op)
    return Instr(ins.opcode, tuple(ops), ins.layer)


def run_unrolled(program, inputs):
    """The slow, obvious reference: every loop iteration executed one after another."""
    batch = next(iter(inputs.values())).shape[0]
    m = Machine(program, batch)
    for port in program.inputs:
        m.mem[port.buffer][...] = inputs[port.name].reshape(batch, -1)

    def walk(stmts, env):
        for s in stmts:
            if isinstance(s, Loop):
                for i in range(s.count):
                    walk(s.body, {**env, s.var: i})
            else:
                m.execute(_bind(s, env))

    walk(program.cores[0], {})
    return {port.name: m.mem[port.buffer].reshape((batch,) + port.shape) for port in program.outputs}


CONV = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [2, 6, 6]
.output "y" out0 f32 [2, 2, 2, 2]
.buffer in0 f32 72 global
.buffer x f32 72 core0
.buffer y f32 32 core0
.buffer z f32 16 core0
.buffer out0 f32 16 global
.const w f32 [2, 2, 9]
.const b f32 [2]
.core 0
    load x[0; 72:1], in0[0; 72:1]
    loop %g, 2 {
        loop %i, 4 {
            loop %j, 2 {
                mvm y[0 + 16*%g + 2*%i + 1*%j; 2:8], @w[0 + 1*%g], x[0 + 36*%g + 6*%i + 3*%j - 1*%j; 1:36, 3:6, 3:1]
            }
        }
    }
    add y[0; 2:16, 16:1], y[0; 2:16, 16:1], b[0; 2:1, 16:0]
    rmax z[0; 16:1], y[0; 16:1, 2:16]
    gelu z[0; 16:1], z[0; 16:1]
    store out0[0; 16:1], z[0; 16:1]
"""


def test_vectorised_loops_match_iteration_by_iteration_reference():
    p = parse_program(CONV)
    rng = np.random.default_rng(1)
    p.data = {"w": rng.standard_normal((2, 2, 9)).astype(np.float32),
              "b": rng.standard_normal(2).astype(np.float32)}
    x = rng.standard_normal((5, 2, 6, 6)).astype(np.float32)
    fast = execute(p, {"x": x})["y"]
    slow = run_unrolled(p, {"x": x})["y"]
    np.testing.assert_array_equal(fast, slow)
    assert fast.shape == (5, 2, 2, 2, 2)


PIPELINE = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [4]
.output "y" out0 f32 [4]
.buffer in0 f32 4 global
.buffer out0 f32 4 global
.buffer a f32 4 core0
.buffer b f32 4 core1
.buffer c f32 4 core1
.core 0
    load a[0; 4:1], in0[0; 4:1]
    mul a[0; 4:1], a[0; 4:1], #2.0
    send $1, a[0; 4:1]
    sync
.core 1
    recv b[0; 4:1], $0
    add c[0; 4:1], b[0; 4:1], #1.0
    sync
    store out0[0; 4:1], c[0; 4:1]
"""


def test_two_cores_send_receive_and_sync():
    p = parse_program(PIPELINE)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(execute(p, {"x": x})["y"], 2 * x + 1)


def test_deadlock_is_reported():
    p = parse_program(PIPELINE.replace("    send $1, a[0; 4:1]\n", ""))
    with pytest.raises(SimulationError, match=r"deadlock: core 0 waits \(sync 1\), core 1 waits \(recv from core 0\)"):
        execute(p, {"x": np.zeros((1, 4), np.float32)})


def test_inputs_are_checked():
    p = parse_program(PIPELINE)
    with pytest.raises(SimulationError, match=r"has shape \[2, 5\], expected \['N', 4\]"):
        execute(p, {"x": np.zeros((2, 5), np.float32)})
    with pytest.raises(SimulationError, match="missing input"):
        execute(p, {})
    with pytest.raises(SimulationError, match="unknown input"):
        execute(p, {"x": np.zeros((2, 4), np.float32), "z": np.zeros(1)})


def test_erf_matches_math_erf():
    import math

    from nmc.runtime.kernels import erf

    xs = np.concatenate([np.linspace(-6, 6, 2001), np.geomspace(1e-8, 1, 50), -np.geomspace(1e-8, 1, 50)])
    ref = np.array([math.erf(v) for v in xs])
    rel = np.abs(erf(xs) - ref) / np.maximum(np.abs(ref), 1e-30)
    assert rel.max() < 2e-7


def test_a_view_outside_its_buffer_is_refused_not_read():
    """A view reaching past its buffer (which validation keeps out of programs) is a
    SimulationError naming it, never a read of whatever memory lies beyond; views inside read
    exactly their elements."""
    program = parse_program(".nmc 2\n.target \"ideal\"\n.batched true\n.input \"x\" in0 f32 [4]\n"
                            ".output \"y\" out0 f32 [4]\n.buffer in0 f32 4 global\n.buffer out0 f32 4 global\n"
                            ".core 0\n    mov out0[0; 4:1], in0[0; 4:1]\n")
    m = Machine(program, 3)
    m.mem["in0"][...] = np.arange(12, dtype=np.float32).reshape(3, 4)
    inside = m.view(View("in0", Affine(1), ((2, 2),)), ())
    np.testing.assert_array_equal(inside, [[1, 3], [5, 7], [9, 11]])
    assert inside.flags.writeable
    with pytest.raises(SimulationError, match=r"view in0\[3; \(\(2, 2\),\)\] reaches outside buffer in0"):
        m.view(View("in0", Affine(3), ((2, 2),)), ())
