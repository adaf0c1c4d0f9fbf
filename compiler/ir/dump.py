"""A readable text form of the graph IR (``nmc compile --dump-ir``), with each node's mapping
record (``graph.mapping``) indented under it."""
from __future__ import annotations

from dataclasses import fields

from nmc.compiler.ir.graph import Graph
from nmc.compiler.ir.mapping import LayerMapping


def _ty(g: Graph, t: str) -> str:
    ty = g.tensors[t]
    return f"{ty.dtype}[{','.join(map(str, ty.shape))}]"


def dump(g: Graph) -> str:
    lines = [f"graph ({'batched' if g.batched else 'fixed batch'})"]
    for t in g.inputs:
        lines.append(f"  input  %{t}: {_ty(g, t)}")
    for t, value in g.constants.items():
        lines.append(f"  const  ${t}: {_ty(g, t)}")
    for node in g.nodes():
        attrs = ", ".join(f"{f.name}={getattr(node.op, f.name)!r}" for f in fields(node.op))
        args = ", ".join(("$" if g.is_const(t) else "%") + t for t in node.inputs)
        outs = ", ".join(f"%{t}: {_ty(g, t)}" for t in node.outputs)
        origin = f"  // {node.onnx_op} {node.onnx_name}" if node.onnx_op else ""
        lines.append(f"  {outs} = {type(node.op).__name__}({attrs})({args}){origin}")
        record = g.mapping.get(node.name)
        if record is not None:
            lines.extend("    " + line for line in mapping_lines(g, record))
    lines.append("  return " + ", ".join("%" + t for t in g.outputs))
    return "\n".join(lines) + "\n"


def mapping_lines(g: Graph, record: LayerMapping) -> list[str]:
    """A node's mapping record as text: unit and reason, quantisation, one line per tile or CAM
    block; constants by name and type, never their values."""
    lines = [f"map {record.unit}: {record.reason}"]
    q = record.quant
    if q is not None:
        scale = "per sample (dynamic)" if q.input_scale is None else f"{q.input_scale:.6g} ({q.input_range_source})"
        lines.append(f"quant weights ${q.weights}: {_ty(g, q.weights)} {q.weight_bits}-bit, scales ${q.weight_scale}: "
                     f"{_ty(g, q.weight_scale)}; inputs {q.input_bits}-bit "
                     f"{'signed' if q.input_signed else 'unsigned'}, scale {scale}")
    for i, t in enumerate(record.tiles):
        place = f"core {t.core} xbar {t.xbar}" if t.core >= 0 else "unplaced"
        adc = f"adc {t.adc_range:g} ({t.adc_range_source})" if t.adc_range_source else "adc unset"
        lines.append(f"tile {i}: groups [{t.group},{t.group + t.groups}) "
                     f"channels [{t.channel},{t.channel + t.channels}) outs [{t.out},{t.out + t.outs}) "
                     f"rows {t.rows} cols {t.cols} {place} {adc}")
    cam = record.cam
    if cam is not None:
        lines.append(f"cam {cam.paths} paths in {cam.rows} rows × {cam.columns} cells on {cam.cores} cores "
                     f"({cam.arrays} arrays, utilization {cam.utilization:.4f}, "
                     f"{'lossless' if cam.lossless else 'lossy'}); bounds ${cam.lo}: {_ty(g, cam.lo)}, "
                     f"${cam.hi}: {_ty(g, cam.hi)}; leaves ${cam.leaves}: {_ty(g, cam.leaves)}")
        for c in cam.codes:
            lines.append(f"feature {c.feature}: {c.levels} levels in {c.cells} cells, cuts {len(c.ge)} >= and "
                         f"{len(c.gt)} >, {c.distinct} distinct, {c.merged} merged")
        for i, b in enumerate(cam.blocks):
            lines.append(f"cam block {i}: rows [{b.row},{b.row + b.rows}) core {b.core} chained {b.chained}, "
                         f"{b.trees} trees")
        lines.extend(f"warning: {w}" for w in cam.warnings)
    return lines
