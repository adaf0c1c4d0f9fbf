"""The compiler pipeline: this file is the table of contents of nmc's compiler."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import onnx

from nmc.backends.target import Target, load_target, with_fields
from nmc.compiler.buffers import check_buffers
from nmc.compiler.codegen.lower import generate
from nmc.compiler.errors import CompileError, PassCrashed
from nmc.compiler.frontend import import_onnx
from nmc.compiler.ir.graph import Graph
from nmc.compiler.ir.verify import verify
from nmc.compiler.passes import BitSlicing, CamMappingPass, FoldBatchNorm, Partition, Pass, Placement, Quantize, TileMapping
from nmc.compiler.passes import contracts
from nmc.isa.errors import NmcError
from nmc.isa.program import Program
from nmc.isa.validate import validate


@dataclass
class Compiled:
    program: Program
    graph: Graph
    target: Target

    def bound(self):
        """The program bound to its target, with the mapping table attached: what is saved and
        what ``nmc.compile`` gives (a ``runtime.compiled.CompiledProgram``)."""
        from nmc.compiler.reports import mapping_table
        from nmc.runtime.compiled import CompiledProgram

        table = mapping_table.mapping_table(self.graph, self.program, self.target)
        return CompiledProgram(self.program, self.target, {mapping_table.ATTACHMENT: mapping_table.to_json(table)})


def default_passes() -> list[Pass]:
    """The graph passes, in order."""
    return [
        FoldBatchNorm(),  # BatchNormalization after Conv/Gemm becomes new weights and bias
        Partition(),      # each layer to crossbars or to digital vector units, with the reason
        Quantize(),       # integer weights per output channel; input encoding of crossbar layers
        TileMapping(),    # weight matrices cut into crossbar-sized blocks (groups packed)
        BitSlicing(),     # ADC range of each block: calibrated column currents, else its worst case
        Placement(),      # blocks onto crossbars of crossbar cores; too big is an error
        CamMappingPass(), # tree ensembles: one path per CAM row, threshold codes, rows onto CAM cores
    ]


def compile_model(model: str | os.PathLike | onnx.ModelProto, target: str | Target = "ideal",
                  pass_options: dict[str, str] | None = None, check: bool = True,
                  batched: bool | None = None,
                  calibration: np.ndarray | dict[str, np.ndarray] | None = None,
                  progress: Callable[..., None] | None = None) -> Compiled:
    """ONNX model → program for ``target``.

    ``calibration``: sample inputs (an array for a one-input model, or input name → array, the
    samples on the leading axis). With them, crossbar layers quantise their inputs with fixed
    scales and size their ADCs from the column currents the samples draw; without them the
    input scale is taken per sample at run time and each ADC covers its worst case.
    ``progress(done, total, stage)``, if given, is called as each stage starts and at the end.
    """
    tgt = target if isinstance(target, Target) else load_target(target)
    passes = _configure(default_passes(), pass_options or {})
    if calibration is not None and _wants_sensitivity(passes, tgt):
        # redundancy by measured sensitivity: compile once without copies, weigh each layer
        from nmc.compiler.redundancy import layer_sensitivity

        single = {**(pass_options or {}), "tile-mapping": _with(pass_options, "tile-mapping", "copies=1")}
        first = compile_model(model, tgt, single, check, batched, calibration)
        weights = layer_sensitivity(first.program, tgt, calibration)
        passes = [replace(p, sensitivity=tuple(weights.items())) if isinstance(p, TileMapping) else p for p in passes]
    if _wants_replicas(passes, tgt):
        return _throughput_oriented(model, tgt, check, batched, calibration, passes, progress)
    return _compile_with(model, tgt, passes, check, batched, calibration, progress)


def _compile_with(model, tgt: Target, passes: list[Pass], check: bool, batched, calibration, progress) -> Compiled:
    """The pipeline: frontend, calibration, the graph passes, codegen, validation."""
    stages = ["frontend", *(["calibration"] if calibration is not None else []), *(p.name for p in passes),
              "codegen", "validate"]
    step = _stepper(stages, progress)
    step("frontend")
    graph = import_onnx(model, batched=batched)              # frontend: check, fold, convert
    if calibration is not None:                               # calibration: ranges from onnxruntime
        from nmc.compiler.calibrate import calibrate_graph

        step("calibration")
        calibrate_graph(graph, model, calibration)
    if check:
        verify(graph, after="frontend", target=tgt)
    for p in passes:                                          # graph passes, each between its contracts
        step(p.name)
        run_pass(p, graph, tgt, check)
    if graph.chip_plan is not None and graph.chip_plan.chips != tgt.chips:
        tgt = with_fields(tgt, {"chip.chips": graph.chip_plan.chips})   # the program's system: chips in use
    step("codegen")
    program = generate(graph, tgt)                             # codegen: ISA for every core
    step("validate")
    validate(program)                                          # the program is well-formed
    check_buffers(program, tgt)                                # and its buffers fit the cores
    step(None)
    return Compiled(program, graph, tgt)


def run_pass(p: Pass, graph: Graph, target: Target, check: bool = True) -> bool:
    """Run one pass; with ``check``, its ``requires`` before, its ``ensures`` and ``verify`` after
    (a ``VerifyError`` naming pass and contract). An error raised inside names the pass: an
    ``NmcError`` keeps its class, anything else (a bug) becomes ``PassCrashed``."""
    if check:
        contracts.check(p, graph, "requires")
    try:
        changed = p.run(graph, target)
    except NmcError as e:
        if e.args and isinstance(e.args[0], str) and f"pass {p.name}" not in e.args[0]:
            e.args = (f"pass {p.name}: {e.args[0]}", *e.args[1:])
        raise
    except Exception as e:
        raise PassCrashed(f"pass {p.name} crashed: {type(e).__name__}: {e}") from e
    if check:
        contracts.check(p, graph, "ensures")
        verify(graph, after=p.name, target=target)
    return changed


def _stepper(stages: list[str], progress: Callable[..., None] | None) -> Callable[[str | None], None]:
    """``step(name)`` tells ``progress`` that stage ``name`` starts (None: all done)."""
    def step(name: str | None) -> None:
        if progress is not None:
            progress(stages.index(name) if name is not None else len(stages), len(stages), name or "done")
    return step


def _wants_replicas(passes: list[Pass], target: Target) -> bool:
    tiling = next(p for p in passes if isinstance(p, TileMapping))
    wanted = tiling.replicate.lower() in ("yes", "true", "1") if tiling.replicate else target.mapping == "throughput"
    return wanted and not tiling.replicas and target.crossbar is not None


def _throughput_oriented(model, target: Target, check, batched, calibration, passes, progress) -> Compiled:
    """Compile latency-oriented, measure which layers' crossbars bound the throughput
    (compiler.replication), compile again with their replicas; keep the faster of the two."""
    from nmc.compiler.replication import choose_replicas
    from nmc.runtime.timing import estimate

    tiling = next(p for p in passes if isinstance(p, TileMapping))
    plain = _compile_with(model, target, [replace(p, replicate="no") if p is tiling else p for p in passes],
                          check, batched, calibration, progress)
    positions = {}
    for node in plain.graph.nodes():
        record = plain.graph.mapping.get(node.name)
        if record is not None and record.unit == "crossbar":
            shape = plain.graph.shape(node.outputs[0])
            positions[node.onnx_name or node.name] = shape[2] if len(shape) > 2 and hasattr(node.op, "kernel") \
                else int(np.prod(shape[:-1]))
    counts = choose_replicas(plain.program, plain.target, positions)
    if not counts:
        return plain
    fast_passes = [replace(p, replicate="yes", replicas=tuple(counts.items())) if p is tiling else p for p in passes]
    fast = _compile_with(model, target, fast_passes, check, batched, calibration, progress)
    before, after = estimate(plain.program, plain.target), estimate(fast.program, fast.target)
    return fast if after.throughput_per_s > before.throughput_per_s else plain


def _wants_sensitivity(passes: list[Pass], target: Target) -> bool:
    tiling = next(p for p in passes if isinstance(p, TileMapping))
    copies = tiling.copies or target.programming.copies
    return copies > 1 and not tiling.sensitivity and target.crossbar is not None and target.crossbar.analog


def _with(options: dict[str, str] | None, name: str, extra: str) -> str:
    given = (options or {}).get(name, "")
    return f"{given},{extra}" if given else extra


def _configure(passes: list[Pass], options: dict[str, str]) -> list[Pass]:
    known = {p.name: p for p in passes}
    for name in options:
        if name not in known:
            raise CompileError(f"unknown pass {name!r}; passes: {', '.join(known)}")
    return [p.with_options(options[p.name]) if p.name in options else p for p in passes]
