"""What a converter sees of one ONNX node, and how it adds IR nodes."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from nmc.compiler.errors import CompileError, ModelError, NotConstantError, UnsupportedOpError
from nmc.compiler.frontend.dtypes import array_dtype, out_of_int32, storage
from nmc.compiler.ir.graph import Graph, Node, TensorType
from nmc.compiler.ir.ops import Cast, Op


class NodeContext:
    def __init__(self, graph: Graph, node: onnx.NodeProto, opset: int, consts: dict[str, np.ndarray],
                 shapes: dict[str, tuple], alias: dict[str, str], index: int,
                 rejected: dict[str, str] | None = None, quantized: dict | None = None):
        self.g, self.node, self.opset = graph, node, opset
        self.quantized = {} if quantized is None else quantized  # QuantizeLinear outputs (ops/quant.py)
        self._consts, self._shapes, self._alias = consts, shapes, alias
        self._rejected = {} if rejected is None else rejected  # tensors nmc cannot provide -> why
        self._attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.label = node.name or f"{node.op_type}_{index}"

    # ------------------------------------------------------------------ reading
    def fail(self, message: str) -> CompileError:
        return UnsupportedOpError(f"node {self.label!r} ({self.node.op_type}, opset {self.opset}): {message}")

    def attr(self, name: str, default=None):
        value = self._attrs.get(name, default)
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        return value

    def n_inputs(self) -> int:
        return len(self.node.input)

    def has_input(self, i: int) -> bool:
        return i < len(self.node.input) and bool(self.node.input[i])

    def input(self, i: int) -> str:
        """The IR tensor read by input ``i`` (constants get registered on first use)."""
        name = self.node.input[i]
        name = self._alias.get(name, name)
        if name in self.quantized:
            raise self.fail(f"input {name!r} is the integer output of QuantizeLinear node "
                            f"{self.quantized[name].label!r}; nmc computes float tensors, so only a "
                            "DequantizeLinear may read it")
        if name not in self.g.tensors and name in self._consts:
            value = self._consts[name]
            dtype = array_dtype(value)
            if dtype is None:
                raise self.fail(f"constant input {name!r} has unsupported type {value.dtype}")
            if out_of_int32(value):
                raise self.fail(f"constant input {name!r} holds {value.dtype} values beyond int32 "
                                f"([{int(value.min())}, {int(value.max())}]); nmc computes integers in int32")
            self.g.constants[name] = storage(value, dtype)
            self.g.tensors[name] = TensorType(tuple(value.shape), dtype)
        if name in self._rejected and name not in self.g.tensors:
            raise ModelError(f"node {self.label!r} ({self.node.op_type}) reads {self._rejected[name]}")
        if name not in self.g.tensors:
            raise self.fail(f"input {name!r} is not defined")
        return name

    def const(self, i: int) -> np.ndarray | None:
        """The value of input ``i`` if it is known at compile time."""
        if not self.has_input(i):
            return None
        name = self.node.input[i]
        name = self._alias.get(name, name)
        if name in self._consts:
            return self._consts[name]
        return self.g.constants.get(name)

    def need_const(self, i: int, what: str) -> np.ndarray:
        value = self.const(i)
        if value is None:
            raise NotConstantError(
                f"node {self.label!r} ({self.node.op_type}, opset {self.opset}): {what} (input {i}, "
                f"{self.node.input[i]!r}) must be a constant known at compile time", self.node.input[i])
        return value

    def optional_const(self, i: int, what: str) -> np.ndarray | None:
        """The value of optional input ``i`` (None when absent); present inputs must be constant."""
        return self.need_const(i, what) if self.has_input(i) else None

    def integer_input(self, i: int) -> str | None:
        """Input ``i`` as a float tensor when it is a graph input (sequence lengths): an integer
        input goes through one ``Cast`` to f32 (exact below 2^24); None when input ``i`` is not a
        graph input. Only a converter that reads small whole numbers may ask."""
        name = self._alias.get(self.node.input[i], self.node.input[i])
        if name not in self.g.inputs:
            return None
        if self.g.dtype(name) == "f32":
            return name
        as_float = f"{name}.f32"  # an i32 program input, converted once (exact below 2^24)
        if as_float not in self.g.tensors:
            self.g.tensors[as_float] = TensorType(self.g.shape(name), "f32")
            self.g.add_node(Node(self.g.fresh(f"{name}_cast_f32"), Cast("f32"), (name,), (as_float,),
                                 self.node.name, "Cast"))
        return as_float

    def shape(self, i: int) -> tuple[int, ...]:
        return self.g.shape(self.input(i))

    def out_shape(self, i: int = 0) -> tuple[int, ...]:
        name = self.node.output[i]
        shape, elem = self._shapes.get(name, (None, None))
        if shape is None:
            raise self.fail(f"the shape of output {name!r} is not static after shape inference")
        return tuple(int(d) for d in shape)

    def out_elem_type(self, i: int = 0) -> int:
        """The ONNX element type of output ``i`` after shape inference (0 when unknown)."""
        return self._shapes.get(self.node.output[i], (None, 0))[1] or 0

    def in_elem_type(self, i: int = 0) -> int:
        """The ONNX element type of input ``i`` as the model declares or infers it (0 when
        unknown); the IR holds every float tensor as float32."""
        if not self.has_input(i):
            return 0
        return self._shapes.get(self.node.input[i], (None, 0))[1] or 0

    @property
    def output(self) -> str:
        return self.node.output[0]

    # ------------------------------------------------------------------ writing
    def emit(self, op: Op, inputs: list[str], output: str | None = None, shape: tuple[int, ...] | None = None,
             dtype: str | None = None) -> str:
        """Add an IR node; by default it produces the ONNX node's first output, of the element
        type of its first input (converters that change the type say ``dtype``)."""
        out = output or self.node.output[0]
        if shape is None:
            shape = self.out_shape(0)
        if dtype is None:
            dtype = self.g.dtype(inputs[0]) if inputs and inputs[0] in self.g.tensors else "f32"
        self.g.tensors[out] = TensorType(tuple(int(d) for d in shape), dtype)
        name = self.g.fresh(f"n{len(self.g)}_{type(op).__name__.lower()}")
        self.g.add_node(Node(name, op, tuple(inputs), (out,), self.node.name, self.node.op_type))
        return out

    def temp(self, hint: str) -> str:
        return self.g.fresh(f"{self.node.output[0]}.{hint}")

    def alias(self, output: str, source: str) -> None:
        """The ONNX tensor ``output`` is the IR tensor ``source`` (Identity, Dropout)."""
        self._alias[output] = source

    def add_const(self, hint: str, value: np.ndarray) -> str:
        return self.g.add_constant(f"{self.node.output[0]}.{hint}", value)

    def chain(self, x: str, steps: list[tuple], output: str | None = None) -> str:
        """Apply ``steps`` to ``x`` in order and return the result: each ``(op, shape, hint)`` or
        ``(op, shape, hint, inputs)`` reads the previous result (``None`` in ``inputs`` marks its
        place among other operands; default: it alone). The last step writes ``output`` (by
        default the node's first output); no steps at all make that output an alias of ``x``."""
        output = output or self.node.output[0]
        for index, (op, shape, hint, *rest) in enumerate(steps):
            inputs = [x if t is None else t for t in (rest[0] if rest else [None])]
            last = index == len(steps) - 1
            x = self.emit(op, inputs, output if last else self.temp(hint), tuple(shape))
        if not steps:
            self.alias(output, x)
        return x

    def unavailable(self, output: str, why: str) -> None:
        """Output ``output`` of this node is not computed: a node or graph output reading it is a
        ``ModelError`` saying ``why``, a noun phrase without its article ("mask output 'm' of ...")."""
        self._rejected[output] = why


def norm_axis(axis: int, rank: int, ctx: NodeContext) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ctx.fail(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0
