"""Pass contracts: named predicates over the graph that a pass ``requires`` before it runs and
``ensures`` after it (class attributes naming entries of ``CONTRACTS``).

``compile_model(check=True)`` checks them around every pass (``driver.run_pass``) and raises a
``VerifyError`` naming the pass and the contract. Each predicate returns ``""`` when it holds,
else where it fails first (the node). The structural consistency of the records themselves
(tiles covering the matrix exactly once, sizes within the target) is ``verify``'s job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph
from nmc.compiler.ir.verify import VerifyError

if TYPE_CHECKING:
    from nmc.compiler.passes.base import Pass


@dataclass(frozen=True)
class Contract:
    name: str
    says: str                        # what holds, in one line
    violation: Callable[[Graph], str]  # "" when it holds, else where it fails


CONTRACTS: dict[str, Contract] = {}


def contract(name: str):
    """Register a predicate under ``name``; the first line of its docstring says what holds."""
    def register(fn: Callable[[Graph], str]) -> Callable[[Graph], str]:
        CONTRACTS[name] = Contract(name, fn.__doc__.strip().splitlines()[0], fn)
        return fn
    return register


def check(p: "Pass", g: Graph, when: str) -> None:
    """Check ``p.requires`` (``when="requires"``) or ``p.ensures`` on ``g``."""
    for name in getattr(p, when):
        found = CONTRACTS.get(name)
        if found is None:
            raise VerifyError(f"pass {p.name} {when} {name!r}, which is no contract; contracts: "
                              f"{', '.join(CONTRACTS)}")
        problem = found.violation(g)
        if problem:
            verb = "requires" if when == "requires" else "did not ensure"
            raise VerifyError(f"pass {p.name} {verb} {name} ({found.says}): {problem}")


def _crossbar_records(g: Graph):
    for node in g.nodes():
        record = g.mapping.get(node.name)
        if record is not None and record.unit == "crossbar":
            yield node, record


# ---------------------------------------------------------------------- fold-batchnorm
@contract("no-mapping-records")
def no_mapping_records(g: Graph) -> str:
    """no node has a mapping record yet (passes that replace nodes run before partition)"""
    return f"node {next(iter(g.mapping))} has one" if g.mapping else ""


@contract("batchnorm-folded")
def batchnorm_folded(g: Graph) -> str:
    """no BatchNorm is left that could merge into the Conv or Dense producing its input alone"""
    for node in g.nodes():
        if not isinstance(node.op, ops.BatchNorm):
            continue
        prev = g.producer(node.inputs[0])
        if (prev is not None and isinstance(prev.op, (ops.Conv, ops.Dense))
                and len(g.consumers(prev.outputs[0])) == 1 and prev.outputs[0] not in g.outputs
                and not (isinstance(prev.op, ops.Dense) and len(g.shape(prev.outputs[0])) != 2)):
            return f"{node.describe()} still follows {prev.describe()}"
    return ""


# ---------------------------------------------------------------------- partition
@contract("every-node-partitioned")
def every_node_partitioned(g: Graph) -> str:
    """every node has a mapping record with a unit (crossbar, vector or cam) and a reason"""
    for node in g.nodes():
        record = g.mapping.get(node.name)
        if record is None:
            return f"{node.describe()} has no mapping record"
        if record.unit not in ("crossbar", "vector", "cam") or not record.reason:
            return f"{node.describe()}: unit {record.unit!r}, reason {record.reason!r}"
    return ""


@contract("crossbars-hold-matrix-layers")
def crossbars_hold_matrix_layers(g: Graph) -> str:
    """only Dense and Conv layers (constant weights) are put on crossbars"""
    for node, _ in _crossbar_records(g):
        if not isinstance(node.op, (ops.Dense, ops.Conv)):
            return f"{node.describe()} is a {type(node.op).__name__}"
    return ""


# ---------------------------------------------------------------------- quantize
@contract("crossbar-layers-quantized")
def crossbar_layers_quantized(g: Graph) -> str:
    """every crossbar layer's record has quant: integer weights [G, M/G, K/G] and a scale per output"""
    for node, record in _crossbar_records(g):
        quant = record.quant
        if quant is None:
            return f"{node.describe()}: crossbar record has no quant"
        q, scale = g.constants.get(quant.weights), g.constants.get(quant.weight_scale)
        if q is None or scale is None:
            return f"{node.describe()}: quant names constants {quant.weights!r}, {quant.weight_scale!r} the graph lacks"
        if not np.issubdtype(q.dtype, np.integer) or q.ndim != 3 or scale.shape != (q.shape[0] * q.shape[1],):
            return (f"{node.describe()}: quantised weights {q.dtype}{list(q.shape)} with scales {list(scale.shape)}, "
                    "not integers [G, M/G, K/G] with one scale per output")
    return ""


# ---------------------------------------------------------------------- tile-mapping
@contract("crossbar-layers-tiled")
def crossbar_layers_tiled(g: Graph) -> str:
    """every crossbar layer has tiles (blocks of its weight matrix, one per crossbar)"""
    for node, record in _crossbar_records(g):
        if not record.tiles:
            return f"{node.describe()}: crossbar record has no tiles"
    return ""


# ---------------------------------------------------------------------- bit-slicing
@contract("adc-ranges-set")
def adc_ranges_set(g: Graph) -> str:
    """every tile has an ADC range > 0 and says where it came from"""
    for node, record in _crossbar_records(g):
        for i, tile in enumerate(record.tiles):
            if not tile.adc_range > 0 or not tile.adc_range_source:
                return f"{node.describe()}: tile {i} has ADC range {tile.adc_range} from {tile.adc_range_source!r}"
    return ""


# ---------------------------------------------------------------------- placement
@contract("tiles-placed")
def tiles_placed(g: Graph) -> str:
    """every tile has a core and a crossbar index

    (``verify`` checks that they lie within the target and that no two tiles share a crossbar.)"""
    for node, record in _crossbar_records(g):
        for i, tile in enumerate(record.tiles):
            if tile.core < 0 or tile.xbar < 0:
                return f"{node.describe()}: tile {i} is on core {tile.core}, crossbar {tile.xbar}"
    return ""


# ---------------------------------------------------------------------- cam-mapping
@contract("trees-on-cam")
def trees_on_cam(g: Graph) -> str:
    """every tree ensemble has a cam record with its CAM mapping"""
    for node in g.nodes():
        if isinstance(node.op, ops.TreeEnsemble):
            record = g.mapping.get(node.name)
            if record is None or record.unit != "cam" or record.cam is None:
                return f"{node.describe()} has no CAM mapping"
    return ""
