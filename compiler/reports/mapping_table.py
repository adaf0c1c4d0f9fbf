"""The mapping table: per layer, where it runs and why, stored as ``mapping.json`` in a ``.nmc``.

``nmc report`` reads it back so a report needs the program file alone. Programs saved without
it (older files) get the table the program itself implies (``from_program``): the layer table,
the tiles and which layer's ``xmvm`` reads each tile; the reasons and range sources are then
unknown.
"""
from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass

from nmc.backends.tile_arithmetic import TileArithmetic
from nmc.compiler.errors import InternalError
from nmc.isa.program import Program

ATTACHMENT = "mapping.json"
VERSION = 1
UNKNOWN = "not recorded (program saved without mapping.json)"


def tile_layers(program: Program) -> dict[str, int]:
    """Tile name → index of the layer it belongs to."""
    return {name: tile.layer for name, tile in program.tiles.items()}


def cells_per_weight(crossbar, weight_bits: int | None = None) -> int:
    """Crossbar columns one weight of ``weight_bits`` (default: the target's) takes."""
    if crossbar is None:
        return 1
    return TileArithmetic.planned(crossbar, weight_bits or crossbar.weight_bits).columns_per_weight


def _program_tile(program: Program, name: str, crossbar) -> dict:
    tile = program.tiles[name]
    outs, rows = program.consts[tile.weights].shape
    return {"tile": name, "core": tile.core, "xbar": tile.xbar, "rows": int(rows) * tile.copies,
            "cols": TileArithmetic.of(tile, crossbar).columns(int(outs)), "adc_range": float(tile.adc_range),
            "in_bits": tile.in_bits, "in_signed": tile.in_signed, "weight_bits": tile.weight_bits,
            "copies": tile.copies}


def mapping_table(graph, program: Program, target) -> dict:
    """The table of a compilation (``Compiled.graph``, ``.program``, ``.target``) as JSON-able data.

    Layer ``i`` of the program is the ``i``-th graph node (codegen opens one layer per node).
    Unknown record fields (a future core kind's tiles) pass through as they are.
    """
    crossbar = target.crossbar
    by_place = {(t.core, t.xbar, t.round, t.row): name for name, t in program.tiles.items()}
    nodes = list(graph.nodes())
    layers = []
    for layer in program.layers:
        node = nodes[layer.index] if layer.index < len(nodes) else None
        if node is not None and layer.name != (node.onnx_name or node.name):
            raise InternalError(f"layer {layer.index} {layer.name!r} is not graph node {layer.index} "
                                f"{node.onnx_name or node.name!r}: codegen and the graph disagree on layer order")
        record = graph.mapping.get(node.name) if node is not None else None
        entry = {"index": layer.index, "name": layer.name, "op": layer.op,
                 "node": node.name if node else "", "ir_op": type(node.op).__name__ if node else "",
                 "unit": record.unit if record else "vector", "reason": record.reason if record else "",
                 "weight_bits": None, "input_bits": None, "input_signed": None, "input_range_source": None,
                 "tiles": []}
        quant = getattr(record, "quant", None)
        if quant is not None:
            entry.update(weight_bits=quant.weight_bits, input_bits=quant.input_bits,
                         input_signed=quant.input_signed, input_range_source=quant.input_range_source,
                         cells_per_weight=cells_per_weight(crossbar, quant.weight_bits))
        for block in getattr(record, "tiles", ()):
            tile = _jsonable(block)
            name = by_place.get((tile.get("core"), tile.get("xbar"), tile.get("round", 0), tile.get("row", 0)))
            if name is not None:
                tile["tile"] = name
                tile.setdefault("in_bits", program.tiles[name].in_bits)
            entry["tiles"].append(tile)
        for name, value in (vars(record).items() if record is not None else ()):
            if name not in ("unit", "reason", "quant", "tiles") and value is not None:
                entry[name] = _jsonable(value)  # records of other core kinds (e.g. CAM), as they are
        layers.append(entry)
    return {"version": VERSION, "source": "compiler", "target": target.name,
            "crossbar_cells_per_weight": cells_per_weight(crossbar), "layers": layers}


def from_program(program: Program, target) -> dict:
    """The table a program implies without ``mapping.json``: units and tiles, no reasons."""
    crossbar = target.crossbar
    owners = tile_layers(program)
    layers = []
    for layer in program.layers:
        tiles = [_program_tile(program, name, crossbar) for name, index in sorted(owners.items(),
                 key=lambda kv: (program.tiles[kv[0]].core, program.tiles[kv[0]].xbar)) if index == layer.index]
        layers.append({"index": layer.index, "name": layer.name, "op": layer.op, "node": "", "ir_op": "",
                       "unit": "crossbar" if tiles else "vector", "reason": UNKNOWN,
                       "weight_bits": tiles[0]["weight_bits"] if tiles else None,
                       "cells_per_weight": cells_per_weight(crossbar, tiles[0]["weight_bits"]) if tiles else None,
                       "input_bits": tiles[0]["in_bits"] if tiles else None,
                       "input_signed": tiles[0]["in_signed"] if tiles else None,
                       "input_range_source": UNKNOWN if tiles else None,
                       "tiles": [dict(t, adc_range_source=UNKNOWN) for t in tiles]})
    return {"version": VERSION, "source": "program", "target": program.target,
            "crossbar_cells_per_weight": cells_per_weight(crossbar), "layers": layers}


def to_json(table: dict) -> str:
    return json.dumps(table, indent=1)


def read(attachments: dict[str, str], program: Program, target) -> dict:
    """The stored table if the program file has one, else the one the program implies."""
    if ATTACHMENT in attachments:
        return json.loads(attachments[ATTACHMENT])
    return from_program(program, target)


def _jsonable(value):
    """Dataclasses, tuples and numpy scalars → JSON-able dicts, lists and numbers."""
    if is_dataclass(value):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value.item() if hasattr(value, "item") else value
