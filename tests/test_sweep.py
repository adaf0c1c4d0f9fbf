"""nmc sweep: a grid's rows are the same whatever the engine and the number of workers; a failed
design point is a row with its error; a worker that dies has its tasks rerun; an interrupted
sweep keeps what it computed and a rerun computes only the rest; the report draws the results."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from nmc.compiler.sweep import DaskEngine, LocalEngine, SweepError, load_grid, sweep  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODEL = EXAMPLES / "digits_cnn.onnx"
GRID = """
targets = ["pcm", "rram"]
times = ["1h", "1d"]
trials = 3
seed = 5
[fields]
"cores.crossbar.adc_bits" = [6, 8]
"""


@pytest.fixture(scope="module")
def data():
    d = np.load(EXAMPLES / "digits_test.npz")
    return {"input": d["x_image"][:40]}, d["y"][:40]


def _grid(tmp_path, text=GRID):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return load_grid(path)


def _frame(path):
    frame = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)
    return frame.sort_values(["point", "trial", "time_s"], na_position="first").reset_index(drop=True)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, data):
    """The grid of the issue (2 targets × 2 ADC widths × 2 times × 3 chips) in this process."""
    tmp = tmp_path_factory.mktemp("sweep")
    grid = _grid(tmp)
    out = tmp / "embedded.parquet"
    run = sweep(MODEL, grid, data[0], out, labels=data[1], engine=LocalEngine(0))
    assert (run.computed, run.skipped, run.rows) == (12, 0, 24)
    return grid, _frame(out)


def test_the_grid_is_the_cross_product(embedded):
    grid, frame = embedded
    assert len(grid.points) == 4 and grid.times == (3600.0, 86400.0) and grid.trials == 3
    assert len(frame) == 4 * 2 * 3 and frame["error"].isna().all()
    assert sorted(set(frame["seed"])) == [5, 6, 7]                # chip i: seed + i, at every time
    assert set(frame["target"]) == {"pcm", "rram"} and set(frame["set:cores.crossbar.adc_bits"]) == {6, 8}
    assert frame["accuracy"].between(0, 1).all() and (frame["energy_per_inference_j"] > 0).all()
    narrow = frame[(frame["target"] == "pcm") & (frame["set:cores.crossbar.adc_bits"] == 6)]
    wide = frame[(frame["target"] == "pcm") & (frame["set:cores.crossbar.adc_bits"] == 8)]
    assert narrow["energy_per_inference_j"].iloc[0] < wide["energy_per_inference_j"].iloc[0]


def test_a_dask_local_cluster_gives_the_embedded_rows(tmp_path, data, embedded):
    grid, expected = embedded
    out = tmp_path / "dask.parquet"
    run = sweep(MODEL, grid, data[0], out, labels=data[1], engine=DaskEngine(workers=2))
    assert run.computed == 12
    pd.testing.assert_frame_equal(_frame(out), expected)


def test_local_processes_give_the_embedded_rows(tmp_path, data, embedded):
    grid, expected = embedded
    out = tmp_path / "local.csv"
    sweep(MODEL, grid, data[0], out, labels=data[1], engine=LocalEngine(2))
    got = _frame(out)
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        if expected[column].dtype.kind == "f":
            np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-12)
        else:
            assert list(got[column].astype(str)) == list(expected[column].astype(str))


def test_an_interrupted_sweep_keeps_its_rows_and_the_rerun_computes_only_the_rest(tmp_path, data, embedded):
    grid, expected = embedded
    out = tmp_path / "resumed.parquet"

    def stop_after_five(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(MODEL, grid, data[0], out, labels=data[1], engine=LocalEngine(0), progress=stop_after_five)
    assert len(_frame(out)) == 5 * 2 and not list(tmp_path.glob(".*.tmp"))
    run = sweep(MODEL, grid, data[0], out, labels=data[1], engine=LocalEngine(0))
    assert (run.computed, run.skipped) == (12 - 5, 5)
    pd.testing.assert_frame_equal(_frame(out), expected)
    again = sweep(MODEL, grid, data[0], out, labels=data[1], engine=LocalEngine(0))
    assert (again.computed, again.skipped) == (0, 12)


def test_a_failed_point_is_a_row_with_its_error(tmp_path, data):
    grid = _grid(tmp_path, 'targets = ["pcm"]\ntrials = 2\n[fields]\n"cores.crossbar.adc_bits" = [0, 8]\n')
    out = tmp_path / "failed.parquet"
    run = sweep(MODEL, grid, data[0], out, labels=data[1], engine=LocalEngine(0))
    frame = _frame(out)
    bad = frame[frame["set:cores.crossbar.adc_bits"] == 0]
    assert len(bad) == 2 and bad["error"].str.contains("cores\\[1\\].adc_bits = 0 must be positive").all()
    assert frame[frame["set:cores.crossbar.adc_bits"] == 8]["error"].isna().all()
    assert run.computed == 4
    rerun = sweep(MODEL, grid, data[0], out, labels=data[1], engine=LocalEngine(0))
    assert rerun.computed == 0                       # a failed point is not tried again


def _engine_with(plugin, monkeypatch) -> DaskEngine:
    """A 2-worker LocalCluster engine whose workers run ``plugin`` (registered at start)."""
    engine = DaskEngine(workers=2)
    real_client = engine.client

    def client():
        c, cluster = real_client()
        c.register_plugin(plugin, name=type(plugin).__name__)
        return c, cluster

    monkeypatch.setattr(engine, "client", client)
    return engine


def _crash_once_plugin(marker: str):
    from distributed.diagnostics.plugin import WorkerPlugin

    class CrashOnce(WorkerPlugin):
        """The first chip task to run on any worker exits its process (a marker file says it
        happened); the nanny starts a new worker and the scheduler runs the task again."""

        def setup(self, worker):
            import nmc.compiler.sweep as module

            original = module.simulate_part

            def crashing(*args, **kwargs):
                if not os.path.exists(marker):
                    Path(marker).write_text("crashed")
                    os._exit(1)
                return original(*args, **kwargs)

            module.simulate_part = crashing

    return CrashOnce()


def test_a_worker_that_dies_mid_sweep_has_its_task_rerun(tmp_path, data, embedded, monkeypatch):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    grid, expected = embedded
    marker = tmp_path / "crashed"
    engine = _engine_with(_crash_once_plugin(str(marker)), monkeypatch)
    out = tmp_path / "crash.parquet"
    run = sweep(MODEL, grid, data[0], out, labels=data[1], engine=engine)
    assert marker.exists() and run.computed == 12
    pd.testing.assert_frame_equal(_frame(out), expected)


def _record_parts_plugin(log: str):
    from distributed.diagnostics.plugin import WorkerPlugin

    class RecordParts(WorkerPlugin):
        """Each chip task appends the part of the inputs it ran to ``log``."""

        def setup(self, worker):
            import nmc.compiler.sweep as module

            original = module.simulate_part

            def recording(compiled, point, trial, times, seed, part, inputs):
                with open(log, "a") as f:
                    f.write(f"{point.id} {trial} {part[0]} {part[1]}\n")
                return original(compiled, point, trial, times, seed, part, inputs)

            module.simulate_part = recording

    return RecordParts()


def test_sample_parts_cut_the_inputs_only_when_chips_are_fewer_than_threads():
    from nmc.compiler.sweep import MIN_PART, sample_parts

    assert sample_parts(359, 3, 2) == [(0, 359)]                     # enough chips to keep 2 threads busy
    assert sample_parts(359, 1, 2) == [(0, 179), (179, 359)]
    assert sample_parts(359, 1, 8) == [(0, 71), (71, 143), (143, 215), (215, 287), (287, 359)]   # ≥ MIN_PART each
    assert sample_parts(MIN_PART * 2 - 1, 1, 4) == [(0, MIN_PART * 2 - 1)]
    assert sample_parts(1000, 3, 8) == [(0, 333), (333, 666), (666, 1000)]


def test_one_chip_per_point_spreads_its_inputs_over_the_workers_with_the_same_rows(tmp_path, data, monkeypatch):
    """A grid of one chip per point on 2 workers: each chip's 40 inputs run as two parts of 20
    (each programs the chip of its seed and draws its samples' own noise), on the workers, and
    the rows equal the in-process engine's, which runs them whole."""
    import cloudpickle

    import nmc.compiler.sweep as module

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    grid = _grid(tmp_path, 'targets = ["pcm", "rram"]\ntimes = ["1h", "1d"]\ntrials = 1\nseed = 2\n')
    whole = tmp_path / "whole.parquet"
    sweep(MODEL, grid, data[0], whole, labels=data[1], engine=LocalEngine(0))
    monkeypatch.setattr(module, "MIN_PART", 8)
    log = tmp_path / "parts.log"
    engine = _engine_with(_record_parts_plugin(str(log)), monkeypatch)
    out = tmp_path / "parts.parquet"
    run = sweep(MODEL, grid, data[0], out, labels=data[1], engine=engine)
    assert run.computed == 2
    assert sorted(line.split()[2:] for line in log.read_text().splitlines()) == [["0", "20"]] * 2 + [["20", "40"]] * 2
    pd.testing.assert_frame_equal(_frame(out), _frame(whole))
    assert _frame(out)["accuracy"].between(0.5, 1).all()


@pytest.mark.parametrize("text,message", [
    ("targets = []\n", "targets must be a non-empty list"),
    ('targets = ["pcm"]\ntrial = 3\n', "unknown key\\(s\\) trial"),
    ('targets = ["pcm"]\ntrials = 0\n', "trials = 0 must be an integer of at least 1"),
    ('targets = ["pcm"]\n[fields]\n"device.drift" = true\n', "fields.device.drift must be a non-empty list"),
    ('targets = ["pcm"\n', "not valid TOML"),
])
def test_grid_errors_name_the_problem(tmp_path, text, message):
    with pytest.raises(SweepError, match=message):
        _grid(tmp_path, text)


def test_the_command_line_sweeps_and_reports(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('targets = ["pcm"]\ntimes = [0, "1d"]\ntrials = 2\n[fields]\n"cores.crossbar.adc_bits" = [6, 8]\n')
    out = tmp_path / "results.csv"
    cli = [sys.executable, "-m", "nmc.compiler.cli"]
    done = subprocess.run(cli + ["sweep", str(MODEL), "--grid", str(grid), "-i", f"{EXAMPLES / 'digits_test.npz'}:x_image",
                                 "--labels", f"{EXAMPLES / 'digits_test.npz'}:y", "-o", str(out), "-q"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "computed 4 chip(s) (8 rows), skipped 0" in done.stdout
    assert len(pd.read_csv(out)) == 8
    html = tmp_path / "sweep.html"
    report = subprocess.run(cli + ["report", str(out), "-o", str(html)], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    page = html.read_text()
    assert page.count("<circle") == 2 and "Pareto" in page and page.count("<polyline") >= 2
    bad = subprocess.run(cli + ["sweep", str(MODEL), "--grid", str(tmp_path / "none.toml"), "-i",
                                f"{EXAMPLES / 'digits_test.npz'}:x_image", "-o", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such grid file" in bad.stderr and "Traceback" not in bad.stderr
