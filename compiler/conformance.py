"""An ``onnx.backend`` for nmc, so ONNX's own node test suite can serve as an outside oracle.

``prepare`` compiles the model for the ``ideal`` target; ``run`` executes the program on the
simulator. This is a verify step beside the compiler, the one place in ``compiler/`` allowed
to import ``runtime/``. Models nmc cannot compile raise a ``CompileError``: the backend never
answers with numbers it did not compute.

nmc compiles ahead of time, so weights, shapes, axes, pads and the like are compile-time
constants. ONNX's node tests pass them as graph inputs. When the compiler reports that a graph
input must be constant (``NotConstantError``), the backend compiles a specialisation with that
input bound to the value given at run time, as if the model had it as an initializer, and
compiles again whenever such a value changes, but only if every node reading it reads it as a
parameter by the op's definition (``PARAMETERS``: input positions per op type). Data inputs
(input 0 of every op, the integers of DequantizeLinear) stay program inputs: binding one would
let the frontend fold the node with ``onnx.reference``, checking ONNX against itself. A model
whose outputs the program computes from no program input at all raises ``NothingComputed``,
which is also a ``unittest.SkipTest``: a test harness records it as not run, never as passed.
"""
from __future__ import annotations

import unittest
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep

from nmc.compiler.driver import Compiled, compile_model
from nmc.compiler.errors import CompileError, NotConstantError
from nmc.compiler.ir.graph import Graph
from nmc.runtime import execute

_REDUCE_AXES = (1,)  # Reduce* from opset 13 (ReduceSum) / 18 (the others): axes as input 1
# Input positions that are parameters by each op's definition, for ops whose converter needs
# them as constants: the only graph inputs the backend may bind. Input 0 is data for every op.
PARAMETERS: dict[str, tuple[int, ...]] = {
    "BatchNormalization": (1, 2, 3, 4),  # scale, bias, mean, variance
    "Clip": (1, 2),                      # min, max
    "Conv": (1, 2),                      # weight, bias
    "ConvTranspose": (1, 2),             # weight, bias
    "CumSum": (1,),                      # axis
    "DequantizeLinear": (1, 2),          # scale, zero point
    "Dropout": (1, 2),                   # ratio, training_mode
    "Expand": (1,),                      # shape
    "Gemm": (2,),                        # C (the bias)
    "GRU": (1, 2, 3, 4), "RNN": (1, 2, 3, 4),  # W, R, B, sequence_lens (initial_h is data)
    "LSTM": (1, 2, 3, 4, 7),             # W, R, B, sequence_lens, P (initial_h/c are data)
    "LayerNormalization": (1, 2),        # scale, bias
    "Pad": (1, 2, 3),                    # pads, constant_value, axes
    "QuantizeLinear": (1, 2),            # scale, zero point
    "Resize": (1, 2, 3),                 # roi, scales, sizes
    "ReduceMax": _REDUCE_AXES, "ReduceMean": _REDUCE_AXES, "ReduceMin": _REDUCE_AXES,
    "ReduceSum": _REDUCE_AXES,
    "ReduceL1": _REDUCE_AXES, "ReduceL2": _REDUCE_AXES, "ReduceLogSum": _REDUCE_AXES,
    "ReduceLogSumExp": _REDUCE_AXES, "ReduceSumSquare": _REDUCE_AXES,
    "Reshape": (1,),                     # shape
    "Slice": (1, 2, 3, 4),               # starts, ends, axes, steps
    "Split": (1,),                       # split sizes
    "Squeeze": (1,), "Unsqueeze": (1,),  # axes
    "Tile": (1,),                        # repeats
    "Upsample": (1,),                    # scales
}


class NothingComputed(CompileError, unittest.SkipTest):
    """The compiled program computes none of the model's outputs from a program input: every
    node folded at compile time (with ``onnx.reference``), so running it would only compare
    ONNX's reference with ONNX's expected output. A ``SkipTest`` too, so tests report it as
    not run."""


class NmcBackendRep(BackendRep):
    """A model ready to run: inputs in the order of the graph inputs, outputs in the order of
    the graph outputs, each in the element type the model declares (nmc computes in float32)."""

    def __init__(self, model: onnx.ModelProto, target: str, bound: frozenset[str] = frozenset(),
                 compiled: Compiled | None = None):
        self.model, self.target = model, target
        inits = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in inits]
        self.output_names = [o.name for o in model.graph.output]
        self.output_dtypes = [helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type)
                              if o.type.tensor_type.elem_type else np.dtype(np.float32)
                              for o in model.graph.output]
        self.bound = set(bound)  # inputs the compiler needs as constants
        self._programs: dict[tuple, Compiled] = {} if compiled is None else {(): compiled}

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            feeds = {name: np.asarray(v) for name, v in inputs.items()}
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            if len(inputs) != len(self.input_names):
                raise ValueError(f"the model takes {len(self.input_names)} input(s) {self.input_names}, "
                                 f"got {len(inputs)}")
            feeds = {name: np.asarray(v) for name, v in zip(self.input_names, inputs)}
        compiled = self._compiled_for(feeds)
        # inputs the program never reads (unused, or bound above) are not among its ports
        results = execute(compiled.program, {port.name: feeds[port.name] for port in compiled.program.inputs})
        return tuple(np.asarray(results[name]).astype(dtype, copy=False)
                     for name, dtype in zip(self.output_names, self.output_dtypes))

    def _compiled_for(self, feeds: dict[str, np.ndarray]) -> Compiled:
        while True:
            key = tuple((name, feeds[name].dtype.str, feeds[name].shape, feeds[name].tobytes())
                        for name in sorted(self.bound))
            if key in self._programs:
                return self._programs[key]
            try:
                compiled = computes(compile_model(_bind(self.model, {n: feeds[n] for n in self.bound}),
                                                  target=self.target))
            except NotConstantError as e:
                if e.tensor not in feeds or e.tensor in self.bound:
                    raise
                check_bindable(self.model, e)
                self.bound.add(e.tensor)
                continue
            self._programs[key] = compiled
            return compiled


def check_bindable(model: onnx.ModelProto, error: NotConstantError) -> None:
    """Raise ``error``, saying why, unless every node reading the graph input it names reads it
    as a parameter (``PARAMETERS``)."""
    for index, node in enumerate(model.graph.node):
        for position, name in enumerate(node.input):
            if name != error.tensor:
                continue
            if node.domain in ("", "ai.onnx") and position in PARAMETERS.get(node.op_type, ()):
                continue
            raise NotConstantError(
                f"{error}; the conformance backend binds only parameters of an op, and input {position} of "
                f"{node.op_type} node {node.name or f'{node.op_type}_{index}'!r} is data: binding it would fold "
                "the node at compile time, so it stays a program input", error.tensor) from error


def computed_outputs(graph: Graph) -> list[str]:
    """The ONNX names of the graph outputs that depend on a program input."""
    live = set(graph.inputs)
    for node in graph.nodes():
        if live.intersection(node.inputs):
            live.update(node.outputs)
    return [name for name, tensor in zip(graph.port_names(), graph.outputs) if tensor in live]


def computes(compiled: Compiled) -> Compiled:
    """``compiled``, if its program computes at least one output from a program input."""
    if not computed_outputs(compiled.graph):
        raise NothingComputed("folded at compile time: the simulator computed nothing (every output of the "
                              "model is a constant of the program)")
    return compiled


def _bind(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` in which the graph inputs in ``values`` are initializers."""
    if not values:
        return model
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    kept = [vi for vi in bound.graph.input if vi.name not in values]
    del bound.graph.input[:]
    bound.graph.input.extend(kept)
    bound.graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in values.items())
    return bound


class NmcBackend(Backend):
    """nmc behind ONNX's backend interface (CPU only: the simulator runs on the host)."""

    target = "ideal"

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> NmcBackendRep:
        if not cls.supports_device(device):
            raise ValueError(f"nmc's backend runs on CPU, not {device}")
        super().prepare(model, device, **kwargs)
        try:
            compiled = computes(compile_model(model, target=cls.target))
        except NotConstantError as e:  # compiled at run time, once the value is known
            inputs = {vi.name for vi in model.graph.input} - {i.name for i in model.graph.initializer}
            if e.tensor not in inputs:
                raise
            check_bindable(model, e)
            return NmcBackendRep(model, cls.target, frozenset({e.tensor}))
        return NmcBackendRep(model, cls.target, compiled=compiled)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Run one node on ``inputs`` (in the order of the node's present inputs); the output
        types come from ONNX shape inference, so ``outputs_info`` is not needed."""
        arrays = [np.asarray(v) for v in inputs]
        present = [name for name in node.input if name]
        graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                        for name, v in zip(present, arrays)]
        outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
        opset = kwargs.pop("opset_version", None)
        extra = {"opset_imports": [helper.make_opsetid("", opset)]} if opset else {}
        model = helper.make_model(helper.make_graph([node], "node", graph_inputs, outputs), **extra)
        inferred = onnx.shape_inference.infer_shapes(model)  # output types for the checker
        del model.graph.output[:]
        model.graph.output.extend(inferred.graph.output)
        return cls.prepare(model, device).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"


prepare = NmcBackend.prepare
run_model = NmcBackend.run_model
run_node = NmcBackend.run_node
supports_device = NmcBackend.supports_device
