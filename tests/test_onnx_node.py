"""ONNX's own node test suite as an outside oracle: every node test of an operator nmc supports
runs through ``compiler.conformance.NmcBackend`` (compile for ``ideal``, run on the simulator).

Also run: function-expanded node tests of other operators whose bodies use supported ops only,
and the small PyTorch exports the onnx wheel ships. The cases come from ``BackendTest``
itself: onnx >= 1.23 builds node cases in memory from ``onnx.backend.test.case.node`` (the
generator behind the old data files), older wheels ship them as files; neither needs a network
or a data cache. Each exclusion below names its reason; they are limits of nmc, not bugs.
A test passes only if the simulator computed an output from a program input: the backend binds
parameters (never data) as constants, and a model that folds away at compile time is a skip.
"""
from __future__ import annotations

import os
import unittest
import warnings

import numpy as np
import onnx.backend.test
import pytest
from onnx.backend.test.loader import load_model_tests

from nmc.compiler.conformance import PARAMETERS, NmcBackend, NothingComputed
from nmc.compiler.errors import CompileError, NotConstantError
from nmc.compiler.frontend import supported_ops

# Test-name prefixes of each supported operator's node tests (ONNX names most tests after the
# operator in snake case; a few differ).
NODE_TESTS = {
    "Abs": "abs", "Add": "add", "ArgMax": "argmax", "AveragePool": "averagepool", "BatchNormalization": "batchnorm",
    "Cast": "cast", "CastLike": "castlike", "Ceil": "ceil", "Clip": "clip", "Concat": "concat",
    "Conv": "(basic_)?conv", "DequantizeLinear": "dequantizelinear", "Div": "div", "Dropout": "(training_)?dropout", "Erf": "erf", "Exp": "exp",
    "Flatten": "flatten", "Floor": "floor", "Gelu": "gelu", "Gemm": "gemm",
    "GlobalAveragePool": "globalaveragepool", "GlobalMaxPool": "globalmaxpool", "Identity": "identity", "IsNaN": "isnan",
    "LayerNormalization": "layer_normalization", "LeakyRelu": "leakyrelu", "Log": "log(?!_softmax)",
    "MatMul": "matmul", "Max": "max", "MaxPool": "maxpool", "Mean": "mean", "Min": "min", "Mul": "mul",
    "Neg": "neg", "Pad": "(constant|edge|reflect|wrap)_pad", "Pow": "pow", "QuantizeLinear": "quantizelinear",
    "Reciprocal": "reciprocal",
    "ReduceMax": "reduce_max", "ReduceMean": "reduce_mean", "ReduceMin": "reduce_min",
    "ReduceSum": "reduce_sum(?!_square)", "Relu": "relu", "Reshape": "reshape", "Sigmoid": "sigmoid",
    "Slice": "slice", "Softmax": "softmax", "Split": "split(?!_to_sequence)", "Sqrt": "sqrt",
    "Squeeze": "squeeze", "Sub": "sub", "Sum": "sum", "Tanh": "tanh", "Transpose": "transpose",
    "Unsqueeze": "unsqueeze", "LSTM": "lstm", "GRU": "gru", "RNN": "(simple_)?rnn",
    "ConvTranspose": "convtranspose", "CumSum": "cumsum", "Einsum": "einsum", "Elu": "elu", "Expand": "expand",
    "GroupNormalization": "group_normalization", "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish",
    "InstanceNormalization": "instancenorm", "LRN": "lrn", "LogSoftmax": "logsoftmax", "Mish": "mish",
    "PRelu": "prelu", "ReduceL1": "reduce_l1", "ReduceL2": "reduce_l2", "ReduceLogSum": "reduce_log_sum(?!_exp)",
    "ReduceLogSumExp": "reduce_log_sum_exp", "ReduceSumSquare": "reduce_sum_square", "Resize": "resize",
    "Selu": "selu", "Sign": "sign", "Softplus": "softplus", "Tile": "tile", "Upsample": "upsample",
    # index and mask tensors (tests/test_integer_tensors.py)
    "Gather": "gather(?!_elements|nd)", "GatherElements": "gather_elements", "GatherND": "gathernd",
    "ScatterElements": "scatter_elements", "Scatter": "scatter_(with|without)_axis", "ScatterND": "scatternd",
    "Equal": "equal", "Less": "less(?!_equal)", "LessOrEqual": "less_equal",
    "Greater": "greater(?!_equal)", "GreaterOrEqual": "greater_equal", "Not": "not", "And": "and([234]d)?",
    "Or": "or([234]d)?", "Xor": "xor([234]d)?", "Where": "where", "Mod": "mod",
    "ConstantOfShape": "constantofshape", "Range": "range",
    # ai.onnx.ml: ONNX ships no node tests for these but TreeEnsemble's (excluded below);
    # tests/test_trees.py checks them against onnxruntime instead
    "TreeEnsembleClassifier": "ai_onnx_ml_tree_ensemble_classifier", "TreeEnsembleRegressor":
    "ai_onnx_ml_tree_ensemble_regressor", "TreeEnsemble": "ai_onnx_ml_tree_ensemble(?!_classifier|_regressor)",
    "Scaler": "ai_onnx_ml_scaler", "ZipMap": "ai_onnx_ml_zipmap",
    # ops/ml.py: ONNX ships node tests for ArrayFeatureExtractor and Binarizer only;
    # tests/test_ml_ops.py checks all of them against onnxruntime
    "ArrayFeatureExtractor": "ai_onnx_ml_array_feature_extractor", "Binarizer": "ai_onnx_ml_binarizer",
    "LinearClassifier": "ai_onnx_ml_linear_classifier", "LinearRegressor": "ai_onnx_ml_linear_regressor",
    "Normalizer": "ai_onnx_ml_normalizer",
}

_FP8 = "float(4e2m1|8e4m3fnuz|8e4m3fn|8e5m2fnuz|8e5m2|8e8m0)"

EXCLUDED = [
    # 8/4-bit float types (float8*, float4e2m1, float8e8m0), bfloat16 and int4/uint4/int2/uint2: element
    # types nmc does not compute (float16 and double are held as float32, other integers as int32)
    rf"(?i)^test_cast(like)?_(no_saturate_|e8m0_)?\w*({_FP8}|bfloat16|u?int[24])",
    # QuantizeLinear and DequantizeLinear of element types nmc does not compute: 8-bit and 4-bit floats
    # (e4m3fn, e5m2, float4e2m1) and int4/uint4/int2/uint2 codes; blocked quantisation (block_size) is
    # refused. The int8/uint8/int16/uint16 cases pass: codes computed in i32 (test_qdq.py)
    rf"^test_(de)?quantizelinear_(e4m3fn|e5m2|{_FP8}|u?int[24]|blocked)",
    # training mode: Dropout with a non-zero ratio is random (its output and its mask), BatchNormalization
    # normalises by the batch's statistics and outputs running ones; nmc compiles inference (Dropout's
    # masks at inference and with ratio 0 pass)
    r"^test_training_dropout(_default)?(_mask)?_cpu$",
    r"^test_batchnorm_\w*training_mode",
    # optional and sequence types: nmc's ports are tensors (float, int32, bool)
    r"^test_identity_(opt|sequence)",
    # double inputs holding uninitialised memory (values beyond float32 range): nmc computes float32
    r"^test_operator_(add_broadcast|add_size1_(singleton|right)_broadcast|addconstant)_",
    # an invalid model: the ONNX checker rejects it (initializer that is not a graph input at IR 3)
    r"^test_operator_addmm_",
    # tree ensembles: they run on analog CAM cores and the backend compiles for 'ideal' (none), one
    # sample per run and these are fixed batches (6 and 3 rows); single_tree's input is double, which
    # nmc refuses for trees (float32(1.2) > 1.2 would cross its split x <= 1.2). tests/test_trees.py
    # runs set_membership on 'acam' with a free batch, checks that refusal on 'acam' and 'ideal', and
    # runs single_tree in float32 on 'acam'
    r"^test_ai_onnx_ml_tree_ensemble_(set_membership|single_tree)",
    # bfloat16: an element type nmc does not compute (and Celu has no converter)
    r"^test_(einsum_\w+|celu)_bfloat16",
    # Resize with tf_crop_and_resize (a region of interest and an extrapolation value): refused
    r"^test_resize_tf_crop_and_resize",
    # Resize align_corners with a fractional output size (4 · 0.6 = 2.4, rounded to 2): ONNX's reference
    # divides by the unrounded size − 1, onnxruntime and PyTorch by the output's length − 1, as nmc does
    # (tests/test_ops_more.py checks nmc against onnxruntime on these cases)
    r"^test_resize_downsample_scales_(linear|cubic)_align_corners",
    # ConstantOfShape and Range: every input sets the output's size, so the backend keeps them as
    # program inputs (data) and nmc needs a size known at compile time; with constant inputs they fold
    # (tests/test_integer_tensors.py). The expanded Range bodies are a Loop
    r"^test_constantofshape_",
    r"^test_range_",
    # string tensors: nmc computes float32, int32 and bool
    r"^test_equal_string",
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


# ----------------------------------------------------------------------------- the backend itself
def _node_model(node, inputs, output_shape, initializers=()):
    output = onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, output_shape)
    graph = onnx.helper.make_graph([node], "g", inputs, [output], initializer=list(initializers))
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)])


def test_parameters_are_never_data():
    for op_type, positions in PARAMETERS.items():
        schema = onnx.defs.get_schema(op_type)
        assert 0 not in positions and max(positions) < len(schema.inputs), op_type


def test_a_parameter_input_is_bound_and_the_data_computed():
    node = onnx.helper.make_node("Reshape", ["x", "shape"], ["y"])
    x, shape = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([3, 2], np.int64)
    rep = NmcBackend.prepare(_node_model(node, [
        onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3]),
        onnx.helper.make_tensor_value_info("shape", onnx.TensorProto.INT64, [2])], [3, 2]))
    (y,) = rep.run([x, shape])
    np.testing.assert_array_equal(y, x.reshape(3, 2))
    assert rep.bound == {"shape"}
    (program,) = (c.program for c in rep._programs.values())
    assert [p.name for p in program.inputs] == ["x"]


def test_the_data_input_is_never_bound():
    """ConstantOfShape of a graph input: its input is data (it sets the output's size), and
    binding it would fold the node with onnx.reference and compare ONNX with itself; the backend
    refuses instead."""
    node = onnx.helper.make_node("ConstantOfShape", ["shape"], ["y"])
    model = _node_model(node, [onnx.helper.make_tensor_value_info("shape", onnx.TensorProto.INT64, [1])], [4])
    with pytest.raises(NotConstantError, match="input 0 of ConstantOfShape node .* is data"):
        NmcBackend.prepare(model).run([np.array([4], np.int64)])


def test_a_model_folded_at_compile_time_is_not_run():
    """Every output a constant of the program: reported as skipped (``unittest.SkipTest``), never passed."""
    node = onnx.helper.make_node("DequantizeLinear", ["x", "scale"], ["y"])
    model = _node_model(node, [onnx.helper.make_tensor_value_info("unused", onnx.TensorProto.FLOAT, [1])], [2],
                        [onnx.numpy_helper.from_array(np.array([1, -2], np.int8), "x"),
                         onnx.numpy_helper.from_array(np.float32(0.5), "scale")])
    with pytest.raises(NothingComputed, match="folded at compile time: the simulator computed nothing") as caught:
        NmcBackend.prepare(model)
    assert isinstance(caught.value, unittest.SkipTest) and isinstance(caught.value, CompileError)
