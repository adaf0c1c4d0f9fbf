"""Pass contracts, the mapping records ``verify`` checks, and golden IR dumps after each pass.

Golden files: ``tests/golden/<case>/<n>-<stage>.txt`` hold ``dump(graph)`` after the frontend
and after every pass that changed it (a pass that leaves the dump as it was has no file). After
an intended change, regenerate them and review the diff::

    NMC_UPDATE_GOLDEN=1 python -m pytest tests/test_pass_contracts.py
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import EXAMPLES
from onnx import TensorProto, helper

from nmc.backends.target import load_target
from nmc.compiler import compile_model
from nmc.compiler.cli import main
from nmc.compiler.driver import default_passes, run_pass
from nmc.compiler.errors import CompileError, PassCrashed
from nmc.compiler.frontend import import_onnx
from nmc.compiler.ir.dump import dump
from nmc.compiler.ir.mapping import LayerMapping
from nmc.compiler.ir.verify import VerifyError, verify
from nmc.compiler.passes import FoldBatchNorm, Partition, Quantize, TileMapping
from nmc.compiler.passes.contracts import CONTRACTS

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("NMC_UPDATE_GOLDEN") == "1"


def _trees() -> onnx.ModelProto:
    """Two small regression trees on two features (one with a missing-value branch)."""
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], name="trees", domain="ai.onnx.ml",
        nodes_treeids=[0, 0, 0, 0, 0, 1, 1, 1], nodes_nodeids=[0, 1, 2, 3, 4, 0, 1, 2],
        nodes_featureids=[0, 1, 0, 0, 0, 1, 0, 0],
        nodes_modes=["BRANCH_LEQ", "BRANCH_LT", "LEAF", "LEAF", "LEAF", "BRANCH_GTE", "LEAF", "LEAF"],
        nodes_values=[0.5, 0.25, 0, 0, 0, 0.75, 0, 0],
        nodes_truenodeids=[1, 2, 0, 0, 0, 1, 0, 0], nodes_falsenodeids=[4, 3, 0, 0, 0, 2, 0, 0],
        nodes_missing_value_tracks_true=[1, 0, 0, 0, 0, 0, 0, 0],
        target_treeids=[0, 0, 0, 1, 1], target_nodeids=[2, 3, 4, 1, 2], target_ids=[0, 0, 0, 0, 0],
        target_weights=[1.0, 2.0, 4.0, 8.0, 16.0], n_targets=1, aggregate_function="SUM")
    graph = helper.make_graph([node], "trees", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])


# case -> (model, target, pass options); small tiles so a layer takes several
CASES = {
    "digits_cnn_pcm": (lambda: str(EXAMPLES / "digits_cnn.onnx"), "pcm", {"tile-mapping": "rows=64,cols=32"}),
    "trees_acam": (_trees, "acam", {}),
}


def _passes(options: dict[str, str]):
    return [p.with_options(options[p.name]) if p.name in options else p for p in default_passes()]


def _dumps(case: str) -> dict[str, str]:
    """File name -> dump, after the frontend and after each pass that changed the dump."""
    model, target, options = CASES[case]
    tgt = load_target(target)
    g = import_onnx(model())
    text = dump(g)
    out = {"0-frontend.txt": text}
    for i, p in enumerate(_passes(options), 1):
        run_pass(p, g, tgt)
        if dump(g) != text:
            text = dump(g)
            out[f"{i}-{p.name}.txt"] = text
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_dump_after_each_pass_matches_golden(case):
    got = _dumps(case)
    directory = GOLDEN / case
    if UPDATE:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.txt"):
            if stale.name not in got:
                stale.unlink()
        for name, text in got.items():
            (directory / name).write_text(text)
    on_disk = sorted(p.name for p in directory.glob("*.txt"))
    assert on_disk == sorted(got), "golden files differ from the stages that change the IR; NMC_UPDATE_GOLDEN=1"
    for name, text in got.items():
        assert text == (directory / name).read_text(), f"{case}/{name} differs; NMC_UPDATE_GOLDEN=1 to regenerate"


def test_golden_dumps_show_the_mapping_records():
    got = _dumps("digits_cnn_pcm")
    assert "map crossbar: static weights (144) on pcm crossbars" in got["2-partition.txt"]
    assert "quant weights $" in got["3-quantize.txt"] and "tile 0:" not in got["3-quantize.txt"]
    assert "tile 5: " in got["4-tile-mapping.txt"] and "unplaced adc unset" in got["4-tile-mapping.txt"]
    assert "adc unset" not in got["5-bit-slicing.txt"] and "core 1 xbar 0 adc" in got["6-placement.txt"]
    assert "cam block 0: rows [0," in _dumps("trees_acam")["7-cam-mapping.txt"]
    for text in got.values():
        assert " at 0x" not in text and "/tmp" not in text and len(text) < 8000


# ----------------------------------------------------------------------------- contracts
def test_every_declared_contract_exists_and_each_is_used():
    declared = {name for p in default_passes() for name in (*p.requires, *p.ensures)}
    assert declared <= set(CONTRACTS)
    assert set(CONTRACTS) <= declared, "a contract no pass declares"
    assert all(c.says and c.says[0].islower() for c in CONTRACTS.values())


def _graph_until(stop: str, case: str = "digits_cnn_pcm"):
    """The graph after the passes before ``stop``, the target and the pass named ``stop``."""
    model, target, options = CASES[case]
    tgt = load_target(target)
    g = import_onnx(model())
    for p in _passes(options):
        if p.name == stop:
            return g, tgt, p
        run_pass(p, g, tgt)
    raise AssertionError(stop)


def test_tile_mapping_requires_quantised_records():
    g, tgt, _ = _graph_until("quantize")           # partitioned, not quantised
    with pytest.raises(VerifyError, match=r"pass tile-mapping requires crossbar-layers-quantized \(.*\): "
                                          r"node n0_conv \(ONNX Conv '/0/Conv'\): crossbar record has no quant"):
        run_pass(TileMapping(), g, tgt)
    with pytest.raises(PassCrashed, match="pass tile-mapping crashed: AttributeError"):
        run_pass(TileMapping(), g, tgt, check=False)  # unchecked, the pass itself trips over it


def test_fold_batchnorm_requires_no_mapping_records():
    g, tgt, _ = _graph_until("quantize")
    with pytest.raises(VerifyError, match="pass fold-batchnorm requires no-mapping-records"):
        run_pass(FoldBatchNorm(), g, tgt)


@pytest.mark.parametrize("case,stop,contract", [
    ("digits_cnn_pcm", "fold-batchnorm", "batchnorm-folded"),
    ("digits_cnn_pcm", "partition", "every-node-partitioned"),
    ("digits_cnn_pcm", "quantize", "crossbar-layers-quantized"),
    ("digits_cnn_pcm", "tile-mapping", "crossbar-layers-tiled"),
    ("digits_cnn_pcm", "bit-slicing", "adc-ranges-set"),
    ("digits_cnn_pcm", "placement", "tiles-placed"),
    ("trees_acam", "cam-mapping", "trees-on-cam"),
])
def test_a_pass_that_does_nothing_breaks_what_it_ensures(monkeypatch, case, stop, contract):
    g, tgt, p = _graph_until(stop, case)
    assert contract in p.ensures
    monkeypatch.setattr(type(p), "run", lambda self, graph, target=None: False)
    with pytest.raises(VerifyError, match=rf"pass {stop} did not ensure {contract} \(.+\): node "):
        run_pass(p, g, tgt)


def test_partition_keeps_crossbars_for_matrix_layers():
    g, tgt, _ = _graph_until("quantize")
    relu = next(n for n in g.nodes() if n.onnx_op == "Relu")
    g.mapping[relu.name] = LayerMapping("crossbar", "on purpose")
    assert "is a Unary" in CONTRACTS["crossbars-hold-matrix-layers"].violation(g)


# ----------------------------------------------------------------------------- errors inside a pass
def test_a_crash_inside_a_pass_names_the_pass(monkeypatch):
    def broken(self, g, target=None):
        raise ValueError("boom")

    monkeypatch.setattr(Quantize, "run", broken)
    with pytest.raises(PassCrashed, match=r"pass quantize crashed: ValueError: boom") as err:
        compile_model(EXAMPLES / "digits_cnn.onnx", "pcm")
    assert isinstance(err.value.__cause__, ValueError)


def test_a_user_error_inside_a_pass_keeps_its_class_and_names_the_pass(monkeypatch):
    def refuses(self, g, target=None):
        raise CompileError("no room")

    monkeypatch.setattr(Partition, "run", refuses)
    with pytest.raises(CompileError, match=r"^pass partition: no room$"):
        compile_model(EXAMPLES / "digits_cnn.onnx", "pcm")
    monkeypatch.undo()
    # a message that names its pass already is left alone
    with pytest.raises(CompileError, match=r"^pass tile-mapping: rows=999 must be between"):
        compile_model(EXAMPLES / "digits_cnn.onnx", "pcm", pass_options={"tile-mapping": "rows=999"})


def test_cli_exit_codes_for_errors_inside_a_pass(monkeypatch, capsys, tmp_path):
    """A bug inside a pass exits 3, a user error 2; both name the pass."""
    def crash(self, g, target=None):
        return 1 / 0

    def refuse(self, g, target=None):
        raise CompileError("no")

    command = ["compile", str(EXAMPLES / "digits_cnn.onnx"), "--target", "pcm", "-o", str(tmp_path / "m.nmc")]
    monkeypatch.setattr(Quantize, "run", crash)
    assert main(command) == 3
    assert "internal error: PassCrashed: pass quantize crashed: ZeroDivisionError" in capsys.readouterr().err
    monkeypatch.setattr(Quantize, "run", refuse)
    assert main(command) == 2
    assert capsys.readouterr().err.startswith("nmc: error: pass quantize: no")
    assert not (tmp_path / "m.nmc").exists()


# ----------------------------------------------------------------------------- verify: mapping records
@pytest.fixture(scope="module")
def placed():
    model, target, options = CASES["digits_cnn_pcm"]
    return compile_model(model(), target, pass_options=options)


def _broken(placed, edit):
    """A copy of the compiled graph's mapping with ``edit(mapping)`` applied, verified."""
    g = placed.graph
    saved = dict(g.mapping)
    try:
        edit(g.mapping)
        verify(g, after="demo", target=placed.target)
    finally:
        g.mapping.clear()
        g.mapping.update(saved)


def _edit_tiles(name, change):
    def edit(mapping):
        mapping[name] = replace(mapping[name], tiles=change(mapping[name].tiles))
    return edit


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(ghost=m["n9_dense"]), r"mapping record 'ghost' names no node of the graph after pass demo"),
    (_edit_tiles("n4_conv", lambda t: t + t[:1]), r"shares rows of core .* with n4_conv tile 0"),
    (_edit_tiles("n4_conv", lambda t: t + (replace(t[0], core=2, xbar=0),)), r"group 0, channel 0, output 0 2 times"),
    (_edit_tiles("n4_conv", lambda t: t[1:]), r"group 0, channel 0, output 0 0 times"),
    (_edit_tiles("n4_conv", lambda t: (replace(t[0], rows=300),) + t[1:]), r"tile 0 uses 300 rows"),
    (_edit_tiles("n9_dense", lambda t: (replace(t[0], channels=300, rows=300),)), r"outside the weight matrix"),
    (_edit_tiles("n4_conv", lambda t: (replace(t[0], adc_range=-1.0),) + t[1:]), r"tile 0 has ADC range -1.0"),
    (_edit_tiles("n4_conv", lambda t: (replace(t[0], xbar=8),) + t[1:]), r"crossbar cores are 1..128"),
    (lambda m: m.update(n9_dense=replace(m["n9_dense"], quant=replace(m["n9_dense"].quant, weights="nope"))),
     r"quant names 'nope'"),
    (lambda m: m.update(n2_unary=replace(m["n2_unary"], reason="")), r"needs a unit .* and a reason"),
])
def test_verify_checks_the_mapping_records(placed, edit, message):
    verify(placed.graph, after="demo", target=placed.target)
    with pytest.raises(VerifyError, match=message):
        _broken(placed, edit)


def test_verify_checks_tiles_against_the_target(placed):
    small = replace(placed.target, cores=tuple(replace(c, rows=32) if c.kind == "crossbar" else c
                                              for c in placed.target.cores))
    with pytest.raises(VerifyError, match=r"tile 0 of \d+×\d+ cells does not fit crossbars of 32×256"):
        verify(placed.graph, target=small)
    verify(placed.graph)  # without a target, sizes are not judged


def test_verify_checks_cam_records():
    g, tgt, p = _graph_until("cam-mapping", "trees_acam")
    run_pass(p, g, tgt)
    (name, record), = [(k, v) for k, v in g.mapping.items() if v.unit == "cam"]
    g.mapping[name] = replace(record, cam=replace(record.cam, rows=record.cam.rows + 1))
    with pytest.raises(VerifyError, match=r"CAM bounds .* do not hold"):
        verify(g, target=tgt)
    g.mapping[name] = replace(record, cam=replace(record.cam, blocks=record.cam.blocks * 2))
    with pytest.raises(VerifyError, match=r"CAM block 1 holds rows \[0,"):
        verify(g, target=tgt)
    assert np.all(g.constants[record.cam.lo] < g.constants[record.cam.hi])
