"""Pass machinery checked on hand-made cases: registering a contract and checking it.

``@contract(name)`` registers a predicate under ``name``, and what the contract says is the first
line of its docstring; ``check`` runs the contracts a pass names and raises a ``VerifyError``
that names the pass, the contract, what it says and where it fails.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from nmc.compiler.ir.graph import Graph
from nmc.compiler.ir.verify import VerifyError
from nmc.compiler.passes.base import Pass
from nmc.compiler.passes.contracts import CONTRACTS, check, contract

NAME = "test-only-graph-has-no-outputs"


@pytest.fixture
def registered():
    """A contract registered for this test only (and removed after it)."""
    assert NAME not in CONTRACTS

    def no_outputs(g: Graph) -> str:
        """the graph has no outputs

        (a second docstring line that is not what the contract says)"""
        return f"it has {len(g.outputs)}" if g.outputs else ""

    try:
        returned = contract(NAME)(no_outputs)
        yield no_outputs, returned
    finally:
        CONTRACTS.pop(NAME, None)


@dataclass(frozen=True)
class _Needs(Pass):
    name = "needs-no-outputs"
    requires = (NAME,)
    ensures = (NAME,)


def test_contract_registers_the_predicate_under_its_name(registered):
    fn, returned = registered
    assert returned is fn                      # the decorator leaves the function usable as it was
    found = CONTRACTS[NAME]
    assert found.name == NAME
    assert found.says == "the graph has no outputs"
    assert found.violation is fn


def test_check_reports_pass_contract_and_place(registered):
    g = Graph()
    check(_Needs(), g, "requires")              # holds: nothing raised
    check(_Needs(), g, "ensures")
    g.outputs.append("y")
    with pytest.raises(VerifyError, match=r"^pass needs-no-outputs requires test-only-graph-has-no-outputs "
                                          r"\(the graph has no outputs\): it has 1$"):
        check(_Needs(), g, "requires")
    with pytest.raises(VerifyError, match=r"^pass needs-no-outputs did not ensure test-only-graph-has-no-outputs "
                                          r"\(the graph has no outputs\): it has 1$"):
        check(_Needs(), g, "ensures")


def test_a_pass_naming_no_contract_is_refused():
    @dataclass(frozen=True)
    class Typo(Pass):
        name = "typo"
        requires = ("no-such-contract",)

    with pytest.raises(VerifyError, match=r"pass typo requires 'no-such-contract', which is no contract; "
                                          r"contracts: no-mapping-records, batchnorm-folded, every-node-partitioned, "):
        check(Typo(), Graph(), "requires")


# ---------------------------------------------------------------------- partition, tile-mapping, placement
from pathlib import Path  # noqa: E402

import nmc.backends  # noqa: E402

import numpy as np  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from nmc.compiler import compile_model  # noqa: E402
from nmc.compiler.errors import CompileError  # noqa: E402
from nmc.compiler.ir import ops  # noqa: E402
from nmc.compiler.ir.mapping import TileBlock  # noqa: E402
from nmc.compiler.passes.placement import CapacityError  # noqa: E402
from nmc.compiler.passes.tile_mapping import plan_blocks  # noqa: E402

TARGETS = Path(nmc.backends.__file__).resolve().parent / "targets"   # beside the package, wherever it is
SIZES = (20, 30, 10, 5)   # x[N, 20] → MatMul 20×30 → Relu → MatMul 30×10 → MatMul 10×5


def _mlp(sizes=SIZES):
    rng = np.random.default_rng(3)
    nodes, inits, prev = [], [], "x"
    for i, (k, m) in enumerate(zip(sizes, sizes[1:])):
        inits.append(numpy_helper.from_array(rng.normal(size=(k, m)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
        if i == 0:
            nodes.append(helper.make_node("Relu", [prev], ["r0"]))
            prev = "r0"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", sizes[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _records(compiled):
    """(op type, mapping record) per node, in order."""
    return [(type(n.op).__name__, compiled.graph.mapping[n.name]) for n in compiled.graph.nodes()]


def _dense(compiled):
    return [m for kind, m in _records(compiled) if kind == "Dense"]


@pytest.mark.parametrize("policy,units,reasons", [
    ("", ["crossbar"] * 3, ["static weights (600) on pcm crossbars", "static weights (300) on pcm crossbars",
                            "static weights (50) on pcm crossbars"]),
    ("first_digital=true", ["vector", "crossbar", "crossbar"],
     ["first matrix layer kept digital by policy (first_digital)"]),
    ("last_digital=true", ["crossbar", "crossbar", "vector"],
     [None, None, "last matrix layer kept digital by policy (last_digital)"]),
    ("min_weights=300", ["crossbar", "crossbar", "vector"], [None, None, "50 weights, below the policy's min_weights=300"]),
    ("min_weights=301", ["crossbar", "vector", "vector"], [None, "300 weights, below the policy's min_weights=301"]),
    ("first_digital=true,last_digital=true", ["vector", "crossbar", "vector"], []),
])
def test_partition_policy_choices_and_reasons(policy, units, reasons):
    compiled = compile_model(_mlp(), "pcm", pass_options={"partition": policy} if policy else None)
    dense = _dense(compiled)
    assert [m.unit for m in dense] == units
    for m, reason in zip(dense, reasons):
        if reason is not None:
            assert m.reason == reason
    relu = [m for kind, m in _records(compiled) if kind == "Unary"]
    assert [(m.unit, m.reason) for m in relu] == [("vector", "element-wise function")]


def test_partition_without_crossbars_keeps_every_layer_digital():
    compiled = compile_model(_mlp(), "ideal")
    assert {(m.unit, m.reason) for m in _dense(compiled)} == {("vector", "the target has no crossbar cores")}


def _conv(batch):
    w = np.random.default_rng(4).normal(size=(4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "c",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, 5, 5])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_partition_keeps_a_fixed_batch_convolution_digital():
    (conv,) = [m for kind, m in _records(compile_model(_conv(2), "pcm")) if kind == "Conv"]
    assert conv.unit == "vector" and conv.reason.startswith("a fixed batch of several images")
    (conv,) = [m for kind, m in _records(compile_model(_conv(1), "pcm")) if kind == "Conv"]
    assert conv.unit == "crossbar" and conv.reason == "static weights (108) on pcm crossbars"


def test_plan_blocks_by_hand():
    # Dense 300 inputs × 70 outputs on 128 × 64 crossbars, one column per weight: rows 128 + 128 + 44,
    # columns 64 + 6 → 3 × 2 blocks, row block by row block
    blocks = plan_blocks(1, 300, 70, 1, 128, 64, 1)
    assert [(b.channel, b.channels, b.out, b.outs, b.rows, b.cols) for b in blocks] == [
        (0, 128, 0, 64, 128, 64), (0, 128, 64, 6, 128, 6), (128, 128, 0, 64, 128, 64), (128, 128, 64, 6, 128, 6),
        (256, 44, 0, 64, 44, 64), (256, 44, 64, 6, 44, 6)]
    # two columns per weight: 64 columns hold 32 outputs
    assert [(b.out, b.outs, b.cols) for b in plan_blocks(1, 10, 70, 1, 128, 64, 2)] == [
        (0, 32, 64), (32, 32, 64), (64, 6, 12)]
    # 3×3 convolution, 30 channels, 128 rows: 14 whole channels (126 rows) per block, then 2
    assert [(b.channel, b.channels, b.rows) for b in plan_blocks(1, 30, 8, 9, 128, 64, 1)] == [
        (0, 14, 126), (14, 14, 126), (28, 2, 18)]
    # depthwise 3×3 over 32 channels: 14 groups of 9 rows fit 128 rows → packed 14 + 14 + 4
    assert plan_blocks(32, 1, 1, 9, 128, 64, 1) == [TileBlock(0, 14, 0, 1, 0, 1, 126, 14),
                                                   TileBlock(14, 14, 0, 1, 0, 1, 126, 14),
                                                   TileBlock(28, 4, 0, 1, 0, 1, 36, 4)]
    # packing is also bounded by the columns: 4 outputs per group, 2 columns each, 16 columns → 2 groups
    assert [(b.group, b.groups, b.rows, b.cols) for b in plan_blocks(5, 2, 4, 1, 128, 16, 2)] == [
        (0, 2, 4, 16), (2, 2, 4, 16), (4, 1, 2, 8)]
    # grouped layer whose group does not fit one crossbar: per group, cut like a dense layer
    assert [(b.group, b.groups, b.channel, b.channels, b.outs) for b in plan_blocks(2, 20, 3, 1, 16, 64, 1)] == [
        (0, 1, 0, 16, 3), (0, 1, 16, 4, 3), (1, 1, 0, 16, 3), (1, 1, 16, 4, 3)]
    # two small groups share one crossbar: 2 × (2 rows, 4 outputs)
    assert plan_blocks(2, 2, 4, 1, 128, 64, 1) == [TileBlock(0, 2, 0, 2, 0, 4, 4, 8)]
    # a group of 2 channels × 9 taps fills 18 rows exactly: one group per crossbar, never two
    assert plan_blocks(4, 2, 1, 9, 18, 64, 1) == [TileBlock(g, 1, 0, 2, 0, 1, 18, 1) for g in range(4)]
    # a group of 4 channels × 9 taps (36 rows) on 16 rows: one channel (9 rows) per block
    assert [(b.group, b.channel, b.channels, b.rows) for b in plan_blocks(2, 4, 3, 9, 16, 64, 1)] == [
        (g, c, 1, 9) for g in range(2) for c in range(4)]
    # exactly full: one block
    assert plan_blocks(1, 128, 64, 1, 128, 64, 1) == [TileBlock(0, 1, 0, 128, 0, 64, 128, 64)]


def test_plan_blocks_refuses_what_cannot_fit():
    with pytest.raises(CompileError, match=r"^a kernel window of 9 rows does not fit crossbars of 8 rows$"):
        plan_blocks(1, 3, 4, 9, 8, 64, 1)
    with pytest.raises(CompileError, match=r"^one weight needs 4 columns but crossbars have 2$"):
        plan_blocks(1, 3, 4, 1, 8, 2, 4)
    # at the limits: 9 rows hold one channel's window, 4 columns one output → 3 channels × 4 outputs blocks
    assert len(plan_blocks(1, 3, 4, 9, 9, 4, 4)) == 12


def test_tile_mapping_and_placement_by_hand():
    # pcm: differential pairs, 2 columns per weight; tiles of 8 rows × 16 columns hold 8 inputs × 8 outputs
    compiled = compile_model(_mlp(), "pcm", pass_options={"tile-mapping": "rows=8,cols=16"})
    dense = _dense(compiled)
    # 20×30: 3 row blocks × 4 column blocks; 30×10: 4 × 2; 10×5: 2 × 1
    assert [len(m.tiles) for m in dense] == [12, 8, 2]
    first = dense[0].tiles
    assert [(t.channel, t.channels, t.out, t.outs) for t in first[:5]] == [
        (0, 8, 0, 8), (0, 8, 8, 8), (0, 8, 16, 8), (0, 8, 24, 6), (8, 8, 0, 8)]
    assert (first[-1].channel, first[-1].channels, first[-1].rows, first[-1].cols) == (16, 4, 4, 12)
    # placement: one tile per crossbar, in layer order, 8 crossbars per core, crossbar cores from core 1
    placed = [(t.core, t.xbar) for m in dense for t in m.tiles]
    assert placed == [(1 + i // 8, i % 8) for i in range(22)]


def test_tile_mapping_options_must_fit_the_target():
    with pytest.raises(CompileError, match=r"pass tile-mapping: rows=257 must be between 1 and the target's 256"):
        compile_model(_mlp(), "pcm", pass_options={"tile-mapping": "rows=257"})
    with pytest.raises(CompileError, match=r"pass tile-mapping: cols=300 must be between 1 and the target's 256"):
        compile_model(_mlp(), "pcm", pass_options={"tile-mapping": "cols=300"})
    full = compile_model(_mlp(), "pcm", pass_options={"tile-mapping": "rows=256,cols=256"})
    assert [len(m.tiles) for m in _dense(full)] == [1, 1, 1]


def test_placement_refuses_a_model_larger_than_the_target(tmp_path):
    text = (TARGETS / "pcm.toml").read_text().replace('name = "pcm"', 'name = "pcm-two-cores"')
    text = text.replace("count = 128", "count = 2")
    path = tmp_path / "pcm-two-cores.toml"
    path.write_text(text.replace("clock_ghz = 1.0", "clock_ghz = 1.0\nchips = 1"))
    with pytest.raises(CapacityError, match=r"the model needs 22 crossbars of 256×256 but target 'pcm-two-cores' has "
                                            r"16 per chip \(2 cores × 8\) and chip.chips = 1; allow more chips"):
        compile_model(_mlp(), str(path), pass_options={"tile-mapping": "rows=8,cols=16"})
    path.write_text(text)
    # tiles of 16 rows: 20×30 → 2 × 4 = 8, 30×10 → 2 × 2 = 4, 10×5 → 1 × 1 = 1: 13 tiles fit 16 crossbars
    ok = compile_model(_mlp(), str(path), pass_options={"tile-mapping": "rows=16,cols=16"})
    assert [len(m.tiles) for m in _dense(ok)] == [8, 4, 1]
    assert max(t.core for m in _dense(ok) for t in m.tiles) == 2
    # tiles of 7 rows × 10 outputs: 20×30 → 3 × 3, 30×10 → 5 × 1, 10×5 → 2 × 1: 16 tiles fill 16 crossbars exactly
    full = compile_model(_mlp(), str(path), pass_options={"tile-mapping": "rows=7,cols=20"})
    assert [len(m.tiles) for m in _dense(full)] == [9, 5, 2]
    assert [(t.core, t.xbar) for m in _dense(full) for t in m.tiles] == [(1 + i // 8, i % 8) for i in range(16)]


def test_passes_with_nothing_to_map_change_nothing():
    """Every layer kept digital: the crossbar passes find nothing to do and say so (False), with
    the target or without one, and leave the partition's records as they were."""
    from nmc.backends.target import load_target
    from nmc.compiler.frontend import import_onnx
    from nmc.compiler.passes import BitSlicing, Partition, Placement, Quantize, TileMapping

    pcm = load_target("pcm")
    g = import_onnx(_mlp())
    assert Partition(min_weights=10 ** 9).run(g, pcm) is True
    records = dict(g.mapping)
    assert {m.unit for m in records.values()} == {"vector"}
    for p in (Quantize(), TileMapping(), BitSlicing(), Placement()):
        assert p.run(g, pcm) is False, p.name
        assert p.run(g) is False, p.name
    assert g.mapping == records
    fresh = import_onnx(_mlp())                 # not partitioned at all: no records to map either
    for p in (Quantize(), TileMapping(), BitSlicing(), Placement()):
        assert p.run(fresh, pcm) is False, p.name
    assert not fresh.mapping


def test_crossbar_contracts_reject_a_record_without_what_the_pass_ensures():
    from dataclasses import replace

    from nmc.backends.target import load_target
    from nmc.compiler.frontend import import_onnx
    from nmc.compiler.passes import BitSlicing, Partition, Placement, Quantize, TileMapping

    pcm = load_target("pcm")
    g = import_onnx(_mlp())
    Partition().run(g, pcm)
    check(Quantize(), g, "requires")
    with pytest.raises(VerifyError, match=r"pass quantize did not ensure crossbar-layers-quantized .*: "
                                          r"node n0_dense \(ONNX MatMul .*\): crossbar record has no quant"):
        check(Quantize(), g, "ensures")
    Quantize().run(g, pcm)
    with pytest.raises(VerifyError, match=r"pass bit-slicing requires crossbar-layers-tiled .*: "
                                          r"node n0_dense .*: crossbar record has no tiles"):
        check(BitSlicing(), g, "requires")
    TileMapping().run(g, pcm)
    with pytest.raises(VerifyError, match=r"pass bit-slicing did not ensure adc-ranges-set .*: node n0_dense .*: tile 0 has ADC "
                                          r"range 0.0 from ''"):
        check(BitSlicing(), g, "ensures")
    with pytest.raises(VerifyError, match=r"pass placement did not ensure tiles-placed .*: node n0_dense .*: tile 0 is on core -1"):
        check(Placement(), g, "ensures")
    BitSlicing().run(g, pcm)
    Placement().run(g, pcm)
    for p in (BitSlicing(), Placement()):
        check(p, g, "ensures")
    # a Relu put on crossbars by mistake
    relu = next(n for n in g.nodes() if n.op.__class__.__name__ == "Unary")
    g.mapping[relu.name] = replace(g.mapping[relu.name], unit="crossbar")
    with pytest.raises(VerifyError, match=r"crossbars-hold-matrix-layers .*: .* is a Unary"):
        check(Partition(), g, "ensures")


def test_each_pass_says_it_changed_the_graph_and_partition_needs_no_target():
    from nmc.backends.target import load_target
    from nmc.compiler.frontend import import_onnx
    from nmc.compiler.passes import BitSlicing, Partition, Placement, Quantize, TileMapping

    pcm = load_target("pcm")
    g = import_onnx(_mlp())
    assert Partition().run(g, pcm) is True
    assert Quantize().run(g, pcm) is True
    assert TileMapping().run(g, pcm) is True
    assert all(m.tiles for m in g.mapping.values() if m.unit == "crossbar")
    assert BitSlicing().run(g, pcm) is True
    assert Placement().run(g, pcm) is True
    assert all(t.core >= 1 for m in g.mapping.values() if m.unit == "crossbar" for t in m.tiles)
    g = import_onnx(_mlp())
    assert Partition().run(g) is True          # no target: no crossbar cores
    assert {m.reason for m in g.mapping.values() if m.unit == "vector"} >= {"the target has no crossbar cores"}


def test_an_op_without_a_listed_reason_is_partitioned_as_a_digital_op():
    nodes = [helper.make_node("Greater", ["x", "zero"], ["pos"]), helper.make_node("Where", ["pos", "x", "zero"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(np.zeros(1, np.float32), "zero")])
    compiled = compile_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "pcm")
    records = _records(compiled)
    assert {kind for kind, _ in records} >= {"Compare", "Select"}
    assert {(m.unit, m.reason) for kind, m in records if kind in ("Compare", "Select")} == {("vector", "digital op")}


def test_a_kernel_taller_than_the_tiles_is_refused_with_the_layer_named():
    with pytest.raises(CompileError, match=r"Conv.*: a kernel window of 9 rows does not fit crossbars of 4 rows"):
        compile_model(_conv(1), "pcm", pass_options={"tile-mapping": "rows=4"})


def _grouped_conv(channels: int, per_group: int, kernel: int):
    rng = np.random.default_rng(0)
    groups = channels // per_group
    w = rng.standard_normal((channels, per_group, kernel, kernel)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], group=groups, pads=[kernel // 2] * 4)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 6, 6])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("channels,per_group,kernel,share", [
    (64, 1, 3, 1 / 28),      # depthwise 3×3 on 256 rows: 28 groups per tile
    (64, 1, 5, 1 / 10),      # depthwise 5×5: 10 groups of 25 rows
    (64, 16, 3, 1 / 1),      # 4 groups of 16 channels × 9 taps = 144 rows: one group per tile
    (64, 8, 3, 1 / 3),       # 8 groups of 72 rows: 3 per tile
])
def test_grouped_convolutions_stay_digital_when_their_tiles_would_be_mostly_empty(channels, per_group, kernel, share):
    from nmc.backends.target import load_target
    from nmc.compiler.frontend import import_onnx
    from nmc.compiler.passes import Partition

    pcm = load_target("pcm")
    g = import_onnx(_grouped_conv(channels, per_group, kernel))
    conv = next(n for n in g.nodes() if n.op.__class__.__name__ == "Conv")
    Partition().run(g, pcm)
    record = g.mapping[conv.name]
    if share < 0.25:
        assert record.unit == "vector"
        assert record.reason == (f"{channels // per_group} groups: block-diagonal crossbar tiles would hold weights "
                                 f"in {100 * share:.1f}% of their cells (below the policy's min_cell_share=0.25)")
    else:
        assert record.unit == "crossbar"
    Partition(min_cell_share=0).run(g, pcm)
    assert g.mapping[conv.name].unit == "crossbar"
    Partition(min_cell_share=share + 1e-9).run(g, pcm)
    assert g.mapping[conv.name].unit == "vector"


def test_a_kernel_window_taller_than_the_crossbar_stays_digital():
    """ViT's 16×16 patch embedding (256 rows per channel) on isaac's 128-row crossbars."""
    from nmc.backends.target import load_target
    from nmc.compiler.frontend import import_onnx
    from nmc.compiler.passes import Partition

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], strides=[16, 16])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 2, 2])],
                              [numpy_helper.from_array(w, "w")])
    g = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    conv = next(n for n in g.nodes() if n.op.__class__.__name__ == "Conv")
    Partition().run(g, load_target("isaac"))
    assert g.mapping[conv.name].unit == "vector"
    assert g.mapping[conv.name].reason == ("a kernel window of 256 rows per input channel does not fit crossbars "
                                           "of 128 rows (blocks are cut at channels)")
    Partition().run(g, load_target("pcm"))
    assert g.mapping[conv.name].unit == "crossbar"
