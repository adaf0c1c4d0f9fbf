"""Index and mask tensors (DESIGN.md "Tensor types"): integer and boolean program inputs, the
embedding lookup (``gather``), comparisons, Where, Cast and Mod in their own element types,
checked against onnxruntime; and the clean refusals of what nmc does not compute."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import opcodes, run_ort
from nmc.compiler.driver import compile_model
from nmc.compiler.errors import CompileError, UnsupportedOpError
from nmc.runtime import execute
from nmc.runtime.costs import CostModel
from nmc.runtime.machine import SimulationError
from nmc.backends.target import load_target

VOCAB, SEQ, WIDTH = 50, 8, 16


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model




def _embedding_model(batch="N"):
    """Token + position embeddings, a padding mask from ``attention_mask == 0`` as BERT builds it
    (Equal, Not, Cast, Where of -1e4), and a masked mean over the sequence."""
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.normal(size=(VOCAB, WIDTH)).astype(np.float32), "tok")
    positions = numpy_helper.from_array(rng.normal(size=(SEQ, WIDTH)).astype(np.float32), "pos")
    pos_ids = numpy_helper.from_array(np.arange(SEQ, dtype=np.int64)[None], "pos_ids")
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    big = numpy_helper.from_array(np.array(-1e4, np.float32), "big")
    nought = numpy_helper.from_array(np.array(0.0, np.float32), "nought")
    nodes = [
        helper.make_node("Gather", ["tok", "input_ids"], ["tokens"]),
        helper.make_node("Gather", ["pos", "pos_ids"], ["where"]),
        helper.make_node("Add", ["tokens", "where"], ["x"]),
        helper.make_node("Equal", ["attention_mask", "zero"], ["padding"]),
        helper.make_node("Not", ["padding"], ["keep"]),
        helper.make_node("Cast", ["keep"], ["keep_f"], to=TensorProto.FLOAT),
        helper.make_node("Where", ["padding", "big", "nought"], ["bias"]),
        helper.make_node("Unsqueeze", ["keep_f"], ["keep3"], axes=[2]),
        helper.make_node("Mul", ["x", "keep3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("ReduceSum", ["bias"], ["penalty"], axes=[1], keepdims=1),
        helper.make_node("Add", ["pooled", "penalty"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, SEQ]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, SEQ])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, WIDTH])]
    return _model(nodes, inputs, outputs, [table, positions, pos_ids, zero, big, nought], opset=11)


def _tokens(rng, batch):
    ids = rng.integers(-VOCAB, VOCAB, (batch, SEQ))  # negative ids count from the end (ONNX Gather)
    mask = np.ones((batch, SEQ), np.int64)
    for row in range(batch):
        mask[row, rng.integers(1, SEQ + 1):] = 0
    return ids, mask


def test_an_embedding_with_a_padding_mask_matches_onnxruntime_with_a_free_batch():
    model = _embedding_model()
    compiled = compile_model(model, target="ideal")
    program = compiled.program
    assert [(p.name, p.dtype) for p in program.inputs] == [("input_ids", "i32"), ("attention_mask", "i32")]
    assert {"gather", "eq", "select", "cast"} <= opcodes(program)
    rng = np.random.default_rng(1)
    ids, mask = _tokens(rng, 5)
    out = execute(program, {"input_ids": ids, "attention_mask": mask})["y"]
    (ref,) = run_ort(model, {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_integer_ports_refuse_values_beyond_int32_and_fractions():
    program = compile_model(_embedding_model(), target="ideal").program
    ids, mask = _tokens(np.random.default_rng(2), 2)
    with pytest.raises(SimulationError, match="beyond the int32"):
        execute(program, {"input_ids": ids + 2 ** 40, "attention_mask": mask})
    with pytest.raises(SimulationError, match="not whole"):
        execute(program, {"input_ids": ids + 0.5, "attention_mask": mask})
    with pytest.raises(SimulationError, match=r"index -?\d+ is outside -50\.\.49"):
        execute(program, {"input_ids": ids + VOCAB, "attention_mask": mask})
    # a boolean or float array of whole numbers is taken
    execute(program, {"input_ids": ids.astype(np.float32), "attention_mask": mask.astype(bool)})


def test_gather_is_priced_as_a_memory_read_of_the_rows_moved():
    program = compile_model(_embedding_model(), target="ideal").program
    target = load_target("ideal")
    model = CostModel(program, target)
    (gather,) = [s for s in program.cores[target.vector_core] if getattr(s, "opcode", "") == "gather"]
    cost = model.instr(gather, target.vector_core)
    rows_bits = SEQ * WIDTH * 32
    assert cost.energy["buffer"] == pytest.approx((2 * rows_bits + SEQ * 32) * target.costs.buffer_pj_per_bit)
    assert "vector" not in cost.energy and cost.cycles > 0


def test_constant_indices_stay_views():
    """``x[:, 0]`` (Gather of a constant scalar) and evenly spaced constant indices are a Slice and a
    Reshape; repeated constant indices are one gather from a constant index table."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6])
    first = numpy_helper.from_array(np.array(0, np.int64), "first")
    evens = numpy_helper.from_array(np.array([0, 2, 4], np.int64), "evens")
    again = numpy_helper.from_array(np.array([[5, 5], [1, -1]], np.int64), "again")
    nodes = [helper.make_node("Gather", ["x", "first"], ["a"], axis=1),
             helper.make_node("Gather", ["x", "evens"], ["b"], axis=2),
             helper.make_node("Gather", ["x", "again"], ["c"], axis=2)]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
               for n, shape in zip("abc", (["N", 6], ["N", 4, 3], ["N", 4, 2, 2]))]
    model = _model(nodes, [x], outputs, [first, evens, again])
    compiled = compile_model(model, target="ideal")
    kinds = {n.onnx_name or n.name: type(n.op).__name__ for n in compiled.graph.nodes()}
    assert sorted(type(n.op).__name__ for n in compiled.graph.nodes()) == ["Gather", "Reshape", "Reshape", "Slice",
                                                                           "Slice"], kinds
    value = np.random.default_rng(3).normal(size=(3, 4, 6)).astype(np.float32)
    out = execute(compiled.program, {"x": value})
    for name, ref in zip("abc", run_ort(model, {"x": value})):
        np.testing.assert_array_equal(out[name], ref)


def test_gather_of_run_time_indices_on_an_inner_axis_of_data():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 3])
    idx = helper.make_tensor_value_info("idx", TensorProto.INT32, [4])
    model = _model([helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)], [x, idx],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 3])])
    value = np.random.default_rng(4).normal(size=(2, 5, 3)).astype(np.float32)
    indices = np.array([4, 0, -1, 2], np.int32)
    out = execute(compile_model(model, target="ideal").program, {"x": value, "idx": indices})["y"]
    np.testing.assert_array_equal(out, run_ort(model, {"x": value, "idx": indices})[0])


@pytest.mark.parametrize("to", [TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL])
def test_cast_float_to_integer_truncates_toward_zero_and_to_bool_is_nonzero(to):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=to)], [x], [helper.make_tensor_value_info("y", to, [6])])
    value = np.array([-2.7, -0.5, 0.0, 0.4, 1.5, 3.9], np.float32)
    out = execute(compile_model(model, target="ideal").program, {"x": value})["y"]
    np.testing.assert_array_equal(out, run_ort(model, {"x": value})[0].astype(out.dtype))


def test_integer_arithmetic_comparisons_and_where():
    a = helper.make_tensor_value_info("a", TensorProto.INT64, [3, 4])
    b = helper.make_tensor_value_info("b", TensorProto.INT64, [4])
    nodes = [helper.make_node("Mod", ["a", "b"], ["mod"]),
             helper.make_node("Mod", ["a", "b"], ["fmod"], fmod=1),
             helper.make_node("Less", ["a", "b"], ["less"]),
             helper.make_node("GreaterOrEqual", ["a", "b"], ["ge"]),
             helper.make_node("Or", ["less", "ge"], ["either"]),
             helper.make_node("Where", ["less", "a", "b"], ["smaller"]),
             helper.make_node("Sub", ["smaller", "mod"], ["diff"])]
    names = {"mod": TensorProto.INT64, "fmod": TensorProto.INT64, "less": TensorProto.BOOL, "either": TensorProto.BOOL,
             "smaller": TensorProto.INT64, "diff": TensorProto.INT64}
    model = _model(nodes, [a, b], [helper.make_tensor_value_info(n, t, [3, 4]) for n, t in names.items()])
    rng = np.random.default_rng(5)
    feeds = {"a": rng.integers(-20, 20, (3, 4)), "b": np.array([3, -4, 7, -2], np.int64)}
    out = execute(compile_model(model, target="ideal").program, feeds)
    for name, ref in zip(names, run_ort(model, feeds)):
        np.testing.assert_array_equal(out[name], ref.astype(out[name].dtype), err_msg=name)


def test_unsupported_element_types_are_one_line_naming_the_node():
    s = helper.make_tensor_value_info("s", TensorProto.STRING, [3])
    model = _model([helper.make_node("Equal", ["s", "s"], ["y"])], [s],
                   [helper.make_tensor_value_info("y", TensorProto.BOOL, [3])])
    with pytest.raises(CompileError, match="node 'Equal_0' .*STRING") as error:
        compile_model(model, target="ideal")
    assert "\n" not in str(error.value)
    x = helper.make_tensor_value_info("x", TensorProto.INT64, [3])
    huge = numpy_helper.from_array(np.array([1, 2, 2 ** 40], np.int64), "huge")
    model = _model([helper.make_node("Add", ["x", "huge"], ["y"], name="add_huge")], [x],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, [3])], [huge])
    with pytest.raises(UnsupportedOpError, match="node 'add_huge' .*beyond int32"):
        compile_model(model, target="ideal")
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3])
    model = _model([helper.make_node("ReduceSum", ["i"], ["y"], name="sum_ints", keepdims=0)], [i],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, [3])])
    with pytest.raises(UnsupportedOpError, match="node 'sum_ints' .*ReduceSum on float tensors"):
        compile_model(model, target="ideal")


def test_constant_of_shape_and_range_fold_at_compile_time():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    shape = numpy_helper.from_array(np.array([1, 4], np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["ones"],
                              value=numpy_helper.from_array(np.array([1.0], np.float32))),
             helper.make_node("Range", ["start", "limit", "delta"], ["steps"]),
             helper.make_node("Cast", ["steps"], ["steps_f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "ones"], ["scaled"]),
             helper.make_node("Add", ["scaled", "steps_f"], ["y"])]
    inits = [shape] + [numpy_helper.from_array(np.array(v, np.int64), n)
                       for n, v in (("start", 0), ("limit", 4), ("delta", 1))]
    model = _model(nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    compiled = compile_model(model, target="ideal")
    assert not {"ConstantOfShape", "Range"} & {n.onnx_op for n in compiled.graph.nodes()}
    value = np.random.default_rng(6).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(execute(compiled.program, {"x": value})["y"], run_ort(model, {"x": value})[0])


def _tiny_bert(path, dynamic: bool):
    """A BERT-like PyTorch model (token and position embeddings, a TransformerEncoder with a key
    padding mask, a Linear head on the first token), exported with a free or a fixed batch of 4."""
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(VOCAB, WIDTH), nn.Embedding(SEQ, WIDTH)
            layer = nn.TransformerEncoderLayer(WIDTH, 2, 32, dropout=0.0, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
            self.head = nn.Linear(WIDTH, 3)
            self.register_buffer("pos_ids", torch.arange(SEQ).unsqueeze(0))

        def forward(self, ids, mask):
            h = self.enc(self.tok(ids) + self.pos(self.pos_ids), src_key_padding_mask=(mask == 0))
            return self.head(h[:, 0])

    ids = torch.randint(0, VOCAB, (4, SEQ))
    mask = torch.ones(4, SEQ, dtype=torch.int64)
    free = {"input_ids": {0: "N"}, "attention_mask": {0: "N"}, "logits": {0: "N"}} if dynamic else None
    torch.onnx.export(Tiny().eval(), (ids, mask), str(path), dynamo=False, opset_version=17,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"], dynamic_axes=free)
    return onnx.load(str(path))


@pytest.mark.slow
@pytest.mark.parametrize("dynamic", [True, False], ids=["free-batch", "fixed-batch"])
def test_a_tiny_bert_matches_onnxruntime_on_ideal_and_runs_on_pcm(tmp_path, dynamic):
    """The free-batch export transposes the batch axis inside the attention ([N, L, E] to
    [L, N, E], then [L, N·heads, d]): the batch is followed through it (compiler/ir/batch.py)."""
    model = _tiny_bert(tmp_path / "tiny_bert.onnx", dynamic)
    rng = np.random.default_rng(7)
    ids, mask = _tokens(rng, 4)
    ids = ids % VOCAB  # torch's embedding takes no negative ids
    (ref,) = run_ort(model, {"input_ids": ids, "attention_mask": mask})
    ideal = compile_model(model, target="ideal")
    out = execute(ideal.program, {"input_ids": ids, "attention_mask": mask})["logits"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    pcm = compile_model(model, target="pcm")
    assert sum(m.unit == "crossbar" for m in pcm.graph.mapping.values()) >= 4  # attention and FFN projections
    analog = pcm.bound().run({"input_ids": ids, "attention_mask": mask}, noise=False)["logits"]
    assert np.all(np.isfinite(analog))
    assert np.abs(analog - ref).mean() / np.abs(ref).mean() < 0.5


def test_a_batch_axis_that_moves_is_followed_and_one_that_regroups_samples_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6])
    w = numpy_helper.from_array(np.random.default_rng(8).normal(size=(6, 5)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([0, -1], np.int64), "shape")
    follows = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),      # [4, N, 6]
               helper.make_node("MatMul", ["t", "w"], ["m"]),                      # [4, N, 5]
               helper.make_node("Softmax", ["m"], ["s"], axis=-1),
               helper.make_node("Reshape", ["s", "shape"], ["r"]),                 # [4, N·5]
               helper.make_node("Transpose", ["r"], ["y"], perm=[1, 0])]           # [N·5, 4]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "cols"])
    model = _model(follows, [x], [y], [w, shape])
    with pytest.raises(CompileError, match="not as a leading axis of its own"):
        compile_model(model, target="ideal")  # y is [N·5, 4]: samples regrouped into 5 rows each
    follows[-1] = helper.make_node("Transpose", ["s"], ["y"], perm=[1, 0, 2])     # back to [N, 4, 5]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 5])
    model = _model(follows[:3] + follows[-1:], [x], [y], [w])
    compiled = compile_model(model, target="ideal")
    value = np.random.default_rng(9).normal(size=(3, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(execute(compiled.program, {"x": value})["y"], run_ort(model, {"x": value})[0],
                               rtol=1e-5, atol=1e-6)
    regroup = numpy_helper.from_array(np.array([4, -1], np.int64), "regroup")
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "cols"])
    model = _model([helper.make_node("Reshape", ["x", "regroup"], ["y"])], [x], [y], [regroup])
    with pytest.raises(CompileError, match="regroups the samples"):
        compile_model(model, target="ideal")  # [N, 4, 6] to [4, 6·N] mixes samples in every row


def test_bert_token_type_ids_buffer_folds_through_gather_elements(tmp_path):
    """HuggingFace BERT's default token_type_ids: a zero buffer expanded, gathered by the position
    ids (GatherElements) and expanded to the batch; all of it folds at compile time."""
    torch = pytest.importorskip("torch")
    from torch import nn

    class TokenTypes(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("token_type_ids", torch.zeros((1, 32), dtype=torch.long), persistent=False)
            self.register_buffer("position_ids", torch.arange(32).expand((1, -1)), persistent=False)
            self.types, self.tok = nn.Embedding(2, WIDTH), nn.Embedding(VOCAB, WIDTH)

        def forward(self, ids):
            batch, length = ids.shape
            positions = self.position_ids[:, :length]
            buffered = torch.gather(self.token_type_ids.expand(positions.shape[0], -1), dim=1, index=positions)
            return self.tok(ids) + self.types(buffered.expand(batch, length))

    path = tmp_path / "token_types.onnx"
    torch.onnx.export(TokenTypes().eval(), (torch.zeros(2, 16, dtype=torch.long),), str(path), dynamo=False,
                      opset_version=17, input_names=["ids"], output_names=["y"],
                      dynamic_axes={"ids": {0: "N"}, "y": {0: "N"}})
    model = onnx.load(str(path))
    assert "GatherElements" in {n.op_type for n in model.graph.node}
    ids = np.random.default_rng(10).integers(0, VOCAB, (3, 16))
    out = execute(compile_model(model, target="ideal").program, {"ids": ids})["y"]
    np.testing.assert_array_equal(out, run_ort(model, {"ids": ids})[0])


# ----------------------------------------------------------------------------- Pad, Clip, MaxPool on integers
def _one_typed(op, elem, shape, out_shape, attrs=None, inits=(), extra=(), opset=19):
    x = helper.make_tensor_value_info("x", elem, shape)
    node = helper.make_node(op, ["x", *extra], ["y"], **(attrs or {}))
    return _model([node], [x], [helper.make_tensor_value_info("y", elem, out_shape)], list(inits), opset)


_NP = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.INT32: np.int32,
       TensorProto.INT64: np.int64}


def _check_typed(model, elem, shape, low=-100, high=100, seed=11):
    value = np.random.default_rng(seed).integers(max(low, np.iinfo(_NP[elem]).min),
                                                 min(high, np.iinfo(_NP[elem]).max), shape).astype(_NP[elem])
    (ref,) = run_ort(model, {"x": value})
    out = execute(compile_model(model, target="ideal").program, {"x": value})["y"]
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, ref.astype(np.int64))


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
@pytest.mark.parametrize("elem", [TensorProto.INT32, TensorProto.INT64])
def test_pad_of_integers_in_every_mode_matches_onnxruntime_with_a_free_batch(mode, elem):
    pads = numpy_helper.from_array(np.array([0, 1, 2, 0, 2, 1], np.int64), "pads")
    value = numpy_helper.from_array(np.array(-7, _NP[elem]), "value")
    model = _one_typed("Pad", elem, ["N", 3, 4], ["N", 6, 7], {"mode": mode}, [pads, value], ["pads", "value"])
    _check_typed(model, elem, (3, 3, 4))


def test_integer_pad_values_beyond_2_24_are_refused():
    pads = numpy_helper.from_array(np.array([0, 1, 0, 1], np.int64), "pads")
    value = numpy_helper.from_array(np.array(2 ** 25 + 1, np.int64), "value")
    model = _one_typed("Pad", TensorProto.INT64, [2, 3], [2, 5], {}, [pads, value], ["pads", "value"])
    with pytest.raises(UnsupportedOpError, match="node 'Pad_0' .*whole values up to 2\\^24"):
        compile_model(model, target="ideal")


@pytest.mark.parametrize("elem, bounds", [(TensorProto.INT8, (-5, 7)), (TensorProto.UINT8, (3, None)),
                                          (TensorProto.INT32, (None, -2)), (TensorProto.INT64, (-20, 20))])
def test_clip_of_integers_matchesrun_ort(elem, bounds):
    inits, names = [], []
    for name, bound in zip(("lo", "hi"), bounds):
        names.append("" if bound is None else name)
        if bound is not None:
            inits.append(numpy_helper.from_array(np.array(bound, _NP[elem]), name))
    while names and not names[-1]:
        names.pop()
    model = _one_typed("Clip", elem, ["N", 4, 5], ["N", 4, 5], inits=inits, extra=names, opset=13)
    _check_typed(model, elem, (3, 4, 5), low=-40, high=40)


def test_integer_clip_bounds_beyond_2_24_are_refused():
    hi = numpy_helper.from_array(np.array(2 ** 24 + 1, np.int64), "hi")
    model = _one_typed("Clip", TensorProto.INT64, [2, 3], [2, 3], inits=[hi], extra=["", "hi"], opset=13)
    with pytest.raises(UnsupportedOpError, match="node 'Clip_0' .*max 1.67772e\\+07 of an integer Clip"):
        compile_model(model, target="ideal")


@pytest.mark.parametrize("elem", [TensorProto.UINT8, TensorProto.INT8])
@pytest.mark.parametrize("attrs, out", [
    ({"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, [5, 6]),
    ({"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, [3, 3]),
    ({"kernel_shape": [2, 3], "dilations": [2, 1], "pads": [0, 2, 1, 0]}, [4, 6]),
], ids=["pads", "ceil_mode", "dilations"])
def test_max_pool_of_integers_matches_onnxruntime_with_a_free_batch(elem, attrs, out):
    """Integers have no -inf: the padding is an explicit Pad by int32's minimum, which no element exceeds."""
    model = _one_typed("MaxPool", elem, ["N", 2, 5, 6], ["N", 2, *out], attrs, opset=12)
    _check_typed(model, elem, (3, 2, 5, 6), low=-128, high=256)


def test_average_pool_of_integers_is_refused_naming_the_node():
    x = helper.make_tensor_value_info("x", TensorProto.INT32, [1, 1, 4, 4])
    model = helper.make_model(helper.make_graph(
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2])], "g", [x],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1, 3, 3])]),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError, match="AveragePool on float tensors"):
        compile_model(model, target="ideal")
