"""Design-space sweeps and Monte-Carlo studies (``nmc sweep``).

A grid file names targets, overrides of any target field and compiler pass options (each a list:
the grid is their cross product), times since programming and the number of programmed chips::

    targets = ["pcm", "rram"]
    times = ["1h", "1d"]
    trials = 3                      # programmed chips per design point (seeds seed .. seed + 2)
    seed = 0
    [fields]                        # target fields by dotted name (backends.target.with_fields)
    "cores.crossbar.adc_bits" = [6, 8]
    [passes]                        # pass options, as -p gives them
    partition = ["", "first_digital=true"]

Each design point compiles once (a task of its own); each of its chips is a task that simulates
every time from one programming, or — when a point has fewer chips than the engine has worker
threads — several tasks, each on a part of the inputs (``sample_parts``), whose figures
``combine`` joins into the chip's rows. Rows — one per point × time × chip — carry the point's
parameters, accuracy (with labels), output error and top-1 agreement against onnxruntime (run
once, before the sweep), and the point's latency, throughput, energy, TOPS/W, area and crossbars.
A point that fails (a model too big, a bad field) is one row with its error. Rows are written to
the results file (``.parquet`` or ``.csv``) atomically as tasks finish, and a rerun skips the
points and chips already there. The seeds make rows independent of the engine and the number of
workers. Engines: ``LocalEngine`` (processes of this machine; 0 workers runs in-process) and
``DaskEngine`` (a ``dask.distributed`` cluster, or a ``LocalCluster`` of N workers), which ships
the inputs and each compiled program once per worker and reruns the tasks of a worker that died.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from nmc.backends.target import load_target, with_fields
from nmc.isa.errors import NmcError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class SweepError(NmcError):
    """A grid file is malformed, an engine is missing, or a results file cannot be used."""


GRID_KEYS = ("targets", "times", "trials", "seed", "fields", "passes")


@dataclass(frozen=True)
class Point:
    """One design: a target (preset or file), field overrides and pass options."""

    target: str
    fields: tuple[tuple[str, object], ...] = ()
    passes: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        text = json.dumps([self.target, list(self.fields), list(self.passes)], sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def params(self) -> dict:
        return {"target": self.target, **{f"set:{k}": v for k, v in self.fields},
                **{f"pass:{k}": v for k, v in self.passes}}


@dataclass(frozen=True)
class Grid:
    points: tuple[Point, ...]
    times: tuple[float, ...]
    trials: int
    seed: int = 0


def load_grid(path: str | os.PathLike) -> Grid:
    """A grid file → its design points, times, chips per point and first seed."""
    from nmc.runtime.duration import parse_duration

    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SweepError(f"{path}: no such grid file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SweepError(f"{path}: not valid TOML: {e}") from None
    unknown = sorted(set(doc) - set(GRID_KEYS))
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(GRID_KEYS)}")
    targets = doc.get("targets", [])
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise SweepError(f"{path}: targets must be a non-empty list of preset names or target files")
    trials, seed = doc.get("trials", 1), doc.get("seed", 0)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise SweepError(f"{path}: trials = {trials!r} must be an integer of at least 1")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SweepError(f"{path}: seed = {seed!r} must be an integer of 0 or more")
    times = tuple(parse_duration(t, "times") for t in doc.get("times", [0]))
    axes = []
    for key in ("fields", "passes"):
        table = doc.get(key, {})
        if not isinstance(table, dict):
            raise SweepError(f"{path}: [{key}] must be a table of name = [values]")
        for name, values in table.items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"{path}: {key}.{name} must be a non-empty list of values")
            axes.append((key, name, values))
    points = []
    for target in targets:
        for combo in itertools.product(*(values for _, _, values in axes)):
            chosen = list(zip(axes, combo))
            points.append(Point(target, tuple((n, v) for (k, n, _), v in chosen if k == "fields"),
                                tuple((n, str(v)) for (k, n, _), v in chosen if k == "passes")))
    return Grid(tuple(points), times, trials, seed)


# ----------------------------------------------------------------------------- tasks
@dataclass
class Inputs:
    """What every task needs, shipped once per worker: the model, inputs, labels, reference."""

    model: bytes
    feeds: dict
    labels: np.ndarray | None
    reference: dict
    calibration: dict | None
    threads: int | None = None   # simulator threads per task: 1 where the engine runs tasks side by side

    @property
    def samples(self) -> int:
        return len(next(iter(self.feeds.values())))

    @functools.cached_property
    def scale(self) -> list[float]:
        """Per output, the largest |reference| (at least 1e-30): output errors are relative to it."""
        return [max(float(np.abs(np.asarray(r, dtype=np.float64)).max()), 1e-30) for r in self.reference.values()]


def compile_point(point: Point, inputs: Inputs):
    """The point's compiled program and its static figures, or the error that stopped it."""
    import onnx

    from nmc.compiler.driver import compile_model

    try:
        target = load_target(point.target)
        if point.fields:
            target = with_fields(target, dict(point.fields))
        compiled = compile_model(onnx.load_from_string(inputs.model), target, dict(point.passes),
                                 calibration=inputs.calibration).bound()
    except NmcError as e:
        return None, {"error": f"{type(e).__name__}: {e}"}
    stats = compiled.stats()
    figures = {"latency_s": stats.latency_s, "throughput_per_s": stats.throughput_per_s,
               "energy_per_inference_j": stats.energy_total_pj * 1e-12, "tops_per_w": stats.tops_per_w(),
               "area_mm2": float(sum(stats.area_mm2.values())),
               "crossbars": len({(t.core, t.xbar) for t in compiled.program.tiles.values()})}
    return compiled, figures


MIN_PART = 64   # samples: a part also programs its chip, so parts smaller than this cost more than they save


def sample_parts(samples: int, chips: int, threads: int) -> list[tuple[int, int]]:
    """The [start, stop) ranges of the inputs a point's chip tasks cover: the whole batch, unless
    the point has fewer chips than there are worker threads; then each chip's inputs are cut into
    enough parts (of at least ``MIN_PART`` samples) to keep every thread busy. A part programs
    the same chip (its seed) and sees its samples' own read noise, so the rows do not change."""
    n = max(1, min(-(-threads // max(chips, 1)), samples // MIN_PART))
    return [(i * samples // n, (i + 1) * samples // n) for i in range(n)]


def simulate_part(compiled_point, point: Point, trial: int, grid_times: tuple, seed: int,
                  part: tuple[int, int], inputs: Inputs) -> dict:
    """One programmed chip (seed ``seed + trial``) at every time on the inputs ``part`` [start,
    stop): each time's partial figures (``combine`` makes rows of a chip's parts), or the rows of
    a failed point. A program compiled for a fixed batch runs whole in the first part."""
    compiled, figures = compiled_point
    base = {"point": point.id, **point.params(), "trial": trial, "seed": seed + trial}
    if compiled is None:
        return {"rows": [{**base, "time_s": None, **figures}]}
    start, stop = part
    if not compiled.program.batched:
        if start:
            return {"skip": True}
        start, stop = 0, None
    feeds = {name: value[start:stop] for name, value in inputs.feeds.items()}
    times = []
    for t in grid_times:
        out = compiled.run(feeds, time=t, seed=seed + trial, threads=inputs.threads, first_sample=start)
        times.append(_partial_quality(out, inputs, start, stop))
    return {"base": base, "figures": figures, "times": [float(t) for t in grid_times], "parts": times}


def combine(results: list[dict], inputs: Inputs) -> list[dict]:
    """The rows of one chip from its parts' results (the figures of a whole batch)."""
    for r in results:
        if "rows" in r:
            return r["rows"]
    results = [r for r in results if "skip" not in r]
    first = results[0]
    rows = []
    for i, t in enumerate(first["times"]):
        parts = [r["parts"][i] for r in results]
        n = sum(q["n"] for q in parts)
        row = {**first["base"], "time_s": t}
        if inputs.labels is not None:
            row["accuracy"] = sum(q["correct"] for q in parts) / n
        row["output_error"] = max(max(q["diff"][k] for q in parts) / inputs.scale[k] for k in range(len(inputs.scale)))
        agree = [sum(q["agree"][k] for q in parts) / n for k in range(len(first["parts"][i]["agree"]))]
        row["top1_agreement"] = min(agree) if agree else None
        rows.append({**row, **first["figures"], "error": None})
    return rows


def simulate_trial(compiled_point, point: Point, trial: int, grid_times: tuple, seed: int, inputs: Inputs) -> list[dict]:
    """Rows of one programmed chip (seed ``seed + trial``) at every time, on all the inputs."""
    whole = (0, inputs.samples)
    return combine([simulate_part(compiled_point, point, trial, grid_times, seed, whole, inputs)], inputs)


def _partial_quality(out: dict, inputs: Inputs, start: int, stop: int | None) -> dict:
    """Counts and largest differences of one part, for ``combine``."""
    first = next(iter(inputs.reference))
    part = {"n": len(np.asarray(inputs.reference[first])[start:stop])}
    if inputs.labels is not None:
        labels = inputs.labels[start:stop]
        part["correct"] = int(np.sum(np.asarray(out[first]).reshape(len(labels), -1).argmax(1) == labels))
    diff, agree = [], []
    for name, ref in inputs.reference.items():
        got = np.asarray(out[name], dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)[start:stop]
        diff.append(float(np.abs(got - ref).max()))
        if ref.ndim >= 2:
            agree.append(int(np.sum(got.reshape(len(ref), -1).argmax(1) == ref.reshape(len(ref), -1).argmax(1))))
    part["diff"], part["agree"] = diff, agree
    return part


# ----------------------------------------------------------------------------- engines
class LocalEngine:
    """Processes on this machine (``workers``; 0: in this process). Inputs go to each process
    once (its initializer); a compiled program travels with each of its chips' tasks. A process
    that dies breaks the pool: the unfinished tasks run again in a new one."""

    def __init__(self, workers: int = 0, retries: int = 2):
        self.workers, self.retries = workers, retries

    def run(self, grid: Grid, inputs: Inputs, todo: dict[Point, list[int]], emit: Callable[[list[dict]], None]) -> None:
        if self.workers == 0:
            for point, trials in todo.items():
                compiled = compile_point(point, inputs)
                for trial in trials:
                    emit(simulate_trial(compiled, point, trial, grid.times, grid.seed, inputs))
            return
        inputs = dataclasses.replace(inputs, threads=1)   # the processes share the cores
        compiled = self._map(inputs, [(compile_point, (p,)) for p in todo], lambda i, r: None)
        chips = _Chips(inputs, emit)
        tasks, keys = [], []
        for i, (p, trials) in enumerate(todo.items()):
            parts = sample_parts(inputs.samples, len(trials), self.workers)
            for trial in trials:
                chips.expect((p.id, trial), len(parts))
                for part in parts:
                    tasks.append((simulate_part, (compiled[i], p, trial, grid.times, grid.seed, part)))
                    keys.append((p.id, trial))
        self._map(inputs, tasks, lambda i, result: chips.add(keys[i], result))

    def _map(self, inputs: Inputs, tasks: list, done: Callable) -> list:
        import multiprocessing

        results: dict[int, object] = {}
        for attempt in range(self.retries + 1):
            pending = [i for i in range(len(tasks)) if i not in results]
            if not pending:
                break
            try:
                with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_set_inputs, initargs=(inputs,)) as pool:
                    futures = {pool.submit(_call, tasks[i][0], tasks[i][1]): i for i in pending}
                    for future in as_completed(futures):
                        i = futures[future]
                        results[i] = future.result()
                        done(i, results[i])
            except BrokenProcessPool:
                if attempt == self.retries:
                    raise SweepError(f"sweep: worker processes died {self.retries + 1} times; "
                                     f"{len(tasks) - len(results)} task(s) not done") from None
        return [results[i] for i in range(len(tasks))]


class _Chips:
    """The parts of each chip as they come; its rows (``emit``) once all its parts are in."""

    def __init__(self, inputs: Inputs, emit: Callable[[list[dict]], None]):
        self.inputs, self.emit = inputs, emit
        self.parts: dict[tuple, int] = {}
        self.got: dict[tuple, list] = {}

    def expect(self, key: tuple, parts: int) -> None:
        self.parts[key], self.got[key] = parts, []

    def add(self, key: tuple, result: dict) -> None:
        self.got[key].append(result)
        if len(self.got[key]) == self.parts[key]:
            self.emit(combine(self.got.pop(key), self.inputs))


_INPUTS: Inputs | None = None


def _set_inputs(inputs: Inputs) -> None:
    global _INPUTS
    _INPUTS = inputs


def _call(fn, args):
    return fn(*args, _INPUTS)


class DaskEngine:
    """A ``dask.distributed`` cluster: ``scheduler`` (``tcp://host:8786``) or a ``LocalCluster``
    of ``workers`` processes with one thread each. The inputs are scattered to every worker
    once; each compiled program is a task result, sent to a worker once whatever the number of
    its chips there; a task whose worker dies runs again elsewhere (``retries``)."""

    def __init__(self, scheduler: str | None = None, workers: int = 2, retries: int = 3):
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise SweepError("the Dask engine needs dask.distributed: pip install 'nmc[sweep]'") from None
        self.scheduler, self.workers, self.retries = scheduler, workers, retries

    def client(self):
        import dask
        from distributed import Client, LocalCluster

        if self.scheduler:
            return Client(self.scheduler), None
        # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc map and
        # unmap every large array: the simulator then runs 1.7x slower (0.61 s a chip against 0.35).
        # Each worker's statistical profiler samples the task thread every 10 ms (GIL and CPU the
        # simulator would use: 0.137 -> 0.131 s a chip with 2 workers on 2 cores).
        environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                   if k != "MALLOC_TRIM_THRESHOLD_"}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ,
                              "distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        return Client(cluster), cluster

    def run(self, grid: Grid, inputs: Inputs, todo: dict[Point, list[int]], emit: Callable[[list[dict]], None]) -> None:
        from distributed import as_completed as dask_completed

        client, cluster = self.client()
        try:
            inputs = dataclasses.replace(inputs, threads=1)   # a task per worker thread
            shared = client.scatter(inputs, broadcast=True)
            threads = sum(client.nthreads().values())
            chips = _Chips(inputs, emit)
            futures, keys = [], {}
            for point, trials in todo.items():
                compiled = client.submit(compile_point, point, shared, key=f"compile-{point.id}",
                                         retries=self.retries)
                parts = sample_parts(inputs.samples, len(trials), threads)
                for trial in trials:
                    chips.expect((point.id, trial), len(parts))
                    for part in parts:
                        future = client.submit(simulate_part, compiled, point, trial, grid.times, grid.seed, part,
                                               shared, key=f"chip-{point.id}-{trial}-{part[0]}", retries=self.retries)
                        futures.append(future)
                        keys[future.key] = (point.id, trial)
            for batch in dask_completed(futures, with_results=True).batches():   # results as they come, in batches
                for future, result in batch:
                    chips.add(keys[future.key], result)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


# ----------------------------------------------------------------------------- results
@dataclass
class Results:
    """The results file, rewritten atomically (a temporary file renamed over it) as rows come."""

    path: Path
    rows: list[dict] = field(default_factory=list)
    every_s: float = 1.0          # rewrite at most this often while rows come (and once at the end)
    _written: float = 0.0

    def __post_init__(self):
        if self.path.suffix not in (".parquet", ".csv"):
            raise SweepError(f"{self.path}: the results file must end in .parquet or .csv")
        pd = _pandas()
        if self.path.exists():
            try:
                frame = pd.read_parquet(self.path) if self.path.suffix == ".parquet" else pd.read_csv(self.path)
            except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
                raise SweepError(f"{self.path}: cannot read the existing results ({type(e).__name__}: {e}); "
                                 "move it away to start afresh") from None
            self.rows = [{k: (None if _missing(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]

    def done(self) -> set[tuple[str, int]]:
        """(point, trial) already computed; a failed point counts for all its chips."""
        return {(r["point"], int(r["trial"])) for r in self.rows if r.get("error") is None} | \
            {(r["point"], -1) for r in self.rows if r.get("error") is not None}

    def add(self, rows: list[dict]) -> None:
        self.rows.extend(rows)
        if time.monotonic() - self._written >= self.every_s:
            self.write()

    def write(self) -> None:
        pd = _pandas()
        frame = pd.DataFrame(self.rows)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            if self.path.suffix == ".parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False)
            os.replace(tmp, self.path)
            self._written = time.monotonic()
        finally:
            if tmp.exists():
                tmp.unlink()


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise SweepError("sweep results need pandas (and pyarrow for .parquet): pip install 'nmc[sweep]'") from None
    return pd


# ----------------------------------------------------------------------------- the sweep
@dataclass
class SweepRun:
    """What a sweep did: the tasks it computed (chips, failed points) and those it skipped."""

    computed: int = 0
    skipped: int = 0
    rows: int = 0


def sweep(model: str | os.PathLike, grid: Grid, feeds: dict, out: str | os.PathLike, *,
          labels: np.ndarray | None = None, calibration: dict | None = None, engine=None,
          progress: Callable[[int, int], None] | None = None) -> SweepRun:
    """Run ``grid`` on ``model`` with ``feeds`` (input name → samples), appending to ``out``."""
    from nmc.compiler import oracle
    from nmc.compiler.frontend.loader import read_model

    proto = read_model(model)
    results = Results(Path(out))
    done = results.done()
    todo: dict[Point, list[int]] = {}
    skipped = 0
    for point in grid.points:
        trials = [t for t in range(grid.trials) if (point.id, t) not in done and (point.id, -1) not in done]
        skipped += grid.trials - len(trials)
        if trials:
            todo[point] = trials
    total = sum(len(t) for t in todo.values())
    run = SweepRun(skipped=skipped)
    if not total:
        return run
    names = [o.name for o in proto.graph.output]
    reference = dict(zip(names, oracle.session(proto).run(names, feeds)))
    inputs = Inputs(proto.SerializeToString(), feeds, labels, reference, calibration)

    def emit(rows: list[dict]) -> None:
        results.add(rows)
        run.computed += 1
        run.rows += len(rows)
        if progress is not None:
            progress(run.computed, total)

    try:
        (engine or LocalEngine()).run(grid, inputs, todo, emit)
    finally:   # whatever stopped the sweep, the rows computed so far are in the file
        if run.computed:
            results.write()
    return run


def engine_for(workers: int | None, scheduler: str | None):
    """The engine a command line asks for: ``--scheduler`` (Dask), ``--workers N`` (a Dask
    ``LocalCluster`` of N), else local processes (one per core)."""
    if scheduler:
        return DaskEngine(scheduler=scheduler)
    if workers is not None:
        return DaskEngine(workers=workers)
    return LocalEngine(workers=min(os.cpu_count() or 1, 4))


def points_of(rows: Iterable[dict]) -> list[str]:
    return sorted({r["point"] for r in rows})
