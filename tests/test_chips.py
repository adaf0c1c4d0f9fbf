"""Models larger than a chip (``[chip] chips``, ``overflow``): tiles spread over several chips
or over reprogramming rounds compute what one large chip computes; the timing model charges the
chip-to-chip link per bit and message, and reprogramming per round, as documented
(``runtime/timing.py``: ``estimate``, ``reprogramming``)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from nmc.backends.target import TargetError, load_target, with_fields
from nmc.compiler.driver import compile_model
from nmc.compiler.passes.placement import CapacityError
from nmc.isa.instructions import Instr, Loop
from nmc.runtime.compiled import CompiledProgram
from nmc.runtime.timing import estimate

TILING = {"tile-mapping": "rows=8,cols=16"}   # 22 tiles for the MLP below


def _mlp():
    rng = np.random.default_rng(3)
    nodes, inits, prev = [], [], "x"
    for i, (k, m) in enumerate(zip((20, 30, 10), (30, 10, 5))):
        inits.append(numpy_helper.from_array(rng.normal(size=(k, m)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 20])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _target(cores: int, **fields):
    """pcm with ``cores`` crossbar cores of 8 crossbars per chip."""
    return with_fields(load_target("pcm"), {"cores.crossbar.count": cores, **fields})


def _outputs(compiled, x):
    return CompiledProgram(compiled.program, compiled.target).run(x, noise=False)["h2"]


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((16, 20)).astype(np.float32)


def test_a_model_larger_than_a_chip_spreads_over_chips_and_computes_the_same(x):
    big = compile_model(_mlp(), _target(3), TILING)                 # one chip of 24 crossbars
    two = compile_model(_mlp(), _target(2), TILING)                 # 16 per chip: chips = 0 → as many as needed
    assert big.target.chips == 1 and two.target.chips == 2
    assert two.graph.chip_plan.chips == 2 and two.graph.chip_plan.rounds == 1
    cores = {two.target.chip_of(t.core) for t in two.program.tiles.values()}
    assert cores == {0, 1}
    assert [(t.core, t.xbar) for t in two.program.tiles.values()] == [(t.core, t.xbar) for t in big.program.tiles.values()]
    np.testing.assert_array_equal(_outputs(two, x), _outputs(big, x))
    assert "chips = 2" in two.target.source      # the program carries the system it was compiled for


def test_reprogramming_rounds_compute_the_same(x):
    big = compile_model(_mlp(), _target(3), TILING)
    rounds = compile_model(_mlp(), _target(2, **{"chip.chips": 1, "chip.overflow": "reprogram"}), TILING)
    plan = rounds.graph.chip_plan
    assert (plan.chips, plan.rounds, plan.crossbars) == (1, 2, 16)
    assert sorted(t.round for t in rounds.program.tiles.values()) == [0] * 16 + [1] * 6
    np.testing.assert_array_equal(_outputs(rounds, x), _outputs(big, x))
    with pytest.raises(CapacityError, match="chip.chips = 1; allow more chips"):
        compile_model(_mlp(), _target(2, **{"chip.chips": 1}), TILING)


def _sent_bits(program, target) -> float:
    """Bits every send to a core on another chip carries, loops counted."""
    def walk(stmts, times):
        total = 0.0
        for s in stmts:
            if isinstance(s, Loop):
                total += walk(s.body, times * s.count)
            elif isinstance(s, Instr) and s.opcode == "send":
                if target.chip_of(s.operands[0].core) != target.chip_of(core):
                    total += times * s.operands[1].size * 32
        return total

    bits = 0.0
    for core, stream in program.cores.items():
        bits += walk(stream, 1)
    return bits


def test_the_link_charges_its_energy_per_bit_and_its_latency():
    two = compile_model(_mlp(), _target(2, **{"costs.link_pj_per_bit": 7.0}), TILING)
    bits = _sent_bits(two.program, two.target)
    assert bits > 0
    stats = estimate(two.program, two.target)
    assert stats.energy_pj["link"] == pytest.approx(7.0 * bits)
    one = compile_model(_mlp(), _target(3), TILING)
    assert estimate(one.program, one.target).energy_pj["link"] == 0.0
    slow = compile_model(_mlp(), _target(2, **{"costs.link_latency_ns": 1000.0}), TILING)
    fast = compile_model(_mlp(), _target(2, **{"costs.link_latency_ns": 0.0}), TILING)
    # the last layer's tiles sit on chip 1: at least one message each way crosses the link on the path
    assert estimate(slow.program, slow.target).latency_cycles - estimate(fast.program, fast.target).latency_cycles \
        >= 2 * 1000.0 * slow.target.clock_ghz


def test_reprogramming_is_charged_per_round_and_batch():
    """Each round: per core, the rows of its tiles one after another at pulse_ns each (cores in
    parallel); every device one pulse at pulse_pj; shared by a batch of inferences_per_round."""
    fields = {"chip.chips": 1, "chip.overflow": "reprogram", "programming.pulse_ns": 40.0,
              "programming.pulse_pj": 3.0}
    rounds = compile_model(_mlp(), _target(2, **fields), TILING)
    batched = compile_model(_mlp(), _target(2, **fields, **{"programming.inferences_per_round": 4}), TILING)
    p, t = rounds.program, rounds.target
    per_round_core: dict = {}
    devices = 0
    for tile in p.tiles.values():
        n, k = p.consts[tile.weights].shape
        per_round_core[(tile.round, tile.core)] = per_round_core.get((tile.round, tile.core), 0.0) + k * 40.0
        devices += n * k * 2                                      # a differential pair per weight
    ns = sum(max(v for (r, _), v in per_round_core.items() if r == rr) for rr in (0, 1))
    stats, shared = estimate(p, t), estimate(batched.program, batched.target)
    assert stats.energy_pj["reprogram"] == pytest.approx(devices * 3.0)
    assert shared.energy_pj["reprogram"] == pytest.approx(devices * 3.0 / 4)
    assert stats.latency_cycles - shared.latency_cycles == pytest.approx(ns * t.clock_ghz * (1 - 1 / 4))
    assert stats.bottleneck_cycles == stats.latency_cycles     # no pipelining across rounds


def test_chip_fields_are_checked():
    pcm = load_target("pcm")
    assert pcm.chips == 0 and pcm.overflow == "error"
    with pytest.raises(TargetError, match="chip.overflow = 'spill'; known: error, reprogram"):
        with_fields(pcm, {"chip.overflow": "spill"})
    with pytest.raises(TargetError, match="chip.chips = -1 must not be negative"):
        with_fields(pcm, {"chip.chips": -1})
    three = with_fields(pcm, {"chip.chips": 3})
    xb = three.core_range("crossbar")
    assert (xb.start, len(xb)) == (1, 3 * 128) and three.core_count == 1 + 3 * 128
    assert [three.chip_of(c) for c in (0, 1, 128, 129, 384)] == [0, 0, 0, 1, 2]
    two = compile_model(_mlp(), _target(2), TILING)
    one = compile_model(_mlp(), _target(2, **{"chip.chips": 1, "chip.overflow": "reprogram"}), TILING)
    area = estimate(two.program, two.target).area_mm2
    for part, value in estimate(one.program, one.target).area_mm2.items():
        assert math.isclose(area[part], 2 * value)              # every chip of the system counted


# ----------------------------------------------------------------------------- replication
def _example(name):
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "examples" / name


@pytest.mark.parametrize("model,key", [("digits_cnn.onnx", "x_image"), ("tiny_transformer.onnx", None)])
def test_replicas_compute_the_same_and_stay_within_the_chip(model, key):
    """Throughput-oriented mapping (chip.mapping = "throughput"): replicas of the layers whose
    crossbars bound the throughput, on one core, each over its share of the positions; noise off,
    the outputs are the latency-oriented program's exactly, and the chip is never exceeded. The
    transformer is bound by its vector core: replicas would not help, so it gets none."""
    path = _example(model)
    small = {"cores.crossbar.count": 2, "chip.chips": 1}            # 16 crossbars: the budget binds
    latency = compile_model(path, _target(2, **small))
    throughput = compile_model(path, _target(2, **small, **{"chip.mapping": "throughput"}))
    tiles = list(throughput.program.tiles.values())
    assert len(tiles) <= 16 and len({(t.core, t.xbar) for t in tiles}) == len(tiles)
    for m in throughput.graph.mapping.values():
        if m.unit == "crossbar":
            for t in m.tiles:
                first = m.tiles[m.tiles.index(t) - t.replica]
                assert first.core == t.core and first.replica == 0
    if key is None:
        import onnx

        feeds = {i.name: np.random.default_rng(1).standard_normal([d.dim_value or 2 for d in i.type.tensor_type.shape.dim])
                 .astype(np.float32) for i in onnx.load(path).graph.input}
    else:
        feeds = np.load(_example("digits_test.npz"))[key][:20]
    a = CompiledProgram(latency.program, latency.target).run(feeds, noise=False)
    b = CompiledProgram(throughput.program, throughput.target).run(feeds, noise=False)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    faster = estimate(throughput.program, throughput.target).throughput_per_s
    before = estimate(latency.program, latency.target).throughput_per_s
    if key:
        assert len(tiles) > len(latency.program.tiles) and faster > 2 * before
    else:
        assert len(tiles) == len(latency.program.tiles) and faster == before


def test_each_layer_gets_the_replicas_its_crossbars_need():
    """replicas = min(ceil(busiest tile's cycles / busiest core's cycles), crossbars per core,
    positions of the first output axis), measured on the latency-oriented program."""
    from nmc.compiler.replication import choose_replicas, tile_busy

    plain = compile_model(_example("digits_cnn.onnx"), load_target("pcm"))
    busy = tile_busy(plain.program, plain.target)
    floor = max(estimate(plain.program, plain.target).core_busy_cycles.values())
    axes = {"/0/Conv": 8, "/4/Conv": 4, "/9/Gemm": 1}
    want = {}
    for name, tile in plain.program.tiles.items():
        layer = plain.program.layers[tile.layer].name
        r = min(math.ceil(busy[name] / floor), 8, axes[layer])
        if busy[name] > floor and r > 1:
            want[layer] = r
    assert want and choose_replicas(plain.program, plain.target, axes) == want
    fast = compile_model(_example("digits_cnn.onnx"), with_fields(load_target("pcm"), {"chip.mapping": "throughput"}))
    got = {fast.program.layers[t.layer].name: 0 for t in fast.program.tiles.values()}
    for t in fast.program.tiles.values():
        got[fast.program.layers[t.layer].name] += 1
    assert {k: v for k, v in got.items() if v > 1} == want


# ----------------------------------------------------------------------------- dense mapping
def test_dense_mapping_stacks_blocks_on_free_rows_and_computes_the_same():
    """digits CNN: 9 + 144 + 32 rows stack on one 256-row crossbar; the outputs are those of one
    block per crossbar; the crossbar's reads are serialised, so the bottleneck is their sum."""
    from nmc.runtime.costs import Cost, CostModel

    one_each = compile_model(_example("digits_cnn.onnx"), load_target("pcm"))
    dense = compile_model(_example("digits_cnn.onnx"), with_fields(load_target("pcm"), {"chip.mapping": "dense"}))
    tiles = list(dense.program.tiles.values())
    assert len({(t.core, t.xbar) for t in tiles}) == 1 < len(one_each.program.tiles) == len(tiles)
    spans = sorted((t.row, t.row + dense.program.consts[t.weights].shape[1]) for t in tiles)
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] <= 256
    x = np.load(_example("digits_test.npz"))["x_image"][:20]
    np.testing.assert_array_equal(CompiledProgram(dense.program, dense.target).run(x, noise=False)["logits"],
                                  CompiledProgram(one_each.program, one_each.target).run(x, noise=False)["logits"])
    stats = estimate(dense.program, dense.target)
    model = CostModel(dense.program, dense.target)

    def reads(stmts, times=1):   # busy cycles of every xmvm, loops counted
        total = 0.0
        for s in stmts:
            if isinstance(s, Loop):
                total += reads(s.body, times * s.count)
            elif isinstance(s, Instr) and s.opcode == "xmvm":
                cost = Cost()
                model.mvm(s.operands[1].name, cost)
                total += times * max(v for u, v in cost.busy.items() if u.kind == "xbar")
        return total

    crossbar_busy = sum(reads(stream) for stream in dense.program.cores.values())
    assert stats.bottleneck_cycles >= crossbar_busy > max(stats.core_busy_cycles.values())
    assert stats.bottleneck_cycles == pytest.approx(crossbar_busy)
    assert estimate(one_each.program, one_each.target).bottleneck_cycles < crossbar_busy


def test_the_compile_summary_says_how_the_model_was_mapped(tmp_path):
    import subprocess
    import sys

    cli = [sys.executable, "-m", "nmc.compiler.cli", "compile", str(_example("digits_cnn.onnx")), "-t", "pcm", "-q"]
    fast = subprocess.run(cli + ["--set", "chip.mapping=throughput", "-o", str(tmp_path / "a.nmc")],
                          capture_output=True, text=True)
    assert fast.returncode == 0, fast.stderr
    assert "mapping       throughput-oriented: /0/Conv ×" in fast.stdout
    vgg_like = subprocess.run(cli + ["--set", "cores.crossbar.count=1", "--set", "cores.crossbar.crossbars_per_core=1",
                                     "-o", str(tmp_path / "b.nmc")], capture_output=True, text=True)
    assert vgg_like.returncode == 0, vgg_like.stderr
    assert "system        3 chips of 1 crossbars" in vgg_like.stdout
