"""What every pass is: a small named, typed object whose fields are its options."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, ClassVar

from nmc.compiler.errors import CompileError
from nmc.compiler.ir.graph import Graph

if TYPE_CHECKING:
    from nmc.backends.target import Target


@dataclass(frozen=True)
class Pass:
    """``run(graph, target)`` rewrites the graph (or its mapping records) in place and says
    whether it changed anything."""

    name: ClassVar[str] = "pass"
    requires: ClassVar[tuple[str, ...]] = ()  # contracts (passes/contracts.py) that must hold before run
    ensures: ClassVar[tuple[str, ...]] = ()   # contracts that hold after it

    def run(self, g: Graph, target: "Target | None" = None) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def with_options(self, text: str) -> "Pass":
        """``"rows=128,cols=64"`` → a copy of this pass with those option fields set."""
        values = {}
        known = {f.name: f for f in fields(self)}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, equals, raw = (part.strip() for part in item.partition("="))
            if key not in known:
                raise CompileError(f"pass {self.name} has no option {key!r}; options: {', '.join(known) or 'none'}")
            current = getattr(self, key)
            if isinstance(current, tuple):
                raise CompileError(f"pass {self.name}: option {key} is set by the compiler, not by text")
            if not equals or not raw:
                raise CompileError(f"pass {self.name}: option {key} needs a value: {key}={current!r}")
            kind = {bool: "a boolean", int: "an integer", float: "a number"}.get(type(current), type(current).__name__)
            try:
                values[key] = (raw.lower() in ("1", "true", "yes")) if isinstance(current, bool) else type(current)(raw)
            except ValueError:
                raise CompileError(f"pass {self.name}: option {key}={raw!r} is not {kind}") from None
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **values})


def crossbar_layers(g: Graph):
    """(node, mapping) of every layer the partition put on crossbars, in topological order."""
    for node in list(g.nodes()):
        mapping = g.mapping.get(node.name)
        if mapping is not None and mapping.unit == "crossbar":
            yield node, mapping
