"""A readable text form of the graph IR (``nmc compile --dump-ir``)."""
from __future__ import annotations

from dataclasses import fields

from nmc.compiler.ir.graph import Graph


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
    lines.append("  return " + ", ".join("%" + t for t in g.outputs))
    return "\n".join(lines) + "\n"
