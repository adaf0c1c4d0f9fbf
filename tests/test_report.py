"""``nmc report`` and the mapping table: the digits CNN on every preset renders in HTML, Markdown
and JSON with the figures ``runtime.timing.estimate`` returns; programs without mapping.json
still report; runs on inputs give accuracy and spread; a real headless browser shows the page."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from nmc.backends.target import load_target, parse_target
from nmc.compiler.cli import main
from nmc.compiler.reports import mapping_table
from nmc.compiler.reports.render import count, pct, si
from nmc.isa import load_program, save_program
from nmc.runtime.timing import estimate

REPO = Path(__file__).resolve().parent.parent
CNN = REPO / "examples" / "digits_cnn.onnx"
DATA = REPO / "examples" / "digits_test.npz"
TARGETS = ("ideal", "sram-digital", "sram-analog", "pcm", "rram")
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict[str, Path]:
    """The digits CNN compiled by ``nmc compile`` for every preset."""
    out = tmp_path_factory.mktemp("programs")
    paths = {}
    for target in TARGETS:
        paths[target] = out / f"digits_cnn_{target}.nmc"
        assert main(["compile", str(CNN), "--target", target, "-o", str(paths[target])]) == 0
    return paths


def _stats(path: Path):
    program, attachments = load_program(path)
    target = parse_target(attachments["target.toml"])
    return program, target, estimate(program, target)


def _report(path: Path, fmt: str, out: Path, *extra: str) -> str:
    assert main(["report", str(path), "--format", fmt, "-o", str(out), *extra]) == 0
    return out.read_text()


@pytest.mark.parametrize("target", TARGETS)
def test_report_figures_equal_the_runtime_stats(programs, target, tmp_path):
    path = programs[target]
    program, tgt, stats = _stats(path)
    data = json.loads(_report(path, "json", tmp_path / "r.json"))
    s = data["summary"]
    assert s["target"] == target
    assert s["latency_cycles"] == stats.latency_cycles
    assert s["latency_s"] == pytest.approx(stats.latency_s, rel=1e-12)
    assert s["throughput_per_s"] == pytest.approx(stats.throughput_per_s, rel=1e-12)
    assert s["energy_per_inference_pj"] == pytest.approx(stats.energy_total_pj, rel=1e-12)
    assert s["tops_per_w"] == pytest.approx(stats.tops_per_w(), rel=1e-12)
    assert s["tops"] == pytest.approx(stats.tops(), rel=1e-12)
    assert s["crossbar_utilization"] == pytest.approx(stats.crossbar_utilization, rel=1e-12)
    assert s["macs"] == stats.macs and s["analog_macs"] == stats.analog_macs
    assert s["crossbars_used"] == len({(t.core, t.xbar) for t in program.tiles.values()})
    assert s["crossbars_available"] == (tgt.crossbar.crossbars if tgt.crossbar else 0)
    assert data["energy_by_component_pj"] == pytest.approx(stats.energy_pj)
    assert data["stats"] == json.loads(stats.to_json())
    # per layer: every layer once, with the runtime's energy and cycles; they add up to the total
    assert [row["name"] for row in data["layers"]] == [layer.name for layer in program.layers]
    for row in data["layers"]:
        assert row["energy_pj"] == pytest.approx(stats.energy_by_layer_pj.get(row["name"], 0.0))
        assert row["cycles"] == pytest.approx(stats.cycles_by_layer.get(row["name"], 0.0))
    total = sum(row["energy_pj"] for row in data["layers"]) + data["program_io"]["energy_pj"]
    assert total == pytest.approx(stats.energy_total_pj, rel=1e-9)
    crossbar_rows = [row for row in data["layers"] if row["unit"] == "crossbar"]
    assert sum(row["tiles"] for row in crossbar_rows) == len(program.tiles)
    if tgt.crossbar is None:
        assert not crossbar_rows and s["analog_mac_fraction"] == 0
    else:
        assert [row["op"] for row in crossbar_rows] == ["Conv", "Conv", "Gemm"]
        assert all(row["reason"] and row["weight_bits"] == tgt.crossbar.weight_bits for row in crossbar_rows)
        assert all((row["adc_bits"] is not None) == tgt.crossbar.analog for row in crossbar_rows)
        used = sum(g["arrays_used"] for g in data["floorplan"]["groups"])
        assert used == s["crossbars_used"]

    html = _report(path, "html", tmp_path / "r.html")
    md = _report(path, "md", tmp_path / "r.md")
    for text in (html, md):
        assert si(stats.latency_s, "s") in text
        assert si(stats.energy_total_pj * 1e-12, "J") in text
        assert f"{stats.tops_per_w():.3g} TOPS/W" in text
        assert pct(stats.crossbar_utilization, 2) in text
        for row in data["layers"]:
            assert row["name"] in text
    assert f"{count(s['crossbars_used'])} / {count(s['crossbars_available'])}" in html or tgt.crossbar is None
    assert html.count("<svg") == 3  # floor plan and two charts


def test_html_is_self_contained(programs, tmp_path):
    html = _report(programs["pcm"], "html", tmp_path / "r.html")
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"(src|href)=", html)
    assert not [u for u in re.findall(r"https?://[^\s\"']+", html) if u != "http://www.w3.org/2000/svg"]


def test_compile_stores_the_mapping_table_and_prints_the_headline(tmp_path, capsys):
    out = tmp_path / "cnn.nmc"
    assert main(["compile", str(CNN), "--target", "rram", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    program, attachments = load_program(out)
    assert set(attachments) == {"target.toml", mapping_table.ATTACHMENT}
    table = json.loads(attachments[mapping_table.ATTACHMENT])
    assert [layer["name"] for layer in table["layers"]] == [layer.name for layer in program.layers]
    first = table["layers"][0]
    assert first["unit"] == "crossbar" and "rram" in first["reason"]
    assert first["input_range_source"] == "dynamic" and first["weight_bits"] == load_target("rram").crossbar.weight_bits
    tile = first["tiles"][0]
    assert (tile["core"], tile["xbar"], tile["rows"]) == (1, 0, 9) and tile["adc_range_source"]
    assert program.tiles[tile["tile"]].adc_range == tile["adc_range"]
    stats = estimate(program, parse_target(attachments["target.toml"]))
    assert "3 of 1,024 crossbars used" in printed
    assert f"{stats.tops_per_w():.3g} TOPS/W" in printed and "% of 83,264 MACs analog" in printed


def test_a_program_without_mapping_json_still_reports(programs, tmp_path):
    """Older files: the table the program implies (units, tiles) equals the compiler's."""
    program, attachments = load_program(programs["pcm"])
    old = tmp_path / "old.nmc"
    save_program(program, old, {"target.toml": attachments["target.toml"]})
    new = json.loads(_report(programs["pcm"], "json", tmp_path / "new.json"))
    data = json.loads(_report(old, "json", tmp_path / "old.json"))
    assert "program alone" in data["mapping_source"]
    assert data["summary"] == new["summary"]
    for a, b in zip(data["layers"], new["layers"]):
        assert (a["unit"], a["tiles"], a["crossbars"], a["cells_used"], a["energy_pj"]) == \
               (b["unit"], b["tiles"], b["crossbars"], b["cells_used"], b["energy_pj"])
        assert a["adc_range_max"] == b["adc_range_max"]
    assert "not recorded" in _report(old, "html", tmp_path / "old.html")


def test_report_with_inputs_gives_accuracy_and_spread(programs, tmp_path):
    data = np.load(DATA)
    np.save(tmp_path / "x.npy", data["x_image"][:48])
    np.save(tmp_path / "y.npy", data["y"][:48])
    common = ["--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--model", str(CNN)]
    noisy = json.loads(_report(programs["pcm"], "json", tmp_path / "pcm.json", *common,
                               "--trials", "2", "--times", "0,1d"))["evaluation"]
    assert (noisy["samples"], noisy["trials"]) == (48, 2)
    assert [c["time"] for c in noisy["conditions"]] == ["0", "1d"]
    assert noisy["conditions"][1]["time_s"] == 86400.0
    logits = noisy["conditions"][0]["outputs"][0]
    assert logits["accuracy"]["n"] == 2 and 0.5 < logits["accuracy"]["mean"] <= 1.0
    assert logits["rel_error"]["min"] > 0 and logits["top1_agreement"]["n"] == 2
    exact = json.loads(_report(programs["ideal"], "json", tmp_path / "ideal.json", *common))["evaluation"]
    assert exact["trials"] == 1 and [c["time"] for c in exact["conditions"]] == ["0"]
    out = exact["conditions"][0]["outputs"][0]
    assert out["rel_error"]["max"] < 1e-4 and out["accuracy"]["mean"] == out["reference_accuracy"]
    html = _report(programs["pcm"], "html", tmp_path / "pcm.html", *common, "--trials", "2", "--times", "1h")
    assert "Accuracy and error" in html and "1h" in html


@pytest.mark.parametrize("argv, message", [
    (["--labels", "y.npy"], "--labels needs --input"),
    (["--format", "pdf"], "invalid choice"),
    (["-o", "r.pdf"], "unknown report format 'pdf'"),
    (["--input", "x.npy"], "needs --labels"),
])
def test_report_errors(programs, tmp_path, capsys, argv, message):
    np.save(tmp_path / "x.npy", np.load(DATA)["x_image"][:4])
    argv = [a if not a.endswith((".npy", ".pdf")) else str(tmp_path / a) for a in argv]
    assert main(["report", str(programs["ideal"]), *argv]) == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real browser
def _png_rows(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the raw (filtered) scanlines of a PNG: enough to tell a blank image."""
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(blob):
        length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        body = blob[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            channels = {2: 3, 6: 4, 0: 1, 4: 2}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * channels * depth // 8
    return width, height, [raw[i * stride:(i + 1) * stride] for i in range(height)]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no headless browser (/usr/bin/chromium) installed")
def test_report_in_a_headless_browser(programs, tmp_path):
    page = tmp_path / "report.html"
    _report(programs["pcm"], "html", page)
    shot = tmp_path / "shot.png"
    env = dict(os.environ, HOME=str(tmp_path))
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1280,1600", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    width, height, rows = _png_rows(shot)
    assert (width, height) == (1280, 1600)
    assert len(set(rows)) > 200, "the screenshot is (nearly) blank"
    assert shot.stat().st_size > 20_000
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_tree_ensemble_report_on_cam(tmp_path):
    """A forest on the analog CAM: rows, arrays, utilisation and per-decision figures."""
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from skl2onnx import to_onnx

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(x, y)
    model = to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}},
                    target_opset={"": 17, "ai.onnx.ml": 3})
    (tmp_path / "rf.onnx").write_bytes(model.SerializeToString())
    path = tmp_path / "rf.nmc"
    assert main(["compile", str(tmp_path / "rf.onnx"), "--target", "acam", "-o", str(path)]) == 0
    program, target, stats = _stats(path)
    data = json.loads(_report(path, "json", tmp_path / "r.json"))
    s = data["summary"]
    assert (s["latency_cycles"], s["energy_per_inference_pj"]) == (stats.latency_cycles, stats.energy_total_pj)
    assert s["throughput_per_s"] == stats.throughput_per_s
    cam_layer = next(row for row in data["layers"] if row["unit"] == "cam")
    cam = cam_layer["records"]["cam"]
    assert cam_layer["rows_used"] == cam["rows"] >= cam["paths"] > 0
    assert cam_layer["crossbars"] == cam["arrays"] == s["arrays_by_kind"]["cam"]["used"]
    assert 0 < cam_layer["utilization"] == s["arrays_by_kind"]["cam"]["utilization"] <= 1
    html = _report(path, "html", tmp_path / "r.html")
    assert f"{cam['rows']} rows for {cam['paths']} root-to-leaf paths" in html
    assert "no MACs" in html
