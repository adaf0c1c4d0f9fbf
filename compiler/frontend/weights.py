"""An ONNX model's weights apart from its graph.

The frontend needs the graph as a protobuf (for the ONNX checker and shape inference) and the
weights as arrays; one protobuf holding both holds the weights twice and copies them again
whenever it is serialised. ``read_file`` reads the protobuf of a model file without the data of
its large initializers (found by walking the protobuf's wire format) and reads that data
straight into arrays, so the weights are in memory once. ``skeleton`` does the same for a
``ModelProto`` already in memory. In the graph a large initializer (more than ``SMALL`` elements,
or in a file more than ``SMALL`` bytes of raw data) keeps its name, type and shape: a *stub*.
"""
from __future__ import annotations

import mmap
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Initializers of more elements than this are held apart from the graph; no shape is ever
# computed from so many values, so shape inference loses nothing by seeing only their type.
SMALL = 1024
# Element types whose raw data is the array's bytes (others are packed or strings).
_PLAIN = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.BOOL,
          TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16, TensorProto.INT32,
          TensorProto.UINT32, TensorProto.INT64, TensorProto.UINT64}
_GRAPH = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_INITIALIZER = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
_RAW_DATA = TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number
_LENGTH_DELIMITED = 2


class NotPlain(Exception):
    """The file is not a protobuf this reader takes apart (the caller reads it whole instead)."""


class DataError(ValueError):
    """An initializer's data does not match its type and shape."""


def large(t: TensorProto) -> bool:
    return t.data_type != TensorProto.STRING and int(np.prod(t.dims, dtype=np.int64)) > SMALL


def read_file(path: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The model in ``path`` with stubs for its large initializers, and their arrays (external
    data is read as ``onnx.load`` reads it)."""
    if sys.byteorder != "little":
        raise NotPlain("big-endian host")
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError) as e:  # an empty file cannot be mapped
            raise NotPlain(str(e)) from None
        try:
            structure, spans = _without_raw_data(buf)
            model = onnx.ModelProto()
            try:
                model.ParseFromString(structure)
            except Exception as e:  # protobuf raises several unrelated types on garbage
                raise NotPlain(str(e)) from None
            arrays = {}
            for index, t in enumerate(model.graph.initializer):
                if index in spans:
                    start, end = spans[index]
                    arrays[t.name] = _read_array(f, t, start, end - start)
        finally:
            buf.close()
    external = [t for t in model.graph.initializer if onnx.external_data_helper.uses_external_data(t)]
    try:
        onnx.external_data_helper.load_external_data_for_model(model, os.path.dirname(path))  # as onnx.load
    except Exception as e:  # a missing or short data file, a location outside the model's directory
        raise DataError(f"{path}: its external data cannot be read ({type(e).__name__}: {e})") from None
    for t in external:
        if large(t):
            arrays[t.name] = to_array(t)
            t.ClearField("raw_data")
    return model, arrays


def skeleton(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str]]:
    """A copy of ``model`` with stubs for its large initializers, and their names."""
    m = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(m, field, value)
    for field, value in model.graph.ListFields():
        if field.name != "initializer":
            _copy_field(m.graph, field, value)
    apart = set()
    for t in model.graph.initializer:
        if large(t) and t.data_location != TensorProto.EXTERNAL and _value_fields(t) == 1:
            m.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims)
            apart.add(t.name)
        else:  # the checker sees it whole, and reports it if it is malformed
            m.graph.initializer.add().CopyFrom(t)
    return m, apart


def checkable(model: onnx.ModelProto, apart: set[str]) -> onnx.ModelProto:
    """A copy of ``model`` the ONNX checker accepts without the data held apart: the stubs
    have an empty shape."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.name in apart:
            del t.dims[:]
            t.dims.append(0)
    return m


def to_array(t: TensorProto) -> np.ndarray:
    try:
        return numpy_helper.to_array(t)
    except (ValueError, TypeError) as e:
        raise DataError(_mismatch(t, str(e))) from None


_VALUE_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def _value_fields(t: TensorProto) -> int:
    return t.HasField("raw_data") + sum(len(getattr(t, f)) > 0 for f in _VALUE_FIELDS)


def _mismatch(t: TensorProto, why: str) -> str:
    try:
        kind = TensorProto.DataType.Name(t.data_type)
    except ValueError:
        kind = str(t.data_type)
    return f"initializer {t.name!r} (type {kind}, shape {list(t.dims)}): its data does not match them ({why})"


def _read_array(f, t: TensorProto, offset: int, size: int) -> np.ndarray:
    """The array of stub ``t`` whose raw data is ``size`` bytes at ``offset`` of file ``f``."""
    if _value_fields(t):
        raise onnx.checker.ValidationError(f"TensorProto (tensor name: {t.name}) should contain one and only "
                                           "one value field.")
    f.seek(offset)
    if t.data_type not in _PLAIN:
        full = TensorProto()
        full.CopyFrom(t)
        full.raw_data = f.read(size)
        return to_array(full)
    dtype = helper.tensor_dtype_to_np_dtype(t.data_type)
    count = int(np.prod(t.dims, dtype=np.int64))
    if count * dtype.itemsize != size:
        raise DataError(_mismatch(t, f"{size} bytes of raw data for {count} values of {dtype.itemsize} bytes"))
    array = np.empty(count, dtype)
    if f.readinto(memoryview(array.view(np.uint8))) != size:
        raise DataError(_mismatch(t, "the file ends inside its data"))
    return array.reshape(tuple(t.dims))


def _without_raw_data(buf) -> tuple[bytes, dict[int, tuple[int, int]]]:
    """The model's protobuf without the raw data of its large initializers, and where that data
    is: initializer index → (start, end) in ``buf``."""
    spans: dict[int, tuple[int, int]] = {}
    out, graphs = bytearray(), 0
    for number, wire, field_start, start, end in _fields(buf, 0, len(buf)):
        if number == _GRAPH and wire == _LENGTH_DELIMITED:
            graphs += 1
            out += _length_delimited(number, _graph_without_raw_data(buf, start, end, spans))
        else:
            out += buf[field_start:end]
    if graphs != 1:
        raise NotPlain(f"{graphs} graph fields")
    return bytes(out), spans


def _graph_without_raw_data(buf, start: int, end: int, spans: dict[int, tuple[int, int]]) -> bytes:
    out, index = bytearray(), 0
    for number, wire, field_start, value_start, value_end in _fields(buf, start, end):
        if number != _INITIALIZER or wire != _LENGTH_DELIMITED:
            out += buf[field_start:value_end]
            continue
        fields = list(_fields(buf, value_start, value_end))
        raw = [field for field in fields if field[0] == _RAW_DATA and field[1] == _LENGTH_DELIMITED]
        if len(raw) == 1 and raw[0][4] - raw[0][3] > SMALL:
            spans[index] = raw[0][3], raw[0][4]
            out += _length_delimited(number, b"".join(buf[f[2]:f[4]] for f in fields if f is not raw[0]))
        else:
            out += buf[field_start:value_end]
        index += 1
    return bytes(out)


def _fields(buf, start: int, end: int):
    """(number, wire type, start of the field, start of its value, end) of each field in ``buf[start:end]``."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, value_end = _varint(buf, pos)
        elif wire == 1:
            value_end = pos + 8
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(buf, pos)
            value_end = pos + length
        elif wire == 5:
            value_end = pos + 4
        else:
            raise NotPlain(f"wire type {wire}")
        if value_end > end or number == 0:
            raise NotPlain("a field runs past its message")
        yield number, wire, field_start, pos, value_end
        pos = value_end


def _varint(buf, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise NotPlain("a truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _copy_field(message, field, value) -> None:
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
    if repeated:
        getattr(message, field.name).extend(value)
    elif field.type == field.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)
