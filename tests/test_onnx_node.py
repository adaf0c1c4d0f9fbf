"""ONNX's own node test suite as an outside oracle: every node test of an operator nmc supports
runs through ``compiler.conformance.NmcBackend`` (compile for ``ideal``, run on the simulator).

Also run: function-expanded node tests of other operators whose bodies use supported ops only,
and the small PyTorch exports the onnx wheel ships. The cases come from ``BackendTest``
itself: onnx >= 1.23 builds node cases in memory from ``onnx.backend.test.case.node`` (the
generator behind the old data files), older wheels ship them as files; neither needs a network
or a data cache. Each exclusion below names its reason; they are limits of nmc, not bugs.
"""
from __future__ import annotations

import os
import unittest
import warnings

import onnx.backend.test
from onnx.backend.test.loader import load_model_tests

from nmc.compiler.conformance import NmcBackend
from nmc.compiler.frontend import supported_ops

# Test-name prefixes of each supported operator's node tests (ONNX names most tests after the
# operator in snake case; a few differ).
NODE_TESTS = {
    "Abs": "abs", "Add": "add", "ArgMax": "argmax", "AveragePool": "averagepool", "BatchNormalization": "batchnorm",
    "Cast": "cast", "CastLike": "castlike", "Ceil": "ceil", "Clip": "clip", "Concat": "concat",
    "Conv": "(basic_)?conv", "DequantizeLinear": "dequantizelinear", "Div": "div", "Dropout": "(training_)?dropout", "Erf": "erf", "Exp": "exp",
    "Flatten": "flatten", "Floor": "floor", "Gelu": "gelu", "Gemm": "gemm",
    "GlobalAveragePool": "globalaveragepool", "GlobalMaxPool": "globalmaxpool", "Identity": "identity",
    "LayerNormalization": "layer_normalization", "LeakyRelu": "leakyrelu", "Log": "log(?!_softmax)",
    "MatMul": "matmul", "Max": "max", "MaxPool": "maxpool", "Mean": "mean", "Min": "min", "Mul": "mul",
    "Neg": "neg", "Pad": "(constant|edge|reflect|wrap)_pad", "Pow": "pow", "QuantizeLinear": "quantizelinear",
    "Reciprocal": "reciprocal",
    "ReduceMax": "reduce_max", "ReduceMean": "reduce_mean", "ReduceMin": "reduce_min",
    "ReduceSum": "reduce_sum(?!_square)", "Relu": "relu", "Reshape": "reshape", "Sigmoid": "sigmoid",
    "Slice": "slice", "Softmax": "softmax", "Split": "split(?!_to_sequence)", "Sqrt": "sqrt",
    "Squeeze": "squeeze", "Sub": "sub", "Sum": "sum", "Tanh": "tanh", "Transpose": "transpose",
    "Unsqueeze": "unsqueeze",
    # ai.onnx.ml: ONNX ships no node tests for these but TreeEnsemble's (excluded below);
    # tests/test_trees.py checks them against onnxruntime instead
    "TreeEnsembleClassifier": "ai_onnx_ml_tree_ensemble_classifier", "TreeEnsembleRegressor":
    "ai_onnx_ml_tree_ensemble_regressor", "TreeEnsemble": "ai_onnx_ml_tree_ensemble(?!_classifier|_regressor)",
    "Scaler": "ai_onnx_ml_scaler", "ZipMap": "ai_onnx_ml_zipmap",
}

_INTEGERS = "u?int(2|4|8|16|32|64)"
_FP8 = "float(4e2m1|8e4m3fnuz|8e4m3fn|8e5m2fnuz|8e5m2|8e8m0)"

EXCLUDED = [
    # integer tensors: nmc computes float32 only
    rf"^test_(add|sub|mul|div|max|min)_{_INTEGERS}",
    r"^test_div_int32_trunc",
    r"^test_pow_types_(int|float32_u?int)",
    r"^test_clip_default_int8",
    r"^test_maxpool_2d_uint8",
    r"^test_(edge|reflect|wrap)_pad",  # int32 data (and edge/reflect/wrap pad modes are not supported)
    # boolean tensors: nmc computes float32 only
    r"^test_reduce_m(ax|in)_(bool_inputs|empty_set_bool)",
    # 2/4/8-bit and bfloat16 element types: not representable in nmc's float32 ports
    rf"(?i)^test_cast(like)?_(no_saturate_|e8m0_)?\w*({_FP8}|bfloat16|u?int[24])",
    # QuantizeLinear's integer output as a graph output: nmc's ports are float32 (the Q→DQ pairs of
    # QDQ models are supported and tested in test_qdq.py)
    r"^test_quantizelinear",
    # an int64 output: the Indices of MaxPool
    r"^test_maxpool_with_argmax",
    # a bool output: the mask of Dropout
    r"^test_(training_)?dropout\w*_mask",
    # training mode: random Dropout, BatchNormalization on batch statistics
    r"^test_training_dropout(_default)?_cpu$",
    r"^test_batchnorm_\w*training_mode",
    # optional and sequence types: nmc's ports are tensors
    r"^test_identity_(opt|sequence)",
    # expanded function bodies with ops nmc does not support (Less, Where: boolean tensors)
    r"^test_clip_(?!default_inbounds)\w*expanded",
    r"^test_leakyrelu\w*_expanded",
    # pad modes other than constant (edge, reflect) are not supported
    r"^test_(ReplicationPad2d|ReflectionPad2d|operator_pad)_",
    # double inputs holding uninitialised memory (values beyond float32 range): nmc computes float32
    r"^test_operator_(add_broadcast|add_size1_(singleton|right)_broadcast|addconstant)_",
    # an int64 output
    r"^test_operator_non_float_params_",
    # an invalid model: the ONNX checker rejects it (initializer that is not a graph input at IR 3)
    r"^test_operator_addmm_",
    # tree ensembles run on analog CAM cores, and the backend compiles for 'ideal' (none);
    # tests/test_trees.py runs these two cases on 'acam'
    r"^test_ai_onnx_ml_tree_ensemble_(set_membership|single_tree)",
    # zero-size tensors: nmc has no empty tensors
    r"^test_reduce_\w*empty_set",
    r"^test_reshape_allowzero_reordered",
    r"^test_slice_start_out_of_bounds",
    r"^test_split_zero_size_splits",
]


def _all_supported(kind: str) -> list[str]:
    """Tests of ``kind`` whose models use supported operators only: the function-expanded node
    tests of other operators (LogSoftmax as ReduceMax, Sub, Exp, ReduceSum, Log, ...) and the
    small PyTorch exports the wheel ships (Conv1d/2d/3d, pools, Linear ... at old opsets)."""
    usable = set(supported_ops()) | {"Constant"}  # Constant folds at compile time
    names = []
    for case in load_model_tests(kind=kind):
        if kind == "node" and "_expanded" not in case.name:
            continue
        model = case.model or onnx.load(os.path.join(case.model_dir, "model.onnx"))
        if {node.op_type for node in model.graph.node} <= usable:
            names.append(case.name)
    return names


def _selected(test_cases: dict[str, type[unittest.TestCase]]) -> dict[str, type[unittest.TestCase]]:
    """Only the included CPU tests (excluded ones stay, as skips with their reason): the
    thousands of other ONNX tests would only crowd the report."""
    for case in test_cases.values():
        for name in [n for n in vars(case) if n.startswith("test_")]:
            reason = getattr(getattr(case, name), "__unittest_skip_why__", "")
            if reason == "no matched include pattern" or not name.endswith("_cpu"):
                delattr(case, name)
    return {name: case for name, case in test_cases.items() if any(n.startswith("test_") for n in vars(case))}


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the case generators divide by zero on purpose
    backend_test = onnx.backend.test.BackendTest(NmcBackend, __name__)
    _missing = sorted(set(supported_ops()) - set(NODE_TESTS))
    assert not _missing, f"add the node-test name prefixes of {_missing} to NODE_TESTS"
    for op in supported_ops():
        backend_test.include(rf"^test_{NODE_TESTS[op]}_")
    for kind in ("node", "pytorch-converted", "pytorch-operator"):
        for name in _all_supported(kind):
            backend_test.include(rf"^{name}_cpu$")
    for pattern in EXCLUDED:
        backend_test.exclude(pattern)

_test_cases = _selected(backend_test.test_cases)
# a tripwire: an onnx that ships neither node test files nor in-memory cases must not pass silently
assert len(vars(_test_cases.get("OnnxBackendNodeModelTest", object))) > 300, \
    "onnx.backend.test found (almost) no node tests in this onnx installation"
globals().update(_test_cases)
