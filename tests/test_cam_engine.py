"""How a CAM engine is wired (the CAM group's ``input_dacs`` and ``reduction``): where the inputs
are coded, how the blocks' partial sums meet, what each costs — and that the answers stay."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nmc.backends.target import TargetError, load_target, with_fields
from nmc.compiler.driver import compile_model
from nmc.isa.instructions import Instr
from nmc.runtime.costs import CostModel, TimingError
from nmc.runtime.crossbar import SimOptions
from nmc.runtime.machine import execute
from nmc.runtime.timing import estimate


@pytest.fixture(scope="module")
def forest():
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    model = RandomForestClassifier(40, random_state=0).fit(x, y)
    return skl2onnx.to_onnx(model, x[:1], options={id(model): {"zipmap": False}}), x


def _engine(dacs: bool, reduction: str):
    return with_fields(load_target("acam"), {"cores.cam.input_dacs": dacs, "cores.cam.reduction": reduction})


def _opcodes(program, cores):
    return [s.opcode for c in cores for s in program.cores[c] if isinstance(s, Instr)]


def test_dacs_code_on_each_block_and_the_tree_meets_pairwise(forest):
    onx, x = forest
    vector = load_target("acam").vector_core
    plain = compile_model(onx, _engine(False, "chain"))
    wired = compile_model(onx, _engine(True, "tree"))
    blocks = next(m.cam for m in wired.graph.mapping.values() if m.unit == "cam").blocks
    assert len(blocks) > 2
    cams = [b.core for b in blocks]
    assert _opcodes(plain.program, [vector]).count("cenc") == 1 and "cenc" not in _opcodes(plain.program, cams)
    assert "cenc" not in _opcodes(wired.program, [vector])
    assert all(_opcodes(wired.program, [c]).count("cenc") == 1 for c in cams)
    # a pairwise tree: blocks − 1 adds over ceil(log2 blocks) levels, no running sum passed along
    assert _opcodes(wired.program, cams).count("add") == len(blocks) - 1
    first = [s.opcode for s in wired.program.cores[cams[0]] if isinstance(s, Instr)]
    assert first.count("add") == math.ceil(math.log2(len(blocks)))
    # the same codes whoever makes them; the sums equal within float32 rounding
    options = SimOptions(noise=False)
    a = execute(plain.program, {"X": x}, options=options)
    dacs_only = execute(compile_model(onx, _engine(True, "chain")).program, {"X": x}, options=options)
    np.testing.assert_array_equal(dacs_only["probabilities"], a["probabilities"])
    b = execute(wired.program, {"X": x}, options=options)
    np.testing.assert_allclose(b["probabilities"], a["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(b["label"], a["label"])


def test_dacs_and_a_tree_cost_what_they_do(forest):
    """A block's DACs code its features in one cycle (a cell_bits level DAC each) where the vector
    core compared every input with every cut; the tree's levels replace the chain's hops."""
    onx, _ = forest
    costs = {}
    for dacs, reduction in ((False, "chain"), (True, "chain"), (True, "tree")):
        target = _engine(dacs, reduction)
        costs[dacs, reduction] = estimate(compile_model(onx, target).program, target)
    chain, dacs, tree = costs[False, "chain"], costs[True, "chain"], costs[True, "tree"]
    assert dacs.latency_cycles < chain.latency_cycles and tree.latency_cycles < dacs.latency_cycles
    assert chain.energy_pj["vector"] > dacs.energy_pj["vector"]
    target = _engine(True, "tree")
    program = compile_model(onx, target).program
    model = CostModel(program, target)
    cam_core = next(c for c in target.core_range("cam") if program.cores.get(c))
    cenc = next(s for s in program.cores[cam_core] if isinstance(s, Instr) and s.opcode == "cenc")
    cost = model.instr(cenc, cam_core)
    features = cenc.operands[0].size
    assert cost.cycles == 1
    assert cost.energy["dac"] == pytest.approx(features * target.costs.dac_pj * (2 ** target.cam.cell_bits - 1))
    add = next(s for s in program.cores[cam_core] if isinstance(s, Instr) and s.opcode == "add")
    assert model.instr(add, cam_core).cycles == target.cam.reduce_cycles_per_level


def test_a_cam_core_has_no_vector_unit(forest):
    onx, _ = forest
    target = _engine(True, "tree")
    program = compile_model(onx, target).program
    cam_core = next(c for c in target.core_range("cam") if program.cores.get(c))
    add = next(s for s in program.cores[cam_core] if isinstance(s, Instr) and s.opcode == "add")
    with pytest.raises(TimingError, match="exp on CAM core .* not a vector unit"):
        CostModel(program, target).instr(Instr("exp", add.operands[:2], add.layer), cam_core)


def test_the_engine_fields_are_checked():
    with pytest.raises(TargetError, match="reduction = 'ring'; known: chain, tree"):
        with_fields(load_target("acam"), {"cores.cam.reduction": "ring"})
    acam = load_target("acam")
    assert acam.cam.input_dacs and acam.cam.reduction == "tree"


def _sends(program, core):
    return [s.operands[0].core for s in program.cores[core] if isinstance(s, Instr) and s.opcode == "send"]


def test_the_tree_network_distributes_the_input(forest):
    """Under ``tree`` the vector core sends the input once and block i forwards it to blocks
    2i+1 and 2i+2 (heap order), so no core sends more than three messages per inference (two
    forwards, one partial sum); under ``chain`` the vector core sends one per block. Same outputs,
    and the vector core is busy for less of each inference."""
    onx, x = forest
    vector = load_target("acam").vector_core
    stats = {}
    for reduction in ("chain", "tree"):
        target = _engine(True, reduction)
        compiled = compile_model(onx, target)
        program = compiled.program
        blocks = [b.core for b in next(m.cam for m in compiled.graph.mapping.values() if m.unit == "cam").blocks]
        vector_sends = [c for c in _sends(program, vector) if c in blocks]
        if reduction == "chain":
            assert sorted(vector_sends) == sorted(blocks)
        else:
            assert vector_sends == [blocks[0]]
            for i, core in enumerate(blocks):
                forwards = [c for c in _sends(program, core) if c in blocks[i + 1:]]
                assert forwards[:2] == [blocks[j] for j in (2 * i + 1, 2 * i + 2) if j < len(blocks)]
                received = [s.operands[1].core for s in program.cores[core]
                            if isinstance(s, Instr) and s.opcode == "recv"][0]
                assert received == (vector if i == 0 else blocks[(i - 1) // 2])
        stats[reduction] = (estimate(program, target), execute(program, {"X": x}, options=SimOptions(noise=False)))
    (chain, a), (tree, b) = stats["chain"], stats["tree"]
    assert tree.core_busy_cycles[str(vector)] < chain.core_busy_cycles[str(vector)]
    np.testing.assert_allclose(b["probabilities"], a["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(b["label"], a["label"])
