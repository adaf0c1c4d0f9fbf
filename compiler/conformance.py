"""An ``onnx.backend`` for nmc, so ONNX's own node test suite can serve as an outside oracle.

``prepare`` compiles the model for the ``ideal`` target; ``run`` executes the program on the
simulator. This is a verify step beside the compiler, the one place in ``compiler/`` allowed
to import ``runtime/``. Models nmc cannot compile raise a ``CompileError``: the backend never
answers with numbers it did not compute.

nmc compiles ahead of time, so weights, shapes, axes, pads and the like are compile-time
constants. ONNX's node tests pass them as graph inputs. When the compiler reports that a graph
input must be constant (``NotConstantError``), the backend compiles a specialisation with that
input bound to the value given at run time, as if the model had it as an initializer, and
compiles again whenever such a value changes. Data inputs always stay inputs of the program.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep

from nmc.compiler.driver import Compiled, compile_model
from nmc.compiler.errors import NotConstantError
from nmc.runtime import execute


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
                compiled = compile_model(_bind(self.model, {n: feeds[n] for n in self.bound}), target=self.target)
            except NotConstantError as e:
                if e.tensor not in feeds or e.tensor in self.bound:
                    raise
                self.bound.add(e.tensor)
                continue
            self._programs[key] = compiled
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
            compiled = compile_model(model, target=cls.target)
        except NotConstantError as e:  # compiled at run time, once the value is known
            inputs = {vi.name for vi in model.graph.input} - {i.name for i in model.graph.initializer}
            if e.tensor not in inputs:
                raise
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
