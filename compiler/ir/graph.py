"""The graph IR: a networkx DiGraph of operation nodes with typed payloads.

Tensors are named; each has a ``TensorType``. An edge ``u -> v`` means v reads a tensor u
writes (the tensor names are on the edge). Constants are numpy arrays held by the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import networkx as nx
import numpy as np

from nmc.compiler.errors import CompileError
from nmc.compiler.ir.ops import Op


# Element types of IR tensors: activations are f32; index and mask tensors (token ids, positions,
# attention masks and the comparisons that build them) are i32 or bool. Program buffers hold
# f32 or i32; a bool tensor lives in an i32 buffer as 0/1 (``BUFFER_DTYPES``).
TENSOR_DTYPES = ("f32", "i32", "bool")
BUFFER_DTYPES = {"f32": "f32", "i32": "i32", "bool": "i32"}


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "f32"  # one of TENSOR_DTYPES

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Node:
    """One operation. ``onnx_name``/``onnx_op`` say which model node it came from."""

    name: str
    op: Op
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    onnx_name: str = ""
    onnx_op: str = ""

    def describe(self) -> str:
        origin = f" (ONNX {self.onnx_op} {self.onnx_name!r})" if self.onnx_op else ""
        return f"node {self.name}{origin}"


@dataclass
class Graph:
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)  # ONNX names of ``outputs``, in order
    tensors: dict[str, TensorType] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    batched: bool = False
    mapping: dict = field(default_factory=dict)  # node name -> compiler.ir.mapping.LayerMapping
    ranges: dict = field(default_factory=dict)  # tensor -> (low, high) on calibration data (calibrate.py)
    calibration: dict = field(default_factory=dict)  # tensor -> its values on calibration samples [S, ...]
    batch_shapes: dict = field(default_factory=dict)  # ONNX tensor -> shape at batch ir.batch.BATCH_PROBE
    chip_plan: object = None  # compiler.ir.mapping.ChipPlan, set by placement
    dag: nx.DiGraph = field(default_factory=nx.DiGraph)
    _producer: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ building
    def add_node(self, node: Node) -> Node:
        if node.name in self.dag:
            raise CompileError(f"duplicate IR node name {node.name}")
        self.dag.add_node(node.name, node=node)
        for t in node.outputs:
            self._producer[t] = node.name
        self._link(node)
        return node

    def _link(self, node: Node) -> None:
        for t in node.inputs:
            src = self._producer.get(t)
            if src is not None and src != node.name:
                if self.dag.has_edge(src, node.name):
                    self.dag.edges[src, node.name]["tensors"].add(t)
                else:
                    self.dag.add_edge(src, node.name, tensors={t})
        for t in node.outputs:
            for consumer in self.consumers(t):
                if not self.dag.has_edge(node.name, consumer.name):
                    self.dag.add_edge(node.name, consumer.name, tensors={t})

    def remove_node(self, name: str) -> None:
        node = self.node(name)
        for t in node.outputs:
            if self._producer.get(t) == name:
                del self._producer[t]
        self.dag.remove_node(name)

    def replace_node(self, node: Node) -> None:
        """Swap the node of the same name for ``node`` (new payload or inputs)."""
        self.remove_node(node.name)
        self.add_node(node)

    def rename_uses(self, old: str, new: str) -> None:
        """Make every reader of tensor ``old`` read ``new`` instead (graph outputs too)."""
        for consumer in self.consumers(old):
            self.replace_node(replace(consumer, inputs=tuple(new if t == old else t for t in consumer.inputs)))
        self.outputs = [new if t == old else t for t in self.outputs]

    def port_names(self) -> list[str]:
        return self.output_names or list(self.outputs)

    def add_constant(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        self.constants[name] = np.ascontiguousarray(value, dtype=np.float32)
        self.tensors[name] = TensorType(tuple(self.constants[name].shape))
        return name

    def fresh(self, hint: str) -> str:
        base = hint or "t"
        name, n = base, 1
        while name in self.tensors or name in self.dag:
            name = f"{base}_{n}"
            n += 1
        return name

    # ------------------------------------------------------------------ queries
    def node(self, name: str) -> Node:
        return self.dag.nodes[name]["node"]

    def nodes(self) -> Iterator[Node]:
        """Nodes in a topological order (stable: ties broken by insertion order)."""
        order = {n: i for i, n in enumerate(self.dag.nodes)}
        for name in nx.lexicographical_topological_sort(self.dag, key=order.__getitem__):
            yield self.node(name)

    def producer(self, tensor: str) -> Node | None:
        name = self._producer.get(tensor)
        return None if name is None else self.node(name)

    def consumers(self, tensor: str) -> list[Node]:
        return [d["node"] for _, d in self.dag.nodes(data=True) if tensor in d["node"].inputs]

    def is_const(self, tensor: str) -> bool:
        return tensor in self.constants

    def shape(self, tensor: str) -> tuple[int, ...]:
        return self.tensors[tensor].shape

    def dtype(self, tensor: str) -> str:
        return self.tensors[tensor].dtype

    def __len__(self) -> int:
        return self.dag.number_of_nodes()
