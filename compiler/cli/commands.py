"""The ``nmc`` commands (``compile``, ``run``, ``verify``, ``report``, ``targets``), their argument
parser, and ``main``, which turns every failure into an exit code and at most one line.

Exit codes: 0 success, 1 ``verify`` outside the target's tolerance, 2 a user error (an
``NmcError``, an unreadable file: one line ``nmc: error: ...`` on stderr), 3 an internal error (a
bug in nmc, including an IR that broke an invariant); ``--debug`` adds the traceback.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Sequence

from nmc.compiler.cli.files import (CliError, check_model_file, check_program_file, check_writable_dir, one_line,
                                    read_calibration, read_inputs, read_labels, save_outputs, write_bytes)
from nmc.compiler.cli.summary import (compile_summary, fmt_bytes, fmt_shape, headline, stats_summary,
                                      top1_summary, trial_summary)
from nmc.compiler.progress import Progress
from nmc.isa.errors import NmcError
from nmc.runtime.duration import parse_duration

EXIT_OK, EXIT_VERIFY_FAILED, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR = 0, 1, 2, 3

_PASS_SPEC = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*(?:\{(.*)\})?\s*$")


# ----------------------------------------------------------------------------- option values
def _target(args):
    """The ``--target`` with its ``--set`` overrides (values in TOML syntax; bare words are strings)."""
    if not args.target_fields:
        return args.target
    import tomllib

    from nmc.backends.target import TargetError, load_target, with_fields

    fields = {}
    for item in args.target_fields:
        name, equals, raw = (part.strip() for part in item.partition("="))
        if not equals or not name or not raw:
            raise TargetError(f"--set {item!r}: give SECTION.FIELD=VALUE, e.g. programming.write_verify=true")
        try:
            fields[name] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            fields[name] = raw
    return with_fields(load_target(args.target), fields)


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


def _sim_options(args: argparse.Namespace, options_type):
    seconds = parse_duration(args.time)
    if args.trials < 1:
        raise CliError(f"--trials {args.trials}: give at least one trial")
    return options_type(time=seconds, seed=_check_seed(args.seed), noise=not args.no_noise,
                        drift_compensation=not args.no_drift_compensation)


def _progress(args: argparse.Namespace, label: str) -> Progress:
    """The progress bar of one command: drawn on a terminal unless ``--quiet``."""
    return Progress(label, enabled=False if getattr(args, "quiet", False) else None)


# ----------------------------------------------------------------------------- commands
def cmd_compile(args: argparse.Namespace) -> int:
    from nmc.compiler.driver import compile_model
    from nmc.compiler.ir.dump import dump
    from nmc.compiler.reports import mapping_table
    from nmc.isa.asm import format_program

    check_model_file(args.model)
    out = Path(args.output) if args.output else Path(args.model).with_suffix(".nmc")
    for path in filter(None, (out, args.asm)):
        check_writable_dir(path)
    model = args.model
    calibration = None
    pass_options = _parse_pass_options(args.pass_options)
    if args.calibration:
        from nmc.compiler.frontend.loader import read_model, real_inputs

        model = read_model(args.model)
        calibration = read_calibration(args.calibration, [vi.name for vi in real_inputs(model)])
    with _progress(args, "compiling") as bar:
        # Writing a large program (hashing and writing its weights) takes about as long as compiling it.
        compiled = compile_model(model, _target(args), pass_options=pass_options, calibration=calibration,
                                 progress=lambda done, total, note="": bar(0.5 * done / total, 1.0, note))
        program, target = compiled.program, compiled.target
        bar(0.5, 1.0, "writing program")
        if args.asm:
            write_bytes(args.asm, format_program(program).encode())
        bound = compiled.bound()
        bound.save(out)
        bar(0.95, 1.0, "estimating timing and energy")
        figures = headline(program, target, mapping_table.read(bound.attachments, program, target))
    if args.dump_ir:
        print(dump(compiled.graph), end="")
    print(compile_summary(args.model, out, compiled, calibration, args.asm))
    print(figures)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from nmc.runtime import SimOptions
    from nmc.runtime.compiled import load

    if args.output and Path(args.output).suffix not in (".npy", ".npz"):
        raise CliError(f"{args.output}: the output file must end in .npy (one output) or .npz")
    for path in filter(None, (args.output, args.stats)):
        check_writable_dir(path)
    options = _sim_options(args, SimOptions)
    check_program_file(args.program)
    with _progress(args, "running") as bar:
        bar(0, 1, "loading program")
        loaded = load(args.program)  # on the target it was compiled for (older files: the preset)
        program = loaded.program
        inputs = read_inputs(args.input, loaded.input_names)
        labels = read_labels(args.labels)
        runs = [loaded.run(inputs, time=options.time, seed=options.seed + i, noise=options.noise,
                           drift_compensation=options.drift_compensation,
                           progress=bar.part(i, args.trials, f"trial {i + 1}/{args.trials}" if args.trials > 1 else ""))
                for i in range(args.trials)]
    outputs = runs[0]
    if args.output:
        save_outputs(args.output, outputs)
    for name, value in outputs.items():
        print(f"{name}: {value.dtype}{fmt_shape(value.shape)}")
    if len(outputs) == 1:
        value = next(iter(outputs.values()))
        if value.ndim == 2 and value.shape[1] > 1:
            print(top1_summary(value))
    if args.trials > 1 or labels is not None:
        print(trial_summary(runs, labels, options.seed))
    if args.output:
        print(f"wrote {args.output}" + (f" (trial 1, seed {options.seed})" if args.trials > 1 else ""))
    stats = loaded.stats()
    print(stats_summary(stats, batch=next(iter(outputs.values())).shape[0] if program.batched else 1))
    if args.stats:
        write_bytes(args.stats, stats.to_json().encode())
        print(f"wrote {args.stats}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from nmc.compiler.frontend.loader import read_model, real_inputs
    from nmc.compiler.verify import verify_model
    from nmc.runtime import SimOptions

    check_model_file(args.model)
    options = _sim_options(args, SimOptions)
    pass_options = _parse_pass_options(args.pass_options)
    proto = read_model(args.model)
    inputs = read_inputs(args.input, [vi.name for vi in real_inputs(proto)])
    labels = read_labels(args.labels)
    calibration = read_calibration(args.calibration, [vi.name for vi in real_inputs(proto)])
    with _progress(args, "verifying") as bar:
        report = verify_model(proto, inputs, _target(args), labels=labels, pass_options=pass_options,
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
        check_writable_dir(out)
    if Path(args.program).suffix in (".parquet", ".csv"):   # a sweep's results file
        from nmc.compiler.reports.sweep_report import render_sweep

        if args.input:
            raise CliError("a sweep's report shows the sweep's rows; --input is for program reports")
        if not Path(args.program).exists():
            raise CliError(f"{args.program}: no such results file")
        return _write_report(render_sweep(args.program, fmt), out, fmt)
    for flag, value in (("--labels", args.labels), ("--model", args.model), ("--times", args.times)):
        if value and not args.input:
            raise CliError(f"{flag} needs --input: the report runs the program on inputs to measure accuracy")
    if args.model:
        if not Path(args.model).exists():
            raise CliError(f"{args.model}: no such model file")
        check_model_file(args.model)
    if args.trials is not None and args.trials < 1:
        raise CliError(f"--trials {args.trials}: give at least one trial")
    _check_seed(args.seed)
    times = list(DEFAULT_TIMES)
    if args.times is not None:
        times = [(t.strip(), parse_duration(t, "--times")) for t in args.times.split(",") if t.strip()]
        if not times:
            raise CliError(f"--times {args.times!r}: give one or more times, e.g. --times 0,1h,1d")
    check_program_file(args.program)
    program, target, table = load(args.program)
    evaluation = None
    if args.input:
        given = ReportInputs(inputs=read_inputs(args.input, [p.name for p in program.inputs]),
                             labels=read_labels(args.labels), model=args.model,
                             trials=args.trials, times=times, seed=args.seed, noise=not args.no_noise,
                             drift_compensation=not args.no_drift_compensation)
        with _progress(args, "evaluating") as bar:
            evaluation = evaluate(program, target, given, progress=bar)
    text = render(build_report(program, target, table, evaluation=evaluation, source=Path(args.program).name), fmt)
    return _write_report(text, out, fmt)


def _write_report(text: str, out: str, fmt: str) -> int:
    if out == "-":
        sys.stdout.write(text)
        return EXIT_OK
    data = text.encode()
    write_bytes(out, data)
    print(f"wrote {out} ({fmt}, {fmt_bytes(len(data))})")
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from nmc.compiler.frontend.loader import read_model, real_inputs
    from nmc.compiler.sweep import engine_for, load_grid, sweep

    check_model_file(args.model)
    grid = load_grid(args.grid)
    out = Path(args.output)
    check_writable_dir(out)
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers {args.workers}: give at least one worker")
    names = [vi.name for vi in real_inputs(read_model(args.model))]
    inputs = read_inputs(args.input, names)
    labels = read_labels(args.labels)
    calibration = read_calibration(args.calibration, names)
    with _progress(args, "sweeping") as bar:
        run = sweep(args.model, grid, inputs, out, labels=labels, calibration=calibration,
                    engine=engine_for(args.workers, args.scheduler),
                    progress=lambda done, total: bar(done, total, f"{done}/{total} chips"))
    print(f"sweep {args.model}: {len(grid.points)} design point(s) × {grid.trials} chip(s) × {len(grid.times)} "
          f"time(s); computed {run.computed} chip(s) ({run.rows} rows), skipped {run.skipped} already in {out}")
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
        p.add_argument("--set", dest="target_fields", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="override a field of the target, e.g. programming.write_verify=true, "
                            "programming.copies=4, cores.crossbar.adc_bits=6 (repeatable)")

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
    p.add_argument("program", metavar="PROGRAM.nmc|RESULTS.parquet",
                   help="a compiled program, or the results file of `nmc sweep`")
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

    p = sub.add_parser("sweep", parents=[common], help="sweep a grid of designs, chips and drift times",
                       description="Compile MODEL at every design point of a grid (targets × target fields × pass "
                                   "options), simulate each on several programmed chips at several times, and write "
                                   "one row per point × time × chip (accuracy, error against onnxruntime, latency, "
                                   "energy, area, ...). Rows already in the results file are not computed again.")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--grid", "-g", required=True, metavar="GRID.toml", help="the grid (see compiler/sweep.py)")
    input_option(p)
    p.add_argument("--labels", metavar="Y.npy", help="class labels (Y.npy or D.npz:KEY) for accuracy")
    calibration_option(p)
    p.add_argument("-o", "--output", required=True, metavar="RESULTS.parquet|.csv", help="the results file")
    g = p.add_argument_group("engine (default: local processes, one per core up to 4)")
    g.add_argument("--workers", type=int, default=None, metavar="N", help="a Dask LocalCluster of N worker processes")
    g.add_argument("--scheduler", metavar="tcp://HOST:8786", help="the scheduler of a running Dask cluster")
    p.set_defaults(func=cmd_sweep)

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
        print(f"nmc: error: {one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("nmc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in nmc, not a user error
        if _is_verify_error(e):  # said in words a user can report
            return _internal_error(args, f"the graph IR broke an invariant (a bug in nmc): {one_line(e)}")
        return _internal_error(args, f"{type(e).__name__}: {one_line(e)}")


def _is_verify_error(e: Exception) -> bool:
    """Whether ``e`` is the IR verifier's; that module is imported only by commands that compile,
    and ``run`` and ``report`` import no compiler."""
    verify = sys.modules.get("nmc.compiler.ir.verify")
    return verify is not None and isinstance(e, verify.VerifyError)


def _internal_error(args: argparse.Namespace, what: str) -> int:
    if args.debug:
        traceback.print_exc()
    print(f"nmc: internal error: {what} (run with --debug for the traceback, and please report it)",
          file=sys.stderr)
    return EXIT_INTERNAL_ERROR
