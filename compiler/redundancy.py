"""How much each crossbar layer's device noise costs the model's outputs: the weights by which
``tile-mapping`` spends redundant copies (devices per weight).

A layer's sensitivity is the mean squared change of the outputs, relative to their mean square,
when only that layer's tiles are noisy (programmed, drifted and read as on the chip one day after
programming, the horizon of the accuracy studies), averaged over a few programmed chips, on the
calibration inputs. Output errors from independent layers add in variance, and k copies divide a
layer's noise variance by k, so these weights say where copies remove the most error.
"""
from __future__ import annotations

import numpy as np

from nmc.backends.target import Target
from nmc.isa.program import Program
from nmc.runtime.compiled import CompiledProgram
from nmc.runtime.crossbar import SimOptions
from nmc.runtime.machine import execute

HORIZON_S = 86400.0
SAMPLES = 32
CHIPS = 2


def layer_sensitivity(program: Program, target: Target, calibration) -> dict[str, float]:
    """Graph node name → relative output error with noise in that layer alone (see above)."""
    feeds = CompiledProgram(program, target).feeds(calibration)
    feeds = {name: value[:SAMPLES] for name, value in feeds.items()}
    exact = execute(program, feeds, target, SimOptions(noise=False))
    scale = sum(float(np.mean(np.square(v.astype(np.float64)))) for v in exact.values()) or 1.0
    out = {}
    for index in sorted({t.layer for t in program.tiles.values()}):
        errors = []
        for chip in range(CHIPS):
            noisy = execute(program, feeds, target,
                            SimOptions(time=HORIZON_S, seed=chip, noisy_layers=frozenset({index})))
            errors.append(sum(float(np.mean(np.square(noisy[k].astype(np.float64) - exact[k].astype(np.float64))))
                              for k in exact) / scale)
        out[program.layers[index].name] = float(np.mean(errors))
    return out
