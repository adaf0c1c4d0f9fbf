"""ONNX element types as nmc computes them (DESIGN.md "Tensor types").

Activations are float32 whatever float type the model declares. Index and mask tensors are
integers or booleans: every ONNX integer type is held as i32 (values beyond int32 are refused
where nmc sees them: constants here, program inputs by the runtime) and booleans as ``bool``
(0/1 in an i32 buffer). Other element types (strings, complex, 8/4-bit floats) are refused.
"""
from __future__ import annotations

import numpy as np
import onnx

T = onnx.TensorProto
FLOAT_TYPES = {T.FLOAT, T.DOUBLE, T.FLOAT16}
INTEGER_TYPES = {T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.UINT16, T.UINT32, T.UINT64}
BOOL_TYPES = {T.BOOL}
INT32_RANGE = (int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max))


def ir_dtype(elem_type: int) -> str | None:
    """The IR dtype of an ONNX element type (None: nmc does not compute it; 0, unknown: f32)."""
    if elem_type in FLOAT_TYPES or not elem_type:
        return "f32"
    if elem_type in INTEGER_TYPES:
        return "i32"
    if elem_type in BOOL_TYPES:
        return "bool"
    return None


def type_name(elem_type: int) -> str:
    return T.DataType.Name(elem_type) if elem_type in T.DataType.values() else str(elem_type)


def array_dtype(value: np.ndarray) -> str | None:
    """The IR dtype of a constant array (None: not computable)."""
    kind = np.asarray(value).dtype.kind
    return {"f": "f32", "i": "i32", "u": "i32", "b": "bool"}.get(kind)


def out_of_int32(value: np.ndarray) -> bool:
    value = np.asarray(value)
    return value.size > 0 and value.dtype.kind in "iu" and (
        int(value.min()) < INT32_RANGE[0] or int(value.max()) > INT32_RANGE[1])


def storage(value: np.ndarray, dtype: str) -> np.ndarray:
    """``value`` as the graph stores a constant of ``dtype``: float32, or int32 (bools 0/1)."""
    return np.ascontiguousarray(value, dtype=np.float32 if dtype == "f32" else np.int32)
