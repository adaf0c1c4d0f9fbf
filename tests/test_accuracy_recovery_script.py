"""examples/accuracy_recovery.py keeps working: its reduced run (``--quick``: the CNN on pcm,
2 chips, 60 images, 1 s and 1 day) has every configuration, and the figures say what the
techniques claim to do and cost."""
from __future__ import annotations

import pytest
from helpers import load_example

example = load_example("accuracy_recovery")


@pytest.fixture(scope="module")
def figures():
    return example.run(chips=2, quick=True)


@pytest.fixture(scope="module")
def rows(figures):
    return figures["results"]["CNN"]["pcm"]


def test_docstring_says_what_and_how_long():
    assert "python examples/accuracy_recovery.py" in example.__doc__ and " s (" in example.__doc__
    assert "--quick" in example.__doc__


def test_every_configuration_with_accuracies_in_range(figures, rows):
    assert list(rows) == list(example.CONFIGURATIONS) and figures["times"] == ["1s", "1d"]
    assert 0.0 <= figures["float"]["CNN"] <= 1.0
    for r in rows.values():
        assert set(r["accuracy"]) == {"1s", "1d"}
        for spread in r["accuracy"].values():
            assert 0.0 <= spread["mean"] <= 1.0 and spread["n"] == 2 and spread["std"] >= 0.0


def test_all_combined_not_worse_than_none_a_day_after_programming(rows):
    assert rows["all combined"]["accuracy"]["1d"]["mean"] >= rows["none"]["accuracy"]["1d"]["mean"] - 0.05


def test_costs(rows):
    none, verified, copies = rows["none"], rows["write-verify"], rows[f"copies {example.COPIES}"]
    assert none["pulses_per_device"] == 1.0 and verified["pulses_per_device"] > 1.0
    assert verified["programming_ms"] > none["programming_ms"]
    assert copies["programming_uj"] > none["programming_uj"] and copies["crossbars"] >= none["crossbars"]
    assert none["inference_nj"] > 0 and rows["column calibration"]["programming_uj"] > none["programming_uj"]


def test_main_quick_prints_the_table_and_writes_only_when_asked(figures, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(example, "run", lambda chips, quick: figures)  # the quick run above, not again
    example.main(["--quick"])
    out = capsys.readouterr().out
    assert "| all combined |" in out and "accuracy 1 day" in out and "wrote" not in out
    doc = tmp_path / "recovery.md"
    example.main(["--quick", "-o", str(doc)])
    text = doc.read_text()
    assert "python examples/accuracy_recovery.py --quick" in text and "## Reading the table" in text
    assert "seed i" in text and "### CNN on pcm" in text
