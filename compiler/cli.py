"""The ``nmc`` command line: ``compile``, ``run``, ``verify``, ``report``, ``targets``.

Every user error (an ``NmcError``, an unreadable file) becomes one line ``nmc: error: ...`` on
stderr and exit code 2; ``--debug`` shows the traceback instead. ``verify`` exits 1 when the
program is outside the target's tolerance. Output files are written atomically. Long work
draws a progress bar on stderr when it is a terminal (``--quiet`` turns it off).
"""
from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tempfile
import traceback
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nmc.compiler.progress import Progress
from nmc.isa.errors import NmcError
from nmc.isa.files import write_atomic
from nmc.runtime.display import si
from nmc.runtime.duration import parse_duration

EXIT_OK, EXIT_VERIFY_FAILED, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR = 0, 1, 2, 3

_PASS_SPEC = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*(?:\{(.*)\})?\s*$")


class CliError(NmcError):
    """A bad command-line value: an unreadable array file, an unknown input name, ..."""


# ----------------------------------------------------------------------------- files
def _check_writable_dir(path: str | os.PathLike) -> None:
    """Fail before the work, not after it, when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise CliError(f"{path} is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise CliError(f"{path}: cannot write, directory {parent} does not exist")
    try:  # the real test: can a file be created there (permissions, read-only file systems)?
        with tempfile.TemporaryFile(prefix=".tmp-", dir=parent):
            pass
    except OSError as e:
        raise CliError(f"{path}: cannot write in directory {parent} ({e.strerror or e})") from None


def _check_model_file(path: str) -> None:
    """A clear line for the usual mix-ups: a directory, or a compiled program, given as the model."""
    if Path(path).is_dir():
        raise CliError(f"{path} is a directory, not an ONNX model file")
    if _is_program(path):
        raise CliError(f"{path} is a compiled nmc program, not an ONNX model; "
                       f"run it with: nmc run {path} --input X.npy")


def _check_program_file(path: str) -> None:
    """A clear line for a directory, or an ONNX model, given where a ``.nmc`` program belongs."""
    if Path(path).is_dir():
        raise CliError(f"{path} is a directory, not a .nmc program file")
    if Path(path).is_file() and not zipfile.is_zipfile(path) and Path(path).suffix.lower() == ".onnx":
        raise CliError(f"{path} is an ONNX model, not a compiled program; "
                       f"compile it first: nmc compile {path} -o PROGRAM.nmc")


def _is_program(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return "manifest.json" in z.namelist() and "program.s" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _split_key(spec: str) -> tuple[str, str | None]:
    """``data.npz:x_image`` → (``data.npz``, ``x_image``); anything else → (spec, None)."""
    match = re.match(r"^(.*\.npz):([^:/\\]+)$", spec)
    if match and not Path(spec).exists():
        return match.group(1), match.group(2)
    return spec, None


def _read_arrays(path: str) -> dict[str, np.ndarray] | np.ndarray:
    """One array from a ``.npy`` file, or the named arrays of a ``.npz`` file."""
    if not Path(path).is_file():
        raise CliError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                arrays = {name: loaded[name] for name in loaded.files}
            if not arrays:
                raise CliError(f"{path} holds no arrays")
            return arrays
        return loaded
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise CliError(f"{path}: not a readable .npy/.npz array file ({_one_line(e)})") from None


def _numeric(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise CliError(f"{what} holds {array.dtype} values; give numbers (float, integer or bool)")
    return array


def _pick(value: dict[str, np.ndarray] | np.ndarray, path: str, key: str | None) -> np.ndarray:
    """The array of a ``.npy`` file, or array ``key`` of a ``.npz`` (its only one if no key)."""
    if not isinstance(value, dict):
        if key is not None:
            raise CliError(f"{path} is a single array; drop :{key}")
        return value
    if key is None:
        if len(value) != 1:
            raise CliError(f"{path} holds several arrays ({', '.join(value)}); pick one with {path}:NAME")
        return next(iter(value.values()))
    if key not in value:
        raise CliError(f"{path} has no array {key!r}; it holds: {', '.join(value) or 'nothing'}")
    return value[key]


def _read_array(spec: str) -> np.ndarray:
    """``FILE.npy``, ``FILE.npz:KEY``, or a ``.npz`` holding exactly one array."""
    path, key = _split_key(spec)
    return _pick(_read_arrays(path), path, key)


def _read_labels(spec: str | None) -> np.ndarray | None:
    """``--labels``: one class index per row (``[N]`` or ``[N, 1]``)."""
    if spec is None:
        return None
    labels = _numeric(_read_array(spec), f"--labels {spec}")
    if labels.ndim > 1 and labels.size != labels.shape[0]:
        raise CliError(f"--labels {spec} has shape {list(labels.shape)}; give one class index per row "
                       f"(for one-hot labels, save their argmax)")
    return labels.reshape(-1)


def _read_inputs(specs: Sequence[str], input_names: Sequence[str], flag: str = "--input") -> dict[str, np.ndarray]:
    """``--input`` values → ONNX input name → array.

    Forms: ``FILE.npy`` (the only input), ``NAME=FILE.npy``, ``NAME=FILE.npz:KEY``, and
    ``FILE.npz`` whose arrays are named after the inputs.
    """
    inputs: dict[str, np.ndarray] = {}

    def put(name: str, array: np.ndarray) -> None:
        if name not in input_names:
            raise CliError(f"unknown input {name!r}; the model takes: {', '.join(input_names)}")
        if name in inputs:
            raise CliError(f"input {name!r} given twice")
        inputs[name] = _numeric(array, f"{flag} {name!r}")

    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and name and not Path(spec).exists():
            put(name, _read_array(rest))
            continue
        path, key = _split_key(spec)
        value = _read_arrays(path)
        if isinstance(value, dict) and key is None and not (len(value) == 1 and len(input_names) == 1):
            strangers = [n for n in value if n not in input_names]
            if strangers:
                raise CliError(f"{path} holds arrays {', '.join(strangers)}, not named after the model's "
                               f"inputs ({', '.join(input_names)}); pick one with {path}:KEY or NAME={path}:KEY")
            for array_name, array in value.items():
                put(array_name, array)
            continue
        if len(input_names) != 1:
            raise CliError(f"the model takes several inputs ({', '.join(input_names)}); "
                           f"name them: {flag} NAME={spec}")
        put(input_names[0], _pick(value, path, key))
    missing = [n for n in input_names if n not in inputs]
    if missing:
        raise CliError(f"missing input(s) {', '.join(missing)}; give {flag} NAME=FILE.npy")
    return inputs


def _parse_pass_options(specs: Sequence[str]) -> dict[str, str]:
    """``["tile-mapping{rows=128,cols=64}", ...]`` → ``{"tile-mapping": "rows=128,cols=64"}``."""
    options: dict[str, str] = {}
    for spec in specs:
        match = _PASS_SPEC.match(spec)
        if not match:
            raise CliError(f"bad pass option {spec!r}; write -p \"pass-name{{option=value,...}}\"")
        name, text = match.group(1), match.group(2) or ""
        options[name] = ",".join(filter(None, (options.get(name, ""), text)))
    return options


def _check_seed(seed: int) -> int:
    if seed < 0:
        raise CliError(f"--seed {seed}: give a seed of 0 or more")
    return seed


def _progress(args: argparse.Namespace, label: str) -> Progress:
    """The progress bar of one command: drawn on a terminal unless ``--quiet``."""
    return Progress(label, enabled=False if getattr(args, "quiet", False) else None)


def _read_calibration(specs: Sequence[str], input_names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """``--calibration`` values (the forms of ``--input``) → input name → sample array, or None."""
    return _read_inputs(specs, input_names, "--calibration") if specs else None


def _fmt_shape(shape, batched: bool = False) -> str:
    return "[" + ",".join((["N"] if batched else []) + [str(d) for d in shape]) + "]"


def _fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MiB"


# ----------------------------------------------------------------------------- commands
def cmd_compile(args: argparse.Namespace) -> int:
    from nmc.compiler.driver import compile_model
    from nmc.compiler.ir.dump import dump
    from nmc.compiler.reports import mapping_table
    from nmc.isa.asm import format_program

    _check_model_file(args.model)
    out = Path(args.output) if args.output else Path(args.model).with_suffix(".nmc")
    for path in filter(None, (out, args.asm)):
        _check_writable_dir(path)
    model = args.model
    calibration = None
    pass_options = _parse_pass_options(args.pass_options)
    if args.calibration:
        from nmc.compiler.frontend.loader import read_model, real_inputs

        model = read_model(args.model)
        calibration = _read_calibration(args.calibration, [vi.name for vi in real_inputs(model)])
    with _progress(args, "compiling") as bar:
        # Writing a large program (compressing its weights) takes longer than compiling it.
        compiled = compile_model(model, args.target, pass_options=pass_options, calibration=calibration,
                                 progress=lambda done, total, note="": bar(0.4 * done / total, 1.0, note))
        program, target = compiled.program, compiled.target
        bar(0.4, 1.0, "writing program")
        if args.asm:
            text = format_program(program).encode()
            write_atomic(args.asm, lambda f: f.write(text))
        bound = compiled.bound()
        bound.save(out)
        bar(0.95, 1.0, "estimating timing and energy")
        headline = _headline(program, target, mapping_table.read(bound.attachments, program, target))
    if args.dump_ir:
        print(dump(compiled.graph), end="")

    const_values = sum(c.size for c in program.consts.values())
    const_bytes = sum(np.asarray(program.data[c]).nbytes for c in program.consts)
    spaces: dict[str, list[int]] = {}
    for b in program.buffers.values():
        spaces.setdefault("global" if b.space == "global" else "core-local", []).append(b.size)
    batched = program.batched
    print(f"compiled {args.model} -> {out}")
    print(f"  target        {target.name} ({target.one_line()})")
    print(f"  inputs        " + ", ".join(f"{p.name} {p.dtype}{_fmt_shape(p.shape, batched)}" for p in program.inputs))
    print(f"  outputs       " + ", ".join(f"{p.name} {p.dtype}{_fmt_shape(p.shape, batched)}" for p in program.outputs))
    print(f"  layers        {len(program.layers)}")
    if program.tiles:
        print(f"  crossbar      {len(program.tiles)} tile(s) on "
              f"{len({(t.core, t.xbar) for t in program.tiles.values()})} crossbar(s)")
    print(f"  instructions  {program.instruction_count()} on {len(program.cores)} core(s)")
    print(f"  constants     {len(program.consts)} arrays, {const_values:,} values ({_fmt_bytes(const_bytes)})")
    print(f"  buffers       " + ", ".join(f"{len(sizes)} {space} ({sum(sizes):,} values/sample)"
                                          for space, sizes in sorted(spaces.items(), reverse=True)))
    if program.tiles:
        sources = sorted({t.adc_range_source.split(":")[0] for m in compiled.graph.mapping.values()
                          for t in m.tiles})
        print(f"  calibration   " + (f"{next(iter(calibration.values())).shape[0]} sample(s); "
                                     if calibration else "none; ") + f"ADC ranges from {' and '.join(sources)}")
    if args.asm:
        print(f"  assembly      {args.asm}")
    print(headline)
    return EXIT_OK


def _headline(program, target, table: dict) -> str:
    """The report's headline figures, for the end of ``nmc compile``."""
    from nmc.compiler.reports.report import summarize
    from nmc.runtime.timing import estimate

    s = summarize(program, target, table, estimate(program, target))
    units = ", ".join(f"{n} on {unit}" for unit, n in sorted(s["layers_by_unit"].items()))
    lines = []
    if s["crossbars_available"]:
        lines.append(f"  chip          {s['crossbars_used']:,} of {s['crossbars_available']:,} crossbars used "
                     f"({s['crossbar_cores_used']} of {s['crossbar_cores_available']} crossbar cores), "
                     f"{100 * s['crossbar_utilization']:.2g}% of the chip's cells")
    lines.append(f"  split         {100 * s['analog_mac_fraction']:.0f}% of {s['macs']:,.0f} MACs analog; "
                 f"layers: {units}")
    lines.append(f"  per inference {si(s['latency_s'], 's')}, {si(s['energy_per_inference_j'], 'J')}, "
                 f"{s['tops_per_w']:.3g} TOPS/W, {s['throughput_per_s']:,.0f} inferences/s pipelined "
                 f"(nmc report for the details)")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from nmc.runtime import SimOptions
    from nmc.runtime.compiled import load

    if args.output and Path(args.output).suffix not in (".npy", ".npz"):
        raise CliError(f"{args.output}: the output file must end in .npy (one output) or .npz")
    for path in filter(None, (args.output, args.stats)):
        _check_writable_dir(path)
    options = _sim_options(args, SimOptions)
    _check_program_file(args.program)
    with _progress(args, "running") as bar:
        bar(0, 1, "loading program")
        loaded = load(args.program)  # on the target it was compiled for (older files: the preset)
        program = loaded.program
        inputs = _read_inputs(args.input, loaded.input_names)
        labels = _read_labels(args.labels)
        runs = [loaded.run(inputs, time=options.time, seed=options.seed + i, noise=options.noise,
                           drift_compensation=options.drift_compensation,
                           progress=bar.part(i, args.trials, f"trial {i + 1}/{args.trials}" if args.trials > 1 else ""))
                for i in range(args.trials)]
    outputs = runs[0]
    if args.output:
        _save_outputs(args.output, outputs)
    for name, value in outputs.items():
        print(f"{name}: {value.dtype}{_fmt_shape(value.shape)}")
    if len(outputs) == 1:
        value = next(iter(outputs.values()))
        if value.ndim == 2 and value.shape[1] > 1:
            print(_top1_summary(value))
    if args.trials > 1 or labels is not None:
        print(_trial_summary(runs, labels, options.seed))
    if args.output:
        print(f"wrote {args.output}" + (f" (trial 1, seed {options.seed})" if args.trials > 1 else ""))
    stats = loaded.stats()
    print(_stats_summary(stats, batch=next(iter(outputs.values())).shape[0] if program.batched else 1))
    if args.stats:
        text = stats.to_json().encode()
        write_atomic(args.stats, lambda f: f.write(text))
        print(f"wrote {args.stats}")
    return EXIT_OK


def _stats_summary(stats, batch: int) -> str:
    """Timing and energy of one inference, and of the batch pipelined through the chip."""
    e = stats.energy_total_pj * 1e-12
    parts = sorted(((k, v) for k, v in stats.energy_pj.items() if v > 0), key=lambda kv: -kv[1])
    batch_s = stats.latency_s + (batch - 1) / stats.throughput_per_s if stats.throughput_per_s else 0.0
    lines = [
        f"timing ({stats.target}, {stats.clock_ghz:g} GHz, one inference):",
        f"  latency      {stats.latency_cycles:,.0f} cycles = {si(stats.latency_s, 's')}",
        f"  throughput   {stats.throughput_per_s:,.0f} inferences/s pipelined "
        f"(batch of {batch}: {si(batch_s, 's')})",
        f"  energy       {si(e, 'J')} per inference: " + ", ".join(f"{k} {100 * v / stats.energy_total_pj:.0f}%"
                                                                  for k, v in parts[:5]),
        f"  efficiency   {stats.tops():.3g} TOPS, {stats.tops_per_w():.3g} TOPS/W, {stats.tops_per_mm2():.3g} TOPS/mm² "
        f"(ops = 2 × MACs at each layer's precision)",
    ]
    if stats.crossbar_utilization:
        lines.append(f"  utilisation  crossbar cells {100 * stats.crossbar_utilization:.1f}%, "
                     f"ADCs {100 * stats.adc_utilization:.1f}%")
    return "\n".join(lines)


def _trial_summary(runs: list[dict[str, np.ndarray]], labels: np.ndarray | None, seed: int) -> str:
    """Accuracy against labels and error against the first trial, mean ± std [min, max]."""
    from nmc.compiler.verify import Spread

    lines = [f"{len(runs)} trial(s), seeds {seed}..{seed + len(runs) - 1}: mean ± std [min, max]"
             if len(runs) > 1 else f"seed {seed}"]
    for name, first in runs[0].items():
        if labels is not None and first.ndim == 2 and first.shape[1] > 1:
            y = np.asarray(labels).reshape(-1)
            if y.shape[0] != first.shape[0]:
                raise CliError(f"labels hold {y.shape[0]} entries but output {name!r} has {first.shape[0]} rows")
            acc = Spread.of(np.mean(np.argmax(run[name], axis=1) == y) for run in runs)
            lines.append(f"  {name}: accuracy {acc.mean:.2%} ± {acc.std:.2%} [{acc.min:.2%}, {acc.max:.2%}]")
        if len(runs) > 1:
            scale = float(np.max(np.abs(first), initial=0.0)) or 1.0
            rel = Spread.of(float(np.max(np.abs(run[name].astype(np.float64) - first), initial=0.0)) / scale
                            for run in runs[1:])
            text = f"  {name}: rel err vs trial 1 {rel.format('.3g')}"
            if first.ndim == 2 and first.shape[1] > 1:
                agree = Spread.of(np.mean(np.argmax(run[name], axis=1) == np.argmax(first, axis=1))
                                  for run in runs[1:])
                text += f"; top-1 agreement {agree.mean:.2%} ± {agree.std:.2%} [{agree.min:.2%}, {agree.max:.2%}]"
            lines.append(text)
    return "\n".join(lines)


def _sim_options(args: argparse.Namespace, options_type):
    seconds = parse_duration(args.time)
    if args.trials < 1:
        raise CliError(f"--trials {args.trials}: give at least one trial")
    return options_type(time=seconds, seed=_check_seed(args.seed), noise=not args.no_noise,
                        drift_compensation=not args.no_drift_compensation)


def _save_outputs(path: str, outputs: dict[str, np.ndarray]) -> None:
    if path.endswith(".npy"):
        if len(outputs) != 1:
            raise CliError(f"the program has {len(outputs)} outputs ({', '.join(outputs)}); "
                           "write them to a .npz file")
        value = next(iter(outputs.values()))
        write_atomic(path, lambda f: np.save(f, value))
    else:
        write_atomic(path, lambda f: np.savez(f, **outputs))


def _top1_summary(scores: np.ndarray) -> str:
    classes = np.argmax(scores, axis=1)
    shown = " ".join(map(str, classes[:20])) + (" ..." if len(classes) > 20 else "")
    counts = np.bincount(classes, minlength=scores.shape[1])
    histogram = " ".join(f"{c}:{n}" for c, n in enumerate(counts) if n)
    return f"top-1 classes of {len(classes)} row(s): {shown}\n  per class: {histogram}"


def cmd_verify(args: argparse.Namespace) -> int:
    from nmc.compiler.frontend.loader import read_model, real_inputs
    from nmc.compiler.verify import verify_model
    from nmc.runtime import SimOptions

    _check_model_file(args.model)
    options = _sim_options(args, SimOptions)
    pass_options = _parse_pass_options(args.pass_options)
    proto = read_model(args.model)
    inputs = _read_inputs(args.input, [vi.name for vi in real_inputs(proto)])
    labels = _read_labels(args.labels)
    calibration = _read_calibration(args.calibration, [vi.name for vi in real_inputs(proto)])
    with _progress(args, "verifying") as bar:
        report = verify_model(proto, inputs, args.target, labels=labels, pass_options=pass_options,
                              options=options, trials=args.trials, calibration=calibration, progress=bar)
    print(f"verify {args.model}")
    print(report.format())
    return EXIT_OK if report.ok else EXIT_VERIFY_FAILED


def cmd_report(args: argparse.Namespace) -> int:
    from nmc.compiler.reports.render import FORMATS, render
    from nmc.compiler.reports.report import DEFAULT_TIMES, ReportInputs, build_report, evaluate, load

    if args.output and args.output != "-" and Path(args.output).is_dir():
        raise CliError(f"{args.output} is a directory; give a file name")
    fmt = args.format or (Path(args.output).suffix.lstrip(".").lower() if args.output else "html")
    fmt = {"markdown": "md", "htm": "html"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise CliError(f"unknown report format {fmt!r}; give --format {'|'.join(FORMATS)}")
    out = args.output or str(Path(args.program).with_suffix(f".report.{fmt}"))
    if out != "-":
        _check_writable_dir(out)
    for flag, value in (("--labels", args.labels), ("--model", args.model), ("--times", args.times)):
        if value and not args.input:
            raise CliError(f"{flag} needs --input: the report runs the program on inputs to measure accuracy")
    if args.model:
        if not Path(args.model).exists():
            raise CliError(f"{args.model}: no such model file")
        _check_model_file(args.model)
    if args.trials is not None and args.trials < 1:
        raise CliError(f"--trials {args.trials}: give at least one trial")
    _check_seed(args.seed)
    times = list(DEFAULT_TIMES)
    if args.times is not None:
        times = [(t.strip(), parse_duration(t, "--times")) for t in args.times.split(",") if t.strip()]
        if not times:
            raise CliError(f"--times {args.times!r}: give one or more times, e.g. --times 0,1h,1d")
    _check_program_file(args.program)
    program, target, table = load(args.program)
    evaluation = None
    if args.input:
        given = ReportInputs(inputs=_read_inputs(args.input, [p.name for p in program.inputs]),
                             labels=_read_labels(args.labels), model=args.model,
                             trials=args.trials, times=times, seed=args.seed, noise=not args.no_noise,
                             drift_compensation=not args.no_drift_compensation)
        with _progress(args, "evaluating") as bar:
            evaluation = evaluate(program, target, given, progress=bar)
    text = render(build_report(program, target, table, evaluation=evaluation, source=Path(args.program).name), fmt)
    if out == "-":
        sys.stdout.write(text)
        return EXIT_OK
    data = text.encode()
    write_atomic(out, lambda f: f.write(data))
    print(f"wrote {out} ({fmt}, {_fmt_bytes(len(data))})")
    return EXIT_OK


def cmd_targets(args: argparse.Namespace) -> int:
    from nmc.backends.target import load_target, preset_names

    names = preset_names()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name.ljust(width)}  {load_target(name).one_line()}")
    return EXIT_OK


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars (they are drawn only when stderr is a terminal)")
    parser = argparse.ArgumentParser(
        prog="nmc", description="Compile ONNX models to in-memory-computing chips and simulate them.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars (they are drawn only when stderr is a terminal)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def target_option(p):
        p.add_argument("--target", "-t", default="ideal", metavar="NAME|FILE",
                       help="a preset name (see `nmc targets`) or a target .toml file (default: ideal)")

    def pass_option(p):
        p.add_argument("-p", "--pass-option", dest="pass_options", action="append", default=[],
                       metavar='"PASS{OPT=VAL,...}"', help="set options of a compiler pass (repeatable)")

    def simulation_options(p):
        g = p.add_argument_group("simulation (analog targets)")
        g.add_argument("--time", default="0", metavar="DURATION",
                       help="time since the crossbars were programmed, for drift: seconds or a number "
                            "with a unit, e.g. 250s, 3h, 1d, 1y (default: 0)")
        g.add_argument("--seed", type=int, default=0, help="seed of the device noise (default: 0)")
        g.add_argument("--trials", type=int, default=1, metavar="N",
                       help="run N independent programming instances (seeds SEED..SEED+N-1) and report "
                            "mean, std, min and max (default: 1)")
        g.add_argument("--no-noise", action="store_true", help="switch device and read noise off")
        g.add_argument("--no-drift-compensation", action="store_true",
                       help="do not rescale outputs for conductance drift")

    def calibration_option(p):
        p.add_argument("--calibration", action="append", default=[], metavar="[NAME=]FILE",
                       help="sample inputs for calibration, in the forms of --input (X.npy, D.npz:KEY, "
                            "NAME=X.npy): fixed input scales and ADC ranges from what they draw (repeatable)")

    def input_option(p):
        p.add_argument("--input", "-i", action="append", required=True, metavar="[NAME=]FILE",
                       help="an input array: X.npy, NAME=X.npy, NAME=D.npz:KEY, or a .npz of named arrays "
                            "(repeatable)")

    p = sub.add_parser("compile", parents=[common], help="compile an ONNX model to a .nmc program",
                       description="Compile an ONNX model to a self-contained .nmc program.")
    p.add_argument("model", metavar="MODEL.onnx")
    target_option(p)
    p.add_argument("-o", "--output", metavar="OUT.nmc", help="the program file (default: MODEL.nmc)")
    p.add_argument("--dump-ir", action="store_true", help="print the graph IR after the passes")
    p.add_argument("--asm", metavar="OUT.s", help="also write the program's assembly text")
    calibration_option(p)
    pass_option(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", parents=[common], help="run a .nmc program on the simulator",
                       description="Run a compiled program on input arrays.")
    p.add_argument("program", metavar="PROGRAM.nmc")
    input_option(p)
    p.add_argument("-o", "--output", metavar="Y.npy|Y.npz",
                   help="write the outputs (of the first trial): .npy for one output, .npz (named arrays) "
                        "for any number")
    p.add_argument("--labels", metavar="Y.npy", help="class labels (Y.npy or D.npz:KEY) to report accuracy")
    p.add_argument("--stats", metavar="STATS.json",
                   help="write the full timing/energy/area breakdown (by component and by layer) as JSON")
    simulation_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("verify", parents=[common], help="compare nmc with onnxruntime on a model",
                       description="Compile MODEL, run it on nmc and on onnxruntime, compare the outputs. "
                                   "Exit code 1 when they differ by more than the target allows.")
    p.add_argument("model", metavar="MODEL.onnx")
    input_option(p)
    target_option(p)
    p.add_argument("--labels", metavar="Y.npy", help="class labels (Y.npy or D.npz:KEY) to report accuracy")
    calibration_option(p)
    pass_option(p)
    simulation_options(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("report", parents=[common], help="write a mapping, timing and energy report of a program",
                       description="Report on a compiled program: summary, chip floor plan, per-layer mapping, "
                                   "energy and latency charts; with --input also accuracy and error over trials "
                                   "and drift times.")
    p.add_argument("program", metavar="PROGRAM.nmc")
    p.add_argument("-o", "--output", metavar="REPORT",
                   help="the report file, or - for stdout (default: PROGRAM.report.FORMAT)")
    p.add_argument("--format", "-f", choices=("html", "md", "json"),
                   help="html (self-contained page), md (Markdown) or json (default: from the -o suffix, else html)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="[NAME=]FILE",
                   help="run the program on these inputs (the forms of `nmc run --input`) and report accuracy "
                        "and error (repeatable)")
    p.add_argument("--labels", metavar="Y.npy", help="class labels (Y.npy or D.npz:KEY) for accuracy")
    p.add_argument("--model", metavar="MODEL.onnx", help="the ONNX model, to compare with onnxruntime")
    g = p.add_argument_group("simulation (with --input)")
    g.add_argument("--trials", type=int, default=None, metavar="N",
                   help="independently programmed chips per condition (default: 3 on noisy targets, else 1)")
    g.add_argument("--times", metavar="T1,T2,...",
                   help="times since programming, on drifting targets (default: 0,1h,1d)")
    g.add_argument("--seed", type=int, default=0, help="seed of the first trial (default: 0)")
    g.add_argument("--no-noise", action="store_true", help="switch device and read noise off")
    g.add_argument("--no-drift-compensation", action="store_true",
                   help="do not rescale outputs for conductance drift")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("targets", parents=[common], help="list the preset targets",
                       description="List the preset targets shipped with nmc.")
    p.set_defaults(func=cmd_targets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nmc`` console script; returns the exit code."""
    for stream in (sys.stdout, sys.stderr):  # a "±" must never crash an ASCII-only terminal
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse has already printed
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    try:
        return args.func(args)
    except BrokenPipeError:  # `nmc ... | head`: the reader has gone; say nothing more
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return EXIT_OK
    except (NmcError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"nmc: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("nmc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in nmc, not a user error
        if args.debug:
            traceback.print_exc()
        print(f"nmc: internal error: {type(e).__name__}: {_one_line(e)} (run with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
