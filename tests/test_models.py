"""Model-level tests on the ``ideal`` target: whole example models, compiled by nmc and run by
the simulator, against onnxruntime (rung 1 of the correctness ladder)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from nmc.compiler import compile_model
from helpers import run_ort
from nmc.isa import load_program, save_program
from nmc.runtime import execute

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOLERANCE = 1e-4
MAX_RESNET18_INSTRUCTIONS = 2000

# model file → the key of its input in digits_test.npz
DIGITS_MODELS = {
    "digits_mlp.onnx": "x_flat",
    "digits_cnn.onnx": "x_image",
    "tiny_transformer.onnx": "x_tokens",
}


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|actual - expected| / max|expected| over one output (the measure of ``nmc verify``)."""
    scale = float(np.max(np.abs(expected)))
    return float(np.max(np.abs(actual - expected))) / (scale if scale > 0 else 1.0)


def _resnet18() -> onnx.ModelProto:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from make_resnet18 import build_resnet18
    finally:
        sys.path.remove(str(EXAMPLES))
    return build_resnet18(seed=0)


@pytest.fixture(scope="module")
def digits():
    return np.load(EXAMPLES / "digits_test.npz")


@pytest.fixture(scope="module", params=sorted(DIGITS_MODELS))
def case(request, digits):
    """(model, compiled program, feeds over the whole test split, onnxruntime outputs)."""
    model = onnx.load(EXAMPLES / request.param)
    feeds = {model.graph.input[0].name: digits[DIGITS_MODELS[request.param]]}
    return model, compile_model(model, target="ideal").program, feeds, run_ort(model, feeds)


def _check_outputs(model, outputs: dict[str, np.ndarray], expected: list[np.ndarray]) -> None:
    for out, ref in zip(model.graph.output, expected):
        got = outputs[out.name]
        assert got.shape == ref.shape, out.name
        assert relative_error(got, ref) < TOLERANCE, (out.name, relative_error(got, ref))
        np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1), err_msg=f"top-1 of {out.name}")


def test_digits_model_matches_onnxruntime(case, digits):
    model, program, feeds, expected = case
    _check_outputs(model, execute(program, feeds), expected)
    accuracy = float(np.mean(expected[0].argmax(-1) == digits["y"]))
    assert accuracy > 0.9, f"the example model itself is poor ({accuracy:.3f}); regenerate it"


def test_digits_program_save_load_round_trip(case, tmp_path):
    model, program, feeds, _ = case
    path = tmp_path / "model.nmc"
    save_program(program, path)
    loaded, _ = load_program(path)
    assert loaded.instruction_count() == program.instruction_count()
    before, after = execute(program, feeds), execute(loaded, feeds)
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_resnet18_matches_onnxruntime():
    """Program size grows with layers, not pixels: ResNet-18 at 224×224 stays within a few
    thousand instructions, and a batch of 2 matches onnxruntime (about 3 s in all)."""
    model = _resnet18()
    program = compile_model(model, target="ideal").program
    assert program.instruction_count() <= MAX_RESNET18_INSTRUCTIONS
    feeds = {"input": np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)}
    _check_outputs(model, execute(program, feeds), run_ort(model, feeds))
