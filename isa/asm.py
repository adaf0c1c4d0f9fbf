"""Text assembly: ``parse`` (lark) and ``format`` (the printer). ``parse(format(p))`` gives
back ``p`` and ``format(parse(text))`` gives back ``text`` for printed text."""
from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

import lark
from lark import Transformer, v_args

from nmc.isa.errors import AsmSyntaxError
from nmc.isa.instructions import OPCODES, Instr, Loop
from nmc.isa.program import Buffer, Const, Layer, Port, Program, Tile
from nmc.isa.views import Affine, CoreRef, Imm, View, WeightRef

_INDENT = "    "


# ----------------------------------------------------------------------------- printing
def _fmt_affine(a: Affine) -> str:
    text = str(a.const)
    for var, coef in a.terms:
        text += f" {'-' if coef < 0 else '+'} {abs(coef)}*%{var}"
    return text


def _fmt_imm(value: float) -> str:
    return "#" + repr(float(value))


def format_operand(op) -> str:
    if isinstance(op, View):
        dims = ", ".join(f"{size}:{stride}" for size, stride in op.dims)
        return f"{op.buffer}[{_fmt_affine(op.offset)}; {dims}]"
    if isinstance(op, WeightRef):
        return f"@{op.name}" + (f"[{_fmt_affine(op.index)}]" if op.index is not None else "")
    if isinstance(op, Imm):
        return _fmt_imm(op.value)
    if isinstance(op, CoreRef):
        return f"${op.core}"
    raise TypeError(f"not an operand: {op!r}")


def format_instr(ins: Instr) -> str:
    text = ins.opcode
    if ins.operands:
        text += " " + ", ".join(format_operand(op) for op in ins.operands)
    if ins.layer >= 0:
        text += f" !{ins.layer}"
    return text


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _fmt_stmts(stmts, depth: int, lines: list[str]) -> None:
    for s in stmts:
        pad = _INDENT * depth
        if isinstance(s, Loop):
            lines.append(f"{pad}{s.keyword} %{s.var}, {s.count} {{")
            _fmt_stmts(s.body, depth + 1, lines)
            lines.append(f"{pad}}}")
        else:
            lines.append(pad + format_instr(s))


def format_program(p: Program) -> str:
    """The canonical text of a program (its data section is not part of the text)."""
    lines = [f".nmc {p.version}", f".target {json.dumps(p.target)}",
             f".batched {'true' if p.batched else 'false'}"]
    for kind, ports in ((".input", p.inputs), (".output", p.outputs)):
        for port in ports:
            lines.append(f"{kind} {json.dumps(port.name)} {port.buffer} {port.dtype} {_fmt_shape(port.shape)}")
    for b in p.buffers.values():
        lines.append(f".buffer {b.name} {b.dtype} {b.size} {b.space}")
    for c in p.consts.values():
        lines.append(f".const {c.name} {c.dtype} {_fmt_shape(c.shape)}")
    for t in p.tiles.values():
        lines.append(f".tile {t.name} weights={t.weights} core={t.core} xbar={t.xbar} row={t.row} col={t.col} "
                     f"in_bits={t.in_bits} in_signed={int(t.in_signed)} adc_range={float(t.adc_range)!r} "
                     f"weight_bits={t.weight_bits} layer={t.layer}" + (f" copies={t.copies}" if t.copies != 1 else "")
                     + (f" round={t.round}" if t.round else ""))
    for layer in p.layers:
        lines.append(f".layer {layer.index} {json.dumps(layer.name)} {json.dumps(layer.op)}")
    for core in sorted(p.cores):
        lines.append(f".core {core}")
        _fmt_stmts(p.cores[core], 1, lines)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- parsing
class _Semantic(Exception):
    def __init__(self, message: str, token):
        self.message, self.token = message, token


@v_args(inline=True)
class _Build(Transformer):
    def __init__(self):
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.p = Program(target="", batched=False)
        self.seen_version = None

    # header
    def version(self, n):
        self.seen_version = int(n)

    def target(self, s):
        self.p.target = json.loads(s)

    def batched(self, b):
        self.p.batched = str(b) == "true"

    def shape(self, *dims):
        return tuple(int(d) for d in dims if d is not None)

    def input(self, name, buf, dtype, shape):
        self.p.inputs.append(Port(json.loads(name), str(buf), str(dtype), shape))

    def output(self, name, buf, dtype, shape):
        self.p.outputs.append(Port(json.loads(name), str(buf), str(dtype), shape))

    def buffer(self, name, dtype, size, space):
        if str(name) in self.p.buffers:
            raise _Semantic(f"buffer {name} declared twice", name)
        self.p.buffers[str(name)] = Buffer(str(name), str(dtype), int(size), str(space))

    def const(self, name, dtype, shape):
        if str(name) in self.p.consts:
            raise _Semantic(f"constant {name} declared twice", name)
        self.p.consts[str(name)] = Const(str(name), str(dtype), shape)

    def field(self, key, value):
        return (key, value)

    def tile(self, name, *fields):
        values = {}
        for key, value in fields:
            if str(key) not in Tile.FIELDS + Tile.OPTIONAL:
                raise _Semantic(f"unknown tile field {key}; fields: {', '.join(Tile.FIELDS + Tile.OPTIONAL)}", key)
            if str(key) in values:
                raise _Semantic(f"tile field {key} given twice", key)
            values[str(key)] = value
        missing = [k for k in Tile.FIELDS if k not in values]
        if missing:
            raise _Semantic(f"tile {name} lacks field(s) {', '.join(missing)}", name)
        try:
            tile = Tile(str(name), str(values["weights"]), int(values["core"]), int(values["xbar"]),
                        int(values["row"]), int(values["col"]), int(values["in_bits"]),
                        bool(int(values["in_signed"])), float(values["adc_range"]), int(values["weight_bits"]),
                        int(values["layer"]), int(values.get("copies", 1)), int(values.get("round", 0)))
        except ValueError as e:
            raise _Semantic(f"tile {name}: bad field value ({e})", name) from None
        if str(name) in self.p.tiles:
            raise _Semantic(f"tile {name} declared twice", name)
        self.p.tiles[str(name)] = tile

    def layer(self, index, name, op):
        if int(index) != len(self.p.layers):
            raise _Semantic(f"layer {index} out of order (expected {len(self.p.layers)})", index)
        self.p.layers.append(Layer(int(index), json.loads(name), json.loads(op)))

    def core(self, index, *stmts):
        if int(index) in self.p.cores:
            raise _Semantic(f"core {index} has two streams", index)
        self.p.cores[int(index)] = tuple(stmts)

    # statements
    def loop(self, var, count, *body):
        return Loop(str(var)[1:], int(count), tuple(body))

    def seqloop(self, var, count, *body):
        return Loop(str(var)[1:], int(count), tuple(body), sequential=True)

    def tag(self, n):
        return int(n)

    def instr(self, name, *rest):
        opcode = str(name)
        if opcode not in OPCODES:
            raise _Semantic(f"unknown opcode {opcode!r}", name)
        layer = -1
        if rest and isinstance(rest[-1], int):
            layer, rest = rest[-1], rest[:-1]
        operands = tuple(op for op in rest if op is not None)
        return Instr(opcode, operands, layer)

    def view(self, name, affine, *dims):
        return View(str(name), affine, tuple(dims))

    def dim(self, size, stride):
        return (int(size), int(stride))

    def affine(self, const, *terms):
        return Affine(int(const), tuple(terms))

    def term(self, sign, coef, var):
        return (str(var)[1:], int(coef) * (-1 if str(sign) == "-" else 1))

    def weight(self, name, index=None):
        return WeightRef(str(name), index)

    def imm(self, tok):
        return Imm(float(str(tok)[1:]))

    def coreref(self, n):
        return CoreRef(int(n))


@lru_cache(maxsize=1)
def _parser() -> tuple[lark.Lark, _Build, threading.Lock]:
    """The parser with the program builder inside it (its rules run as the LALR parser reduces,
    so no parse tree is built and walked again: ResNet-50's program text loads in ~40 % less
    time), the builder, and the lock that gives one parse at a time the builder's state."""
    grammar = (Path(__file__).with_name("grammar.lark")).read_text()
    builder = _Build()
    # cache=True: lark keeps the built tables in the temp directory, keyed by the grammar's hash
    # (0.95 s to build, 15 ms to load: most of a small `nmc run`); it goes on without if it cannot write
    parser = lark.Lark(grammar, parser="lalr", propagate_positions=False, maybe_placeholders=True, cache=True,
                       transformer=builder)
    return parser, builder, threading.Lock()


def parse_program(text: str) -> Program:
    """Parse assembly text; syntax errors raise ``AsmSyntaxError`` with line, column and caret."""
    if not text.endswith("\n"):
        text += "\n"
    parser, builder, lock = _parser()
    with lock:
        builder.reset()
        try:
            parser.parse(text)
        except lark.exceptions.UnexpectedInput as e:
            what = "unexpected input"
            if isinstance(e, lark.exceptions.UnexpectedToken):
                what = f"unexpected {str(e.token)!r}" if e.token.type != "$END" else "unexpected end of text"
            elif isinstance(e, lark.exceptions.UnexpectedCharacters):
                what = f"unexpected character {text[e.pos_in_stream]!r}"
            raise AsmSyntaxError(what, e.line, e.column, e.get_context(text).rstrip("\n")) from None
        except (_Semantic, lark.exceptions.VisitError) as e:
            semantic = e if isinstance(e, _Semantic) else e.orig_exc
            if not isinstance(semantic, _Semantic):
                raise
            tok = semantic.token
            line, col = getattr(tok, "line", 0) or 0, getattr(tok, "column", 0) or 0
            raise AsmSyntaxError(semantic.message, line, col, _caret(text, line, col)) from None
        program, version = builder.p, builder.seen_version
        builder.reset()   # the builder keeps nothing of this program
    if version is None:
        raise AsmSyntaxError("missing .nmc version line", 1, 1)
    program.version = version
    return program


def _caret(text: str, line: int, col: int) -> str:
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    return lines[line - 1] + "\n" + " " * (col - 1) + "^"
