"""A compiled program bound to its chip: what ``nmc.load`` and ``nmc.compile`` give a user.

A ``.nmc`` file carries the target description it was compiled for (``target.toml``), so a
loaded program runs, and is timed, on its own chip with no second argument, whether that chip
came from a preset or from a target file. Needs neither the compiler nor the ONNX model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from nmc.backends.target import Target, load_target, parse_target
from nmc.isa.container import load_program, save_program
from nmc.isa.errors import NmcError
from nmc.isa.program import Program
from nmc.runtime.crossbar import SimOptions
from nmc.runtime.display import html_table
from nmc.runtime.duration import parse_duration
from nmc.runtime.machine import execute
from nmc.runtime.timing import Stats, estimate

TARGET_ATTACHMENT = "target.toml"


class Outputs(dict):
    """One run's outputs, output name → array (a dict), with the conditions it ran under."""

    def __init__(self, values: Mapping[str, np.ndarray], options: SimOptions):
        super().__init__(values)
        self.options = options

    def to_dataframe(self):
        """One row per sample, one column per output element (``name[i]``); needs pandas."""
        return _dataframe([self])


class Runs(list):
    """The outputs of several runs (trials, times since programming), a list of ``Outputs``."""

    def to_dataframe(self):
        """One row per run and sample, with the run's ``trial``, ``seed`` and ``time_s``; needs pandas."""
        return _dataframe(self)


@dataclass
class CompiledProgram:
    """An ISA program with the target it was compiled for and its attached documents."""

    program: Program
    target: Target
    attachments: dict[str, str] = field(default_factory=dict)
    # the program object the last run validated: later runs of the same object skip validation
    # (~1 ms for a small MLP); assigning another program validates again
    _validated: Program | None = field(default=None, repr=False, compare=False)

    @property
    def input_names(self) -> list[str]:
        return [p.name for p in self.program.inputs]

    @property
    def output_names(self) -> list[str]:
        return [p.name for p in self.program.outputs]

    def run(self, inputs: np.ndarray | Mapping[str, np.ndarray], *, time: float | str = 0.0, seed: int = 0,
            noise: bool = True, drift_compensation: bool = True,
            progress: Callable[..., None] | None = None, threads: int | None = None,
            first_sample: int = 0) -> Outputs:
        """Run on ``inputs`` (an array for a one-input program, else input name → array) at
        ``time`` since programming (seconds, or ``"1d"``-style); one programmed chip per ``seed``.
        ``threads``: simulator threads (default one per processor); the outputs do not depend on it.
        ``first_sample``: where these inputs start in a larger batch run in parts (its read noise)."""
        options = SimOptions(time=parse_duration(time, "time"), seed=_seed(seed), noise=noise,
                             drift_compensation=drift_compensation)
        program = self.program
        out = execute(program, self.feeds(inputs), self.target, options, progress=progress, workers=threads,
                      first_sample=first_sample, validated=program is self._validated)
        self._validated = program
        return Outputs(out, options)

    def trials(self, inputs: np.ndarray | Mapping[str, np.ndarray], trials: int, *, times=(0.0,),
               seed: int = 0, noise: bool = True, drift_compensation: bool = True) -> Runs:
        """``trials`` programmed chips (seeds ``seed``, ``seed + 1``, ...), each read at every
        time in ``times``: the same chip drifts, so one seed gives one programming at all times."""
        if trials < 1:
            raise NmcError(f"trials {trials}: give at least one trial")
        feeds = self.feeds(inputs)
        return Runs(self.run(feeds, time=t, seed=seed + i, noise=noise, drift_compensation=drift_compensation)
                    for i in range(trials) for t in times)

    def programming(self, *, time: float | str = 0.0, seed: int = 0, noise: bool = True):
        """Program one chip (``seed``) as a run at ``time`` would and say what it cost: time,
        energy and pulses per layer (``runtime.programming.ProgrammingCost``)."""
        from nmc.runtime.machine import Chip
        from nmc.runtime.programming import programming_cost

        options = SimOptions(time=parse_duration(time, "time"), seed=_seed(seed), noise=noise)
        return programming_cost(self.program, self.target, Chip(self.program, self.target, options).tiles)

    def stats(self) -> Stats:
        """Latency, energy, area and utilisation of one inference on the program's chip."""
        return estimate(self.program, self.target)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.nmc`` file (atomically), with the target and the other attachments."""
        save_program(self.program, path, {**self.attachments, TARGET_ATTACHMENT: self.target.source})

    def feeds(self, inputs) -> dict[str, np.ndarray]:
        """``inputs`` as input name → array, checked against the program's inputs."""
        names = self.input_names
        if not isinstance(inputs, Mapping):
            if len(names) != 1:
                raise NmcError(f"the program has {len(names)} inputs ({', '.join(names)}); "
                               "give a dict of input name → array")
            return {names[0]: np.asarray(inputs)}
        missing = [n for n in names if n not in inputs]
        unknown = [n for n in inputs if n not in names]
        if missing or unknown:
            raise NmcError("inputs do not match the program's: "
                           + "; ".join(filter(None, (missing and f"missing {', '.join(missing)}",
                                                     unknown and f"unknown {', '.join(unknown)}")))
                           + f" (inputs: {', '.join(names)})")
        return {n: np.asarray(inputs[n]) for n in names}

    def __repr__(self) -> str:
        p = self.program
        return (f"CompiledProgram(target={self.target.name!r}, inputs={self.input_names}, "
                f"outputs={self.output_names}, layers={len(p.layers)}, tiles={len(p.tiles)}, "
                f"instructions={p.instruction_count()})")

    def _repr_html_(self) -> str:
        p = self.program
        rows = [("target", f"{self.target.name} ({self.target.one_line()})"),
                ("inputs", ", ".join(f"{q.name} {q.dtype}{list(q.shape)}" for q in p.inputs)),
                ("outputs", ", ".join(f"{q.name} {q.dtype}{list(q.shape)}" for q in p.outputs)),
                ("layers", str(len(p.layers))), ("crossbar tiles", str(len(p.tiles))),
                ("instructions", f"{p.instruction_count():,} on {len(p.cores)} core(s)")]
        return html_table("nmc program", rows)


def load(path: str | os.PathLike) -> CompiledProgram:
    """A ``.nmc`` file → the program bound to the target stored in it (older files: the preset)."""
    program, attachments = load_program(path)
    target = (parse_target(attachments[TARGET_ATTACHMENT], f"{path}:{TARGET_ATTACHMENT}")
              if TARGET_ATTACHMENT in attachments else load_target(program.target))
    return CompiledProgram(program, target, {k: v for k, v in attachments.items() if k != TARGET_ATTACHMENT})


def _seed(seed: int) -> int:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NmcError(f"seed {seed!r}: give an integer of 0 or more")
    return int(seed)


def _dataframe(runs: list[Outputs]):
    try:
        import pandas as pd
    except ImportError:
        raise NmcError("to_dataframe needs pandas: pip install 'nmc[notebook]'") from None
    frames = []
    for trial, out in enumerate(runs):
        columns: dict[str, np.ndarray] = {}
        samples = None
        for name, value in out.items():
            value = np.asarray(value)
            flat = value.reshape(value.shape[0], -1) if value.ndim > 1 else value.reshape(-1, 1)
            samples = flat.shape[0]
            if flat.shape[1] == 1:
                columns[name] = flat[:, 0]
            else:
                columns.update({f"{name}[{i}]": flat[:, i] for i in range(flat.shape[1])})
        frame = pd.DataFrame(columns)
        frame.insert(0, "sample", np.arange(samples))
        if len(runs) > 1 or isinstance(runs, Runs):
            frame.insert(0, "time_s", out.options.time)
            frame.insert(0, "seed", out.options.seed)
            frame.insert(0, "run", trial)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
