"""Every row of issue 17's speed table, measured in one run (a script, not collected by pytest).

    python tests/benchmarks/bench_table.py [--rows cnn-ideal,mlp-pcm] [--repeats 5] [--budget 120] [--quick]
                                           [--cache DIR]

Rows against onnxruntime time whole processes as a user runs them: ``nmc run PROGRAM.nmc -i X.npy
-o Y.npy -q`` (programs compiled beforehand, not timed) against a Python process that runs
onnxruntime (CPU provider) on the same model and inputs and writes its output; the two alternate
(A B A B ...) and the ratio is the median of the per-pair ratios. A row repeats ``--repeats``
times, or stops after two once it has spent ``--budget`` seconds (today's slow rows). Peak memory
is each child's maximum resident set, read by a small launcher process (for a child with worker
processes, the largest of them, not their sum). Compile rows time whole ``nmc compile``
processes. The two MLP rows time one in-process ``program.run(x)`` (each run programs the chip),
beside the peers' figures quoted from the issue. ResNet-50 and VGG-16 (torchvision, random
weights, 224×224) are exported once into ``--cache``; without torch/torchvision their rows are
skipped. docs/performance.md says what each row measures.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GB = 1e9

ORT_CHILD = '''\
"""onnxruntime as a whole process: python ort_run.py MODEL.onnx OUT.npy|OUT.npz NAME=X.npy ..."""
import sys

import numpy as np
import onnxruntime as ort

model, out, *inputs = sys.argv[1:]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
feeds = {name: np.load(path) for name, path in (arg.split("=", 1) for arg in inputs)}
outputs = session.run(None, feeds)
if out.endswith(".npz"):
    np.savez(out, **{o.name: y for o, y in zip(session.get_outputs(), outputs)})
else:
    np.save(out, outputs[0])
'''


# A child started from this (large) process would inherit its memory high-water mark through
# exec, so every child is started by this small launcher, which times it and reads its peak.
LAUNCHER = '''\
"""python launch.py RESULT COMMAND...: run COMMAND, write "wall seconds, peak RSS in KiB" to RESULT."""
import os
import subprocess
import sys
import time

start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as result:
    result.write(f"{seconds!r} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
'''


# ---------------------------------------------------------------------------- measuring children
@dataclass
class Child:
    """Wall time and peak resident memory of one finished child process."""

    seconds: float
    peak_bytes: int


class Launcher:
    """Runs children through ``LAUNCHER`` (written into ``work``) and returns their ``Child``."""

    def __init__(self, work: Path):
        self.path = work / "launch.py"
        self.path.write_text(LAUNCHER)
        self.result = work / "launch-result.txt"

    def __call__(self, argv: list[str]) -> Child:
        """Run ``argv`` to completion (output discarded); fail with the end of its stderr."""
        with tempfile.TemporaryFile() as err:
            code = subprocess.run([sys.executable, str(self.path), str(self.result), *map(str, argv)],
                                  stdout=subprocess.DEVNULL, stderr=err, check=False).returncode
            if code != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"{' '.join(map(str, argv))} exited {code}:\n  " + "\n  ".join(tail))
        seconds, peak_kib = self.result.read_text().split()
        return Child(float(seconds), int(peak_kib) * 1024)  # Linux reports KiB


@dataclass
class Paired:
    """Alternating runs of nmc (A) and onnxruntime (B)."""

    nmc: list[Child] = field(default_factory=list)
    ort: list[Child] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Median of the per-pair time ratios nmc / onnxruntime."""
        return statistics.median(a.seconds / b.seconds for a, b in zip(self.nmc, self.ort))

    @staticmethod
    def median_s(runs: list[Child]) -> float:
        return statistics.median(r.seconds for r in runs)

    @staticmethod
    def peak(runs: list[Child]) -> int:
        return max(r.peak_bytes for r in runs)


def repeated(measure: Callable[[], None], repeats: int, budget_s: float) -> int:
    """Call ``measure`` ``repeats`` times, or fewer (but at least twice) once ``budget_s``
    seconds are spent (0: no limit), so slow rows fit a run; how many calls were made."""
    start = time.perf_counter()
    for done in range(1, repeats + 1):
        measure()
        if budget_s and done >= 2 and time.perf_counter() - start > budget_s:
            break
    return done


def paired(run_child: Launcher, nmc_argv: list[str], ort_argv: list[str], repeats: int, budget_s: float) -> Paired:
    """Up to ``repeats`` pairs, nmc first in each; one untimed onnxruntime run first warms its
    imports (nmc's program and modules are warm from the compile that wrote the program)."""
    run_child(ort_argv)
    result = Paired()

    def pair() -> None:
        result.nmc.append(run_child(nmc_argv))
        result.ort.append(run_child(ort_argv))

    repeated(pair, repeats, budget_s)
    return result


def nmc_command() -> list[str]:
    """The installed ``nmc`` entry point beside this Python (no pyenv shim in the timing)."""
    beside = Path(sys.executable).with_name("nmc")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("nmc")
    if found is None:
        sys.exit("bench_table: no `nmc` command; install the package (pip install -e .)")
    return [found]


# ---------------------------------------------------------------------------- rows
@dataclass
class Result:
    """One printed row: the figure, the goal, whether it is met, and how it was measured."""

    figure: str
    goal: str
    met: bool | None
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    name: str
    title: str
    measure: Callable[[Bench], Result]


class Skip(Exception):
    """A row that cannot be measured here (a missing optional package)."""


def _gb(n: int) -> str:
    return f"{n / GB:.2f} GB"


def _s(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


class Bench:
    """The shared setup of the rows: the temp dir, the programs compiled (untimed) and the models."""

    def __init__(self, work: Path, cache: Path, repeats: int, quick: bool, budget_s: float):
        self.work, self.cache, self.repeats, self.quick, self.budget_s = work, cache, repeats, quick, budget_s
        self.nmc = nmc_command()
        self.run_child = Launcher(work)
        self.ort_child = work / "ort_run.py"
        self.ort_child.write_text(ORT_CHILD)
        self._programs: dict[tuple, Path] = {}

    # -------------------------------------------------------------- setup
    def program(self, model: Path, target: str, calibration: str | None = None) -> Path:
        """``model`` compiled for ``target`` into the temp dir (once; not timed)."""
        key = (model, target, calibration)
        if key not in self._programs:
            out = self.work / f"{model.stem}.{Path(target).stem}.{len(self._programs)}.nmc"
            argv = [*self.nmc, "compile", str(model), "-t", target, "-o", str(out), "-q"]
            if calibration:
                argv += ["--calibration", calibration]
            self.run_child(argv)
            self._programs[key] = out
        return self._programs[key]

    def save(self, name: str, x: np.ndarray) -> Path:
        path = self.work / f"{name}.npy"
        np.save(path, x)
        return path

    def torchvision_model(self, name: str) -> Path:
        """``--cache``/NAME.onnx: torchvision's NAME, random weights, 224×224, exported by the zoo."""
        path = self.cache / f"{name}.onnx"
        if path.exists():
            return path
        missing = [m for m in ("torch", "torchvision") if importlib.util.find_spec(m) is None]
        if missing:  # (torchvision is not imported here: the zoo declares its detection ops first)
            raise Skip(f"needs {' and '.join(missing)} to export {name}; pip install torch torchvision")
        sys.path.insert(0, str(ROOT))
        from tests.zoo.models import ZooModel, _tv, export

        self.cache.mkdir(parents=True, exist_ok=True)
        print(f"  (exporting {name} to {path}, once)", flush=True)
        tmp = self.cache / "partial"
        tmp.mkdir(exist_ok=True)
        written, _ = export(ZooModel(name, "torchvision", _tv(name, size=224)), tmp)
        _any_batch(written)
        written.replace(path)
        return path

    # -------------------------------------------------------------- kinds of row
    def against_onnxruntime(self, model: Path, program: Path, inputs: dict[str, np.ndarray], goal: float,
                            nmc_flags: tuple[str, ...] = (), repeats: int | None = None,
                            memory_goal: float | None = None) -> Result:
        """Whole ``nmc run`` against a whole onnxruntime process on the same inputs."""
        repeats = repeats or self.repeats
        paths = {name: self.save(f"{program.stem}.{name}", x) for name, x in inputs.items()}
        suffix = ".npy" if _outputs(model) == 1 else ".npz"
        nmc_argv = [*self.nmc, "run", str(program), "-q", "-o", str(self.work / f"nmc_out{suffix}"),
                    *(a for name, p in paths.items() for a in ("-i", f"{name}={p}")), *nmc_flags]
        ort_argv = [sys.executable, str(self.ort_child), str(model), str(self.work / f"ort_out{suffix}"),
                    *(f"{name}={p}" for name, p in paths.items())]
        runs = paired(self.run_child, nmc_argv, ort_argv, repeats, self.budget_s)
        nmc_peak, ort_peak = runs.peak(runs.nmc), runs.peak(runs.ort)
        details = [f"nmc {_s(runs.median_s(runs.nmc))} (peak {_gb(nmc_peak)}), onnxruntime "
                   f"{_s(runs.median_s(runs.ort))} (peak {_gb(ort_peak)}); median of {len(runs.nmc)} alternating pairs; "
                   f"per-pair ratios " + " ".join(f"{a.seconds / b.seconds:.1f}" for a, b in zip(runs.nmc, runs.ort))]
        if memory_goal is not None:
            return Result(f"{_gb(nmc_peak)} peak ({runs.ratio:.1f}× onnxruntime's time)",
                          f"≤ {memory_goal:g} GB", nmc_peak <= memory_goal * GB, details)
        return Result(f"{runs.ratio:.1f}× onnxruntime", f"≤ {goal:g}×", runs.ratio <= goal, details)

    def compile_row(self, model: Path, seconds_goal: float, memory_goal: float | None) -> Result:
        """Whole ``nmc compile`` processes (``ideal``): median time, largest peak memory."""
        out = self.work / f"{model.stem}.compile-row.nmc"
        runs: list[Child] = []
        repeats = repeated(lambda: runs.append(self.run_child([*self.nmc, "compile", str(model), "-t", "ideal",
                                                          "-o", str(out), "-q"])), self.repeats, self.budget_s)
        seconds = statistics.median(r.seconds for r in runs)
        peak = max(r.peak_bytes for r in runs)
        met = seconds <= seconds_goal and (memory_goal is None or peak <= memory_goal * GB)
        goal = f"≤ {seconds_goal:g} s" + (f", ≤ {memory_goal:g} GB" if memory_goal else "")
        return Result(f"{seconds:.1f} s, {_gb(peak)} peak", goal, met,
                      [f"median of {repeats} runs: " + " ".join(f"{r.seconds:.1f}" for r in runs) + " s"])

    def in_process(self, program: Path, x: np.ndarray, **run_options) -> tuple[float, list[float], float]:
        """(median, all timed, load time) of ``nmc.load(program).run(x)``, one untimed warm-up."""
        import nmc

        start = time.perf_counter()
        compiled = nmc.load(program)
        load_s = time.perf_counter() - start
        compiled.run(x, seed=0, **run_options)
        times = []
        for seed in range(max(10, 5 * self.repeats)):
            start = time.perf_counter()
            compiled.run(x, seed=seed, **run_options)
            times.append(time.perf_counter() - start)
        return statistics.median(times), times, load_s


def _any_batch(path: Path) -> None:
    """Make the exported model's batch dimension symbolic (the zoo exports batch 1), so that
    onnxruntime takes the same batches as nmc."""
    import onnx

    model = onnx.load(path)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    onnx.save(model, path)


def _outputs(model: Path) -> int:
    import onnx

    return len(onnx.load(model, load_external_data=False).graph.output)


def _digits(key: str, count: int) -> np.ndarray:
    """``count`` inputs: the digits test split (``key``) repeated."""
    x = np.load(EXAMPLES / "digits_test.npz")[key]
    return np.resize(x, (count, *x.shape[1:]))


def _images(count: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((count, 3, 224, 224)).astype(np.float32)


# ---------------------------------------------------------------------------- the table
def cnn(target: str, goal: float):
    def measure(b: Bench) -> Result:
        count = 10_000 if b.quick else 100_000
        model = EXAMPLES / "digits_cnn.onnx"
        calibration = None if target == "ideal" else f"{EXAMPLES / 'digits_calibration.npz'}:x_image"
        flags = () if target == "ideal" else ("--time", "1d")
        result = b.against_onnxruntime(model, b.program(model, target, calibration), {"input": _digits("x_image", count)},
                                       goal, flags)
        result.details.insert(0, f"{count:,} inputs (the test split repeated)")
        return result
    return measure


def resnet50(target: str, goal: float):
    def measure(b: Bench) -> Result:
        model = b.torchvision_model("resnet50")
        flags = () if target == "ideal" else ("--time", "1d")
        return b.against_onnxruntime(model, b.program(model, target), {"input_0": _images(8)}, goal, flags)
    return measure


def resnet50_memory(b: Bench) -> Result:
    count = 16 if b.quick else 64
    model = b.torchvision_model("resnet50")
    result = b.against_onnxruntime(model, b.program(model, "ideal"), {"input_0": _images(count)}, 0.0,
                                   repeats=1, memory_goal=2.0)
    result.details.insert(0, f"{count} images, one pair")
    return result


def forest(b: Bench) -> Result:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    count = 2_000 if b.quick else 10_000
    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    forest = RandomForestClassifier(100, random_state=0).fit(x, y)
    model = b.work / "forest100.onnx"
    model.write_bytes(to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}}).SerializeToString())
    rng = np.random.default_rng(0)  # as bench_trees.py: the data set repeated with a little jitter
    data = x[rng.integers(0, len(x), count)] * rng.uniform(0.98, 1.02, (count, x.shape[1])).astype(np.float32)
    result = b.against_onnxruntime(model, b.program(model, "acam"), {"X": data}, 5.0)
    result.details.insert(0, f"{count:,} rows, labels and probabilities written")
    return result


def vgg16_compile(b: Bench) -> Result:
    return b.compile_row(b.torchvision_model("vgg16"), 10.0, 2.0)


def resnet50_compile(b: Bench) -> Result:
    return b.compile_row(b.torchvision_model("resnet50"), 3.0, None)


MLP_HIDDEN = (256, 128)  # the MLP (64-256-128-10), not the shipped example's (64-64-32-10)
MLP_CALIBRATION = f"{EXAMPLES / 'digits_calibration.npz'}:x_flat"
MLP_SAMPLES = 540
PEERS_NOTE = "peers' figures are the issue's, measured elsewhere (same machine kind, model and inputs), not in this run"


def mlp_model(b: Bench) -> Path:
    """The issue's digits MLP (64-256-128-10), trained and exported as examples/make_digits_mlp.py
    does for the shipped 64-64-32-10 one (once per run)."""
    path = b.work / "digits_mlp_256_128.onnx"
    if not path.exists():
        sys.path.insert(0, str(EXAMPLES))
        from make_digits_mlp import build

        with contextlib.redirect_stdout(io.StringIO()):
            path.write_bytes(build(MLP_HIDDEN).SerializeToString())
    return path


def mlp_pcm(b: Bench) -> Result:
    program = b.program(mlp_model(b), "pcm", MLP_CALIBRATION)
    median, times, load_s = b.in_process(program, _digits("x_flat", MLP_SAMPLES))
    peers = {"CrossSim 3.2": 1.7e-3, "aihwkit 1.2": 15e-3}
    return Result(f"{median * 1e3:.1f} ms (CrossSim 1.7 ms, aihwkit 15 ms)", "faster than both",
                  median < min(peers.values()),
                  [f"{MLP_SAMPLES} samples (test split repeated), pcm, noise on, time 0; median of {len(times)} "
                   f"runs (min {min(times) * 1e3:.1f} ms); nmc.load took {load_s * 1e3:.0f} ms once, not counted",
                   PEERS_NOTE])


def bit_serial_target(work: Path) -> Path:
    """The pcm preset with 4-bit cells (an 8-bit weight's 7 magnitude bits in 2 slices) and
    1-bit DACs (8-bit inputs in 8 reads), 8-bit ADCs."""
    text = (ROOT / "backends" / "targets" / "pcm.toml").read_text()
    for key, value in {"name": '"pcm-2slice-bitserial"', "cell_bits": "4", "dac_bits": "1", "adc_bits": "8",
                       "weight_bits": "8", "input_bits": "8"}.items():
        text, hits = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.MULTILINE)
        if hits != 1:
            raise RuntimeError(f"pcm.toml: expected one `{key} = ...` line, found {hits}")
    path = work / "pcm-2slice-bitserial.toml"
    path.write_text(text)
    return path


def mlp_bit_serial(b: Bench) -> Result:
    import nmc
    from nmc.backends.tile_arithmetic import TileArithmetic

    program = b.program(mlp_model(b), str(bit_serial_target(b.work)), MLP_CALIBRATION)
    compiled = nmc.load(program)
    spec = compiled.target.crossbar
    arithmetic = sorted({(a.slices, a.phases, a.dac_reads, a.reads, a.adc_bits, a.in_bits, a.in_signed)
                         for a in (TileArithmetic.of(t, spec) for t in compiled.program.tiles.values())})
    tiles = "; ".join(f"{s} weight slices, {'signed' if sg else 'unsigned'} {ib}-bit inputs in {ph} phase(s) × "
                      f"{dr} bit-serial reads = {r} reads per MVM, {adc}-bit ADC"
                      for s, ph, dr, r, adc, ib, sg in arithmetic)
    median, times, _ = b.in_process(program, _digits("x_flat", MLP_SAMPLES), noise=False)
    return Result(f"{median * 1e3:.1f} ms (CrossSim 76 ms)", "≤ 10 ms", median <= 10e-3,
                  [f"target: cell_bits {spec.cell_bits}, weight_bits {spec.weight_bits}, dac_bits {spec.dac_bits}, "
                   f"input_bits {spec.input_bits}, adc_bits {spec.adc_bits}, {spec.weight_scheme}",
                   f"{len(compiled.program.tiles)} tiles: {tiles}",
                   f"{MLP_SAMPLES} samples, noise off; median of {len(times)} runs (min {min(times) * 1e3:.1f} ms)",
                   PEERS_NOTE])


ROWS = [
    Row("cnn-ideal", "digits CNN, 100,000 inputs, ideal", cnn("ideal", 2.0)),
    Row("cnn-pcm", "digits CNN, 100,000 inputs, pcm, noise, 1 day", cnn("pcm", 5.0)),
    Row("resnet50-ideal", "ResNet-50, batch 8, ideal", resnet50("ideal", 2.0)),
    Row("resnet50-pcm", "ResNet-50, batch 8, pcm, noise, 1 day", resnet50("pcm", 5.0)),
    Row("resnet50-memory", "ResNet-50, 64 images, ideal: peak memory", resnet50_memory),
    Row("forest-acam", "100-tree random forest, 10,000 rows, acam", forest),
    Row("vgg16-compile", "VGG-16 compile (ideal)", vgg16_compile),
    Row("resnet50-compile", "ResNet-50 compile (ideal)", resnet50_compile),
    Row("mlp-pcm", "digits MLP 64-256-128-10, 540 samples, one pcm pass in-process", mlp_pcm),
    Row("mlp-bitserial", "same MLP, 2 slices × 8 bit-serial inputs, ADC 8, noise off", mlp_bit_serial),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(r.name for r in ROWS),
                        help="comma-separated rows: " + ", ".join(r.name for r in ROWS))
    parser.add_argument("--repeats", type=int, default=None, help="pairs per row (default 5, --quick 2)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and inputs (a smoke run)")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds a row may spend before it stops repeating (at least 2 runs; 0: no limit)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nmc-bench",
                        help="where the exported torchvision models are kept")
    args = parser.parse_args()
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in {r.name for r in ROWS}]
    if unknown:
        parser.error(f"unknown rows {', '.join(unknown)}; rows are {', '.join(r.name for r in ROWS)}")
    repeats = args.repeats or (2 if args.quick else 5)
    print(f"nmc speed table (issue 17): repeats {repeats}{', quick' if args.quick else ''}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    summary = []
    with tempfile.TemporaryDirectory(prefix="nmc-bench-") as work:
        bench = Bench(Path(work), args.cache, repeats, args.quick, args.budget)
        for row in (r for r in ROWS if r.name in names):
            print(f"\n[{row.name}] {row.title}", flush=True)
            start = time.perf_counter()
            try:
                result = row.measure(bench)
            except Skip as e:
                result = Result(f"skipped: {e}", "", None)
            except Exception as e:  # noqa: BLE001 - one failing row must not hide the others
                result = Result(f"failed: {type(e).__name__}: {e}", "", None)
            verdict = {True: "met", False: "not met", None: "-"}[result.met]
            print(f"  {result.figure}   goal {result.goal or '-'}: {verdict}", flush=True)
            for line in result.details:
                print(f"    {line}", flush=True)
            print(f"    ({time.perf_counter() - start:.0f} s for this row)", flush=True)
            summary.append((row, result, verdict))
    print("\n| row | work | nmc | goal | met |\n|---|---|---|---|---|")
    for row, result, verdict in summary:
        print(f"| {row.name} | {row.title} | {result.figure.splitlines()[0][:100]} | {result.goal} | {verdict} |")


if __name__ == "__main__":
    main()
