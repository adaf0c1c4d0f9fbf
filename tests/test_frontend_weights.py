"""The frontend holds a model's weights once: it reads the graph with stubs for the large
initializers and their data straight into arrays (``frontend/weights.py``), and the ONNX
checker and shape inference never see the weights."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import make_model
from onnx import TensorProto, helper, numpy_helper

from nmc.compiler import compile_model
from nmc.compiler.errors import ModelError
from nmc.compiler.frontend import import_onnx, loader, weights

RNG = np.random.default_rng(0)


def _with_initializers(arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(v, k) for k, v in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


ARRAYS = {"f32": RNG.standard_normal((40, 50)).astype(np.float32),
          "f16": RNG.standard_normal(3000).astype(np.float16),
          "f64": RNG.standard_normal((2, 1000)),
          "i8": RNG.integers(-128, 128, 5000).astype(np.int8),
          "i64": RNG.integers(-2**40, 2**40, 700),
          "u16": RNG.integers(0, 2**16, 2000).astype(np.uint16),
          "bool": RNG.random(4096) > 0.5,
          "small": np.arange(6, dtype=np.int64),
          "scalar": np.array(2.5, np.float32)}


def test_read_file_gives_the_arrays_onnx_gives(tmp_path):
    model = _with_initializers(ARRAYS)
    model.graph.initializer.append(helper.make_tensor("typed", TensorProto.FLOAT, [2000], np.ones(2000).tolist()))
    int4 = helper.tensor_dtype_to_np_dtype(TensorProto.INT4)  # packed two to a byte: read by onnx's own code
    model.graph.initializer.append(numpy_helper.from_array((np.arange(3000) % 16 - 8).astype(int4), "i4"))
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    graph, arrays = weights.read_file(str(path))
    held = {n for n, v in ARRAYS.items() if v.nbytes > weights.SMALL} | {"i4"}
    assert set(arrays) == held  # "typed" holds float_data, not raw data: it stays in the graph
    for t in graph.graph.initializer:
        if t.name in held:
            assert not t.HasField("raw_data") and list(t.dims) == list(ARRAYS.get(t.name, np.empty(3000)).shape)
    for t in onnx.load(str(path)).graph.initializer:
        want = numpy_helper.to_array(t)
        got = arrays[t.name] if t.name in arrays else weights.to_array(
            next(g for g in graph.graph.initializer if g.name == t.name))
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    _, all_arrays = loader.read_weights_apart(path)
    assert list(all_arrays) == [t.name for t in model.graph.initializer]
    _, from_proto = loader.read_weights_apart(model)
    for name, value in from_proto.items():
        np.testing.assert_array_equal(all_arrays[name], value)


def test_external_data_is_read_as_onnx_reads_it(tmp_path):
    model = _with_initializers(ARRAYS)
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.data", size_threshold=1024)
    _, arrays = loader.read_weights_apart(path)
    for name, value in ARRAYS.items():
        np.testing.assert_array_equal(arrays[name], value)


def _dense(k: int = 256, n: int = 512) -> onnx.ModelProto:
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
             helper.make_node("Shape", ["h"], ["s"]),
             helper.make_node("Reshape", ["h", "s"], ["y"])]
    return make_model(nodes, {"x": ["N", k]}, {"y": ["N", n]},
                      {"w": RNG.standard_normal((n, k)).astype(np.float32), "b": np.zeros(n, np.float32)})


def test_checker_and_shape_inference_never_see_the_weights(tmp_path, monkeypatch):
    seen = []
    for module, name in ((loader.onnx.checker, "check_model"), (loader.shape_inference, "infer_shapes")):
        original = getattr(module, name)

        def spy(model, *args, _original=original, **kwargs):
            seen.append(model.ByteSize())
            return _original(model, *args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    model = _dense()
    onnx.save(model, str(tmp_path / "dense.onnx"))
    for given in (tmp_path / "dense.onnx", model):
        seen.clear()
        x = RNG.standard_normal((3, 256)).astype(np.float32)
        compiled = compile_model(given)
        assert len(seen) >= 3 and max(seen) < 16 * 1024, seen  # the weight alone is 512 KiB
        w = model.graph.initializer[0]
        np.testing.assert_allclose(_run(compiled, x), x @ numpy_helper.to_array(w).T, rtol=1e-5, atol=1e-5)


def _run(compiled, x):
    from nmc.runtime import execute

    return next(iter(execute(compiled.program, {"x": x}).values()))


def test_a_gemm_weight_is_the_array_read(tmp_path, monkeypatch):
    read = {}

    def spy(path, _original=weights.read_file):
        graph, arrays = _original(path)
        read.update(arrays)
        return graph, arrays
    monkeypatch.setattr(weights, "read_file", spy)
    onnx.save(_dense(), str(tmp_path / "dense.onnx"))
    g = import_onnx(tmp_path / "dense.onnx")
    (dense,) = [n for n in g.nodes() if type(n.op).__name__ == "Dense"]
    assert np.shares_memory(g.constants[dense.inputs[1]], read["w"])  # transB=1, alpha=1: no copy


def test_data_that_does_not_match_its_shape_is_a_model_error(tmp_path):
    model = _dense()
    w = model.graph.initializer[0]
    w.raw_data = w.raw_data[:-8]
    onnx.save(model, str(tmp_path / "short.onnx"))
    for given in (tmp_path / "short.onnx", model):
        with pytest.raises(ModelError, match=r"initializer 'w' \(type FLOAT, shape \[512, 256\]\).*does not match"):
            compile_model(given)
    model = _dense()
    model.graph.initializer[0].float_data.append(1.0)  # raw data and float_data: two value fields
    onnx.save(model, str(tmp_path / "two.onnx"))
    for given in (tmp_path / "two.onnx", model):
        with pytest.raises(ModelError, match="checker rejects.*tensor name: w.*one and only one value field"):
            compile_model(given)


def test_a_file_that_is_no_protobuf_is_still_a_clear_error(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x0a\xff\xff\xff\xff\x0f garbage")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        compile_model(tmp_path / "bad.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty graph|not a readable"):
        compile_model(tmp_path / "empty.onnx")
