"""nmc: trained networks and tree ensembles (ONNX) compiled to in-memory-computing chips, and
simulated with device physics, time and energy.

    import nmc
    program = nmc.compile("model.onnx", "pcm", calibration=x[:64])
    y = program.run(x, time="1d")          # outputs at one day after programming
    program.stats()                        # latency, energy, TOPS/W of one inference
    program.save("model.nmc")
    nmc.load("model.nmc").run(x)           # a program file carries its chip
    nmc.report("model.nmc", inputs=x, labels=labels).save("report.html")
    nmc.verify("model.onnx", x, "pcm")     # against onnxruntime

The repository's ``compiler/``, ``isa/``, ``backends/`` and ``runtime/`` install as subpackages
of this one (``nmc.compiler``, ...). Loading and running a program imports no compiler and no
ONNX; compiling, verifying and reporting import them when first called.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from nmc.isa.errors import NmcError
from nmc.runtime.compiled import CompiledProgram, Outputs, Runs, load

__version__ = "0.1.0"
__all__ = ["compile", "load", "verify", "report", "targets", "CompiledProgram", "Outputs", "Runs", "NmcError"]

def compile(model, target="ideal", *, calibration: "np.ndarray | Mapping[str, np.ndarray] | None" = None,
            passes: Mapping[str, str] | None = None, progress=None) -> CompiledProgram:
    """An ONNX model (path or ``ModelProto``) → its program on ``target`` (a preset name, a
    ``.toml`` path or a ``Target``). ``calibration`` samples fix input scales and ADC ranges;
    ``passes`` sets pass options (``{"tile-mapping": "rows=128"}``)."""
    from nmc.compiler.driver import compile_model

    return compile_model(model, target, pass_options=dict(passes or {}), calibration=calibration,
                         progress=progress).bound()


def verify(model, inputs: "np.ndarray | Mapping[str, np.ndarray]", target="ideal", *, labels: np.ndarray | None = None, time: float | str = 0.0,
           seed: int = 0, trials: int = 1, noise: bool = True, drift_compensation: bool = True,
           calibration: "np.ndarray | Mapping[str, np.ndarray] | None" = None, passes: Mapping[str, str] | None = None):
    """Compile ``model`` for ``target``, run it and onnxruntime on ``inputs``, compare every
    output against the target's tolerance: a ``VerifyReport`` (``.ok``, ``.format()``)."""
    from nmc.compiler.frontend.loader import read_model, real_inputs
    from nmc.compiler.verify import verify_model
    from nmc.runtime import SimOptions
    from nmc.runtime.duration import parse_duration

    proto = read_model(model)
    if not isinstance(inputs, Mapping):
        names = [vi.name for vi in real_inputs(proto)]
        if len(names) != 1:
            raise NmcError(f"the model has {len(names)} inputs ({', '.join(names)}); give a dict of name → array")
        inputs = {names[0]: inputs}
    options = SimOptions(time=parse_duration(time, "time"), seed=seed, noise=noise,
                         drift_compensation=drift_compensation)
    return verify_model(proto, dict(inputs), target, labels=labels, pass_options=dict(passes or {}),
                        options=options, trials=trials, calibration=calibration)


def report(program: CompiledProgram | str | os.PathLike, inputs: "np.ndarray | Mapping[str, np.ndarray] | None" = None, *,
           labels: np.ndarray | None = None, model=None, trials: int | None = None,
           times=("0", "1h", "1d"), seed: int = 0, noise: bool = True, drift_compensation: bool = True):
    """The report of a program (a ``CompiledProgram`` or a ``.nmc`` path): mapping, floor plan,
    time and energy; with ``inputs``, accuracy (``labels``) and error against onnxruntime
    (``model``) at each of ``times`` over ``trials`` programmed chips. A ``Report``: a dict that
    renders (``.render("md")``), saves (``.save("r.html")``) and shows itself in a notebook."""
    from nmc.compiler.reports import mapping_table
    from nmc.compiler.reports.report import ReportInputs, build_report, evaluate
    from nmc.runtime.duration import parse_duration

    source = ""
    if not isinstance(program, CompiledProgram):
        source = os.path.basename(os.fspath(program))
        program = load(program)
    p, target = program.program, program.target
    evaluation = None
    if inputs is not None:
        given = ReportInputs(inputs=program.feeds(inputs), labels=labels, model=model, trials=trials,
                             times=[(str(t), parse_duration(t, "times")) for t in times], seed=seed, noise=noise,
                             drift_compensation=drift_compensation)
        evaluation = evaluate(p, target, given)
    table = mapping_table.read(program.attachments, p, target)
    return build_report(p, target, table, evaluation=evaluation, source=source)


def targets() -> list[str]:
    """The names of the preset targets that ship with nmc."""
    from nmc.backends.target import preset_names

    return preset_names()
