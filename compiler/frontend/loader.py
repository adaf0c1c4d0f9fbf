"""Read an ONNX model: check it, fix the batch dimension, fold constants, infer shapes.

The weights never go back into a protobuf: the checker and ONNX shape inference see the graph
with stubs for its large initializers (``frontend/weights.py``), and folding computes on the
arrays the weights were read into."""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from nmc.compiler.errors import ModelError, UnsupportedOpError
from nmc.compiler.frontend import weights as apart

# Nodes never evaluated at compile time even when their inputs are constant.
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
            "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct"}


def read_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """Load a path or take a ModelProto, and run the ONNX checker on it."""
    proto = model if isinstance(model, onnx.ModelProto) else _load(_existing(model))
    _check(*apart.skeleton(proto))
    return proto


def read_weights_apart(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The model checked, as its graph with stubs for the large initializers
    (``frontend/weights.py``) and every initializer as an array, name → array."""
    try:
        if isinstance(model, onnx.ModelProto):
            graph, held = apart.skeleton(model)
            _check(graph, held)
            arrays = {t.name: apart.to_array(t) for t in model.graph.initializer if t.name in held}
        else:
            path = _existing(model)
            try:
                graph, arrays = apart.read_file(path)
            except apart.NotPlain:  # not a protobuf it takes apart: read whole, as onnx.load reads it
                return read_weights_apart(_load(path))
            _check(graph, set(arrays))
        return graph, {t.name: arrays[t.name] if t.name in arrays else apart.to_array(t)
                       for t in graph.graph.initializer}
    except apart.DataError as e:
        raise ModelError(str(e)) from None
    except onnx.checker.ValidationError as e:
        raise ModelError(f"the ONNX checker rejects the model: {_first_line(e)}") from None


def _existing(model: str | os.PathLike) -> str:
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such model file")
    return path


def _load(path: str) -> onnx.ModelProto:
    try:
        return onnx.load(path)
    except Exception as e:  # protobuf raises several unrelated types on garbage
        raise ModelError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None


def _check(graph: onnx.ModelProto, held: set[str]) -> None:
    """The ONNX checker on ``graph`` (a skeleton whose initializers ``held`` are stubs)."""
    if not graph.graph.node and not graph.graph.output:
        raise ModelError("the ONNX model has an empty graph")
    try:
        onnx.checker.check_model(apart.checkable(graph, held) if held else graph)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"the ONNX checker rejects the model: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0]


def opset_of(model: onnx.ModelProto, domain: str = "") -> int:
    for imp in model.opset_import:
        if imp.domain in (domain, "ai.onnx" if domain == "" else domain):
            return imp.version
    return 1


def real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def detect_batched(model: onnx.ModelProto) -> bool:
    """A model is batched when every input's leading dimension is free (symbolic)."""
    inputs = real_inputs(model)
    free = []
    for vi in inputs:
        dims = vi.type.tensor_type.shape.dim
        free.append(bool(dims) and not dims[0].HasField("dim_value"))
        for i, d in enumerate(dims):
            if i > 0 and not d.HasField("dim_value"):
                raise ModelError(f"input {vi.name!r}: dimension {i} is symbolic ({d.dim_param or '?'}); only the "
                                 "leading batch dimension may be free. Export with fixed sizes for the others.")
    return bool(inputs) and all(free)


def fix_batch(model: onnx.ModelProto, batched: bool, size: int = 1) -> onnx.ModelProto:
    """A copy with the leading input dimension set to ``size`` (batched; 1 but to see where the
    batch goes, ``compiler/ir/batch.py``) and stale shapes dropped."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in real_inputs(m):
        dims = vi.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if not d.HasField("dim_value"):
                if batched and i == 0:
                    d.dim_value = size
                else:
                    raise ModelError(f"input {vi.name!r}: dimension {i} is symbolic; give it a size")
    del m.graph.value_info[:]
    for out in m.graph.output:
        out.type.tensor_type.ClearField("shape")
    return m


# onnx.reference implements these from opset 19 only; for integer types earlier versions
# compute the same (10: one scale per tensor; 13: per axis), so they are evaluated as 19.
_MIN_REFERENCE_OPSET = {"QuantizeLinear": 19, "DequantizeLinear": 19}


def _gather_elements(node: onnx.NodeProto, data: np.ndarray, indices: np.ndarray) -> list[np.ndarray]:
    """GatherElements by numpy: onnx.reference 1.23 fails when the indices are shorter than the
    data along the axis (Hugging Face BERT's ``token_type_ids`` buffer, [1, 512] read at [1, 128])."""
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0) % data.ndim
    box = tuple(slice(None) if j == axis else slice(0, n) for j, n in enumerate(indices.shape))
    index = np.where(indices < 0, indices + data.shape[axis], indices)
    return [np.take_along_axis(data[box], index, axis=axis)]


_NUMPY_FOLDS = {"GatherElements": _gather_elements}


def _evaluate(node: onnx.NodeProto, values: list[np.ndarray], opsets) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator  # only when a model has something to fold

    if node.op_type in _NUMPY_FOLDS and node.domain in ("", "ai.onnx"):
        return _NUMPY_FOLDS[node.op_type](node, *values)
    least = _MIN_REFERENCE_OPSET.get(node.op_type, 0)
    opsets = [helper.make_opsetid(o.domain, max(o.version, least)) if o.domain in ("", "ai.onnx") else o
              for o in opsets]
    names = [n for n in node.input if n]  # ``values`` of the inputs given: an omitted optional one ("") has none
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for n, v in zip(names, values)]
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output if n]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=list(opsets))
    feeds = dict(zip(names, values))
    return ReferenceEvaluator(model).run(None, feeds)


def _shapes(model: onnx.ModelProto, nodes, consts: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Static (shape, element type) of the tensors of ``model`` reduced to ``nodes`` that read ``consts``."""
    proto, stripped = _inference_model(model, nodes, consts)
    out = _inferred_shapes(proto, stripped)
    for _ in range(len(nodes)):  # ONNX-ML outputs ONNX's inference leaves open (ops/ml.py)
        added = _ml_output_shapes(proto, consts, out)
        if not added:
            break
        proto.graph.value_info.extend(added)
        out = _inferred_shapes(proto, stripped)
    return out


def _ml_output_shapes(model: onnx.ModelProto, consts: dict[str, np.ndarray],
                      shapes: dict[str, tuple]) -> list[onnx.ValueInfoProto]:
    from nmc.compiler.frontend.ops.ml import output_shapes

    known = {}
    for node in model.graph.node:
        known.update({n: (tuple(consts[n].shape), _tensor_type(consts[n])) for n in node.input if n in consts})
    known.update({name: value for name, value in shapes.items() if value[0] is not None})
    added = []
    for node in model.graph.node:
        if node.domain != "ai.onnx.ml":
            continue
        for name, computed in zip(node.output, output_shapes(node, known)):
            if name and computed is not None and shapes.get(name, (None,))[0] is None:
                added.append(helper.make_tensor_value_info(name, computed[1], list(computed[0])))
    return added


def _tensor_type(value: np.ndarray) -> int:
    """The ONNX element type ``numpy_helper.from_array`` gives ``value``."""
    return onnx.TensorProto.STRING if value.dtype.kind in "OUS" else helper.np_dtype_to_tensor_dtype(value.dtype)


def _inferred_shapes(model: onnx.ModelProto, stripped: set[str]) -> dict[str, tuple]:
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed: {str(e).strip().splitlines()[0]}") from None
    out = {}
    inputs = [vi for vi in inferred.graph.input if vi.name not in stripped]
    for vi in list(inferred.graph.value_info) + inputs + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            out[vi.name] = (tuple(d.dim_value for d in tt.shape.dim), tt.elem_type)
        elif vi.name not in out:
            out.setdefault(vi.name, (None, tt.elem_type))
    return out


def fold_constants(model: onnx.ModelProto, weights: dict[str, np.ndarray]
                   ) -> tuple[onnx.ModelProto, dict[str, np.ndarray], dict[str, tuple]]:
    """Evaluate every node computable at compile time (weights, shape arithmetic: the
    Shape/Gather/Unsqueeze/Concat chains of torch exports) on ``model`` (a ``skeleton``) and
    its initializers ``weights``. Returns the reduced model (no initializers), the constants it
    reads, and static shapes (with element types) for every remaining tensor."""
    consts = dict(weights)
    nodes = list(model.graph.node)
    for _ in range(64):
        shapes = _shapes(model, nodes, consts)
        remaining, changed = [], False
        for node in nodes:
            value = None
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = _evaluate(node, [], model.opset_import)
            elif node.op_type in ("Shape", "Size") and node.domain in ("", "ai.onnx") \
                    and shapes.get(node.input[0], (None,))[0] is not None:
                value = _evaluate(node, [np.zeros(shapes[node.input[0]][0], np.float32)], model.opset_import)
            elif (node.domain in ("", "ai.onnx") and node.op_type not in _NO_FOLD
                  and all((not n) or n in consts for n in node.input) and any(node.input)):
                try:
                    value = _evaluate(node, [consts[n] for n in node.input if n], model.opset_import)
                except Exception as e:
                    raise ModelError(f"cannot evaluate constant node {node.name!r} ({node.op_type}): {e}") from None
            if value is None:
                remaining.append(node)
                continue
            for name, v in zip([n for n in node.output if n], value):
                consts[name] = np.asarray(v)
            changed = True
        nodes = remaining
        if not changed:
            break
    else:
        shapes = _shapes(model, nodes, consts)
    used = _used(model, nodes)
    graph = helper.make_graph(nodes, model.graph.name or "main", real_inputs(model), list(model.graph.output))
    final = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=max(model.ir_version, 4))
    return final, {k: v for k, v in consts.items() if k in used}, shapes


def _used(model: onnx.ModelProto, nodes) -> set[str]:
    return {n for node in nodes for n in node.input} | {o.name for o in model.graph.output}


def _inference_model(model: onnx.ModelProto, nodes, consts: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, set[str]]:
    """``model`` reduced to ``nodes`` for shape inference, and the names of the constants it
    holds as typed inputs (large ones) rather than as initializers."""
    used = _used(model, nodes)
    inits, typed = [], []
    for name, value in consts.items():
        if name not in used:
            continue
        value = np.asarray(value)
        if value.size > apart.SMALL and value.dtype.kind not in "OUS":
            typed.append(helper.make_tensor_value_info(name, _tensor_type(value), value.shape))
        else:
            inits.append(numpy_helper.from_array(value, name=name))
    graph = helper.make_graph(nodes, model.graph.name or "main", real_inputs(model) + typed,
                              list(model.graph.output), initializer=inits)
    # IR 4 or later: before it, shape inference ignores initializers that are not graph inputs
    proto = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=max(model.ir_version, 4))
    return proto, {vi.name for vi in typed}


def check_domains(model: onnx.ModelProto, supported: set[str]) -> None:
    from nmc.compiler.frontend.ops.trees import ML_OPS

    for node in model.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type in ML_OPS:
            continue
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(f"node {node.name!r}: operator {node.domain}.{node.op_type} is from an "
                                     f"unsupported domain; supported (ai.onnx): "
                                     f"{', '.join(sorted(set(supported) - set(ML_OPS)))}; "
                                     f"(ai.onnx.ml): {', '.join(ML_OPS)}")
