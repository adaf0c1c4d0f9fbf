"""The instruction set: one table that the parser, validator, runtime and docs all read."""
from __future__ import annotations

from dataclasses import dataclass, field

from nmc.isa.views import Affine, CoreRef, Imm, Operand, View, WeightRef


# Shape rules the validator applies (``isa/validate.py`` has one check per rule).
SHAPE_RULES = {
    "same": "every view has the same shape (stride 0 broadcasts)",
    "free": "no shape constraint (a scalar fill, a message, a barrier)",
    "mvm": "src holds K elements and dst N for a weight of [N, K]",
    "xmvm": "src holds K elements and dst N for a tile of [N, K]",
    "matmul": "[..., M, K] times [..., K, N] into [..., M, N], leading dimensions broadcast",
    "reduce": "dst's shape is a proper prefix of src's",
    "argmax": "dst's shape is src's without its last dimension",
    "cenc": "F inputs, F codes, [F, K] cut tables and F NaN codes",
    "csearch": "[R, F] bounds, F levels and F query codes into R match lines",
    "cleaf": "R match lines and [R, T] leaves into T values",
    "gather": "dst's shape is idx's shape followed by table's shape without its first dimension",
}
# Cost classes the timing model prices (``runtime/costs.py`` has one formula per class).
COST_CLASSES = {
    "dma": "buffer bandwidth for the bits moved, both ends' buffer energy; program ports also pay I/O",
    "vector": "one lane-cycle per element (ceil(elements / lanes) cycles), one vector op per element "
              "(an integer op for i32 element-wise arithmetic)",
    "vector_mul": "as vector, with a multiply's energy per element",
    "vector_special": "as vector_mul, and vector_special_cycles per lane step (transcendentals, division)",
    "reduce": "one vector op per source element",
    "mvm": "a multiply and an add per weight (N·K), on the vector lanes",
    "matmul": "a multiply and an add per output element and inner index, on the vector lanes",
    "xmvm": "the crossbar's reads (DAC, array, ADC conversions, shift-and-add) from its tile arithmetic",
    "cenc": "one comparison per cut of every feature",
    "cam_search": "one search of all rows (search_cycles), energy per cell searched",
    "cam_leaf": "one cycle per match through the resolver, a leaf read, a log-depth reduction",
    "scheduled": "priced by the core timelines (messages, barriers), not per instruction",
    "gather": "a memory read of the rows moved: the bits of dst and idx through the buffer port, "
              "the buffer energy of reading and writing them",
}


@dataclass(frozen=True)
class OpSpec:
    """One instruction's record: what it takes, what it does and what it costs.

    ``operands`` is a tuple of operand kinds: ``dst`` (a view written), ``src`` (a view read),
    ``src|imm`` (a view or a scalar), ``imm``, ``weight``, ``core``. ``dtypes`` gives the
    element type each operand's view must have (``f32``, ``i32``; ``=``: the type of the other
    ``=`` operands; None: any), or is None when the views must simply share one type. ``shape`` names a rule of ``SHAPE_RULES`` and
    ``cost`` a class of ``COST_CLASSES``. The parser, the validator, the runtime (its kernel
    table, ``runtime/machine.py``), the timing model (``runtime/costs.py``) and ``docs/isa.md``
    all read this record; ``tests/test_isa.py`` checks every opcode has all of them.
    """

    name: str
    operands: tuple[str, ...]
    unit: str
    summary: str
    semantics: str
    shape: str = "same"
    cost: str = "vector"
    dtypes: tuple[str | None, ...] | None = None
    reads_dst: bool = False   # dst is also an input (the instruction adds onto it)


def _spec(name, operands, unit, summary, semantics, shape="same", cost="vector", dtypes=None, reads_dst=False):
    return OpSpec(name, tuple(operands.split()), unit, summary, semantics, shape, cost,
                  None if dtypes is None else tuple(None if d == "*" else d for d in dtypes.split()), reads_dst)


_SPECIAL, _MUL, _OP = "vector_special", "vector_mul", "vector"
_UNARY = {  # name: (formula, cost class)
    "relu": ("max(x, 0)", _OP),
    "sigmoid": ("1 / (1 + exp(-x))", _SPECIAL),
    "tanh": ("tanh(x)", _SPECIAL),
    "exp": ("exp(x)", _SPECIAL),
    "log": ("ln(x)", _SPECIAL),
    "sqrt": ("sqrt(x)", _SPECIAL),
    "neg": ("-x", _OP),
    "abs": ("|x|", _OP),
    "recip": ("1 / x", _SPECIAL),
    "erf": ("the error function erf(x)", _SPECIAL),
    "gelu": ("x * (1 + erf(x / sqrt 2)) / 2", _SPECIAL),
    "gelu_tanh": ("x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) / 2", _SPECIAL),
    "floor": ("floor(x)", _OP),
    "ceil": ("ceil(x)", _OP),
    "probit": ("sqrt(2) * erfinv(2x - 1), erfinv by onnxruntime's approximation (ml_common.h ErfInv)", _SPECIAL),
    "sign": ("-1, 0 or 1 as x is negative, zero or positive (NaN stays NaN)", _OP),
    "softplus": ("ln(1 + exp(x)), computed as max(x, 0) + ln(1 + exp(-|x|)) so large x does not overflow", _SPECIAL),
}
_BINARY = {  # name: (formula, cost class); i32 operands cost an integer op whatever the class
    "add": ("a + b", _OP),
    "sub": ("a - b", _OP),
    "mul": ("a * b", _MUL),
    "div": ("a / b", _SPECIAL),
    "pow": ("a ** b", _SPECIAL),
    "max": ("max(a, b)", _OP),
    "min": ("min(a, b)", _OP),
    "mod": ("a - floor(a / b) * b (the sign of b, as Python's %)", _SPECIAL),
    "fmod": ("a - trunc(a / b) * b (the sign of a, as C's fmod)", _SPECIAL),
}
_COMPARE = {  # name: formula; dst is i32 0/1, a and b of one element type
    "eq": "a == b", "ne": "a != b", "lt": "a < b", "le": "a <= b", "gt": "a > b", "ge": "a >= b",
}
_REDUCE = {"rsum": "sum", "rmax": "maximum", "rmin": "minimum", "rmean": "mean"}

OPCODES: dict[str, OpSpec] = {}
for _s in (
    _spec("load", "dst src", "dma", "copy a view from global memory into a core's local memory",
          "dst[i] = src[i] for every element; dst is local to the core, src is global", cost="dma"),
    _spec("store", "dst src", "dma", "copy a view from a core's local memory to global memory",
          "dst[i] = src[i]; dst is global, src is local to the core", cost="dma"),
    _spec("mov", "dst src", "vector", "copy (and so permute, slice, pad or broadcast) a view",
          "dst[i] = src[i]; both views have the same shape"),
    _spec("fill", "dst imm", "vector", "set every element of a view to a scalar", "dst[i] = imm", shape="free"),
    _spec("mvm", "dst weight src", "matrix", "matrix-vector product with a stationary weight matrix",
          "dst = W @ src, W of shape [N, K] (or W[index] of a stacked [G, N, K] constant); "
          "src holds K elements and dst N elements, each read/written in view order",
          shape="mvm", cost="mvm", dtypes="f32 * f32"),
    _spec("xmvm", "dst weight src", "crossbar", "matrix-vector product on a programmed crossbar tile",
          "dst = the tile's integer weights [N, K] times the integer inputs src (K elements, each "
          "in_bits wide), computed as the chip does: inputs enter dac_bits at a time, each weight "
          "slice of cell_bits is a column of cells, column currents are digitised by the ADCs over "
          "the tile's adc_range, and digital shift-and-add recombines slices; exact when the device "
          "is noiseless and the ADC lossless. dst and src are i32", shape="xmvm", cost="xmvm", dtypes="i32 * i32"),
    _spec("quant", "dst src src|imm imm imm", "vector", "quantise floats to integers",
          "dst = clip(round_half_even(src / scale), lo, hi) with operands scale (an f32 view of "
          "src's shape or an immediate), lo, hi; dst is i32, src f32", cost="vector_mul", dtypes="i32 f32 f32 * *"),
    _spec("dequant", "dst src src|imm", "vector", "integers back to floats with a scale",
          "dst = float32(src) * scale; dst f32, src i32, scale an f32 view or immediate", cost="vector_mul",
          dtypes="f32 i32 f32"),
    _spec("matmul", "dst src src", "vector", "product of two activation matrices (e.g. attention)",
          "dst = a @ b over the last two dimensions, leading dimensions broadcast", shape="matmul", cost="matmul"),
    _spec("softmax", "dst src", "vector", "softmax along the last dimension",
          "dst = exp(x - max x) / sum exp(x - max x) along the last dimension", cost="vector_special"),
    _spec("argmax", "dst src", "vector", "index of the largest element along the last dimension",
          "dst = argmax(src) along the last dimension (first index on ties), as a float", shape="argmax",
          cost="reduce", dtypes="* *"),
    _spec("leaky", "dst src imm", "vector", "leaky rectifier", "dst = x if x >= 0 else imm * x"),
    _spec("elu", "dst src imm", "vector", "exponential linear unit",
          "dst = x if x > 0 else imm * (exp(x) - 1)", cost="vector_special"),
    _spec("clip", "dst src imm imm", "vector", "clamp to [lo, hi]", "dst = min(max(x, lo), hi)"),
    _spec("send", "core src", "noc", "send a view to another core",
          "queues the elements of src for the peer core, which takes them with recv", shape="free", cost="scheduled"),
    _spec("recv", "dst core", "noc", "receive a view sent by another core",
          "waits for the next message from the peer core and writes it into dst", shape="free", cost="scheduled"),
    _spec("cenc", "dst src src src src", "vector", "threshold-code inputs for an analog CAM search",
          "dst[f] = #{k: src[f] >= ge[f, k]} + #{k: src[f] > gt[f, k]} with operands ge, gt (f32 [F, K] "
          "cut tables, NaN-padded) and nan (f32 [F]); a NaN input gets code nan[f]. dst is i32 [F], src f32 [F]. "
          "A feature's code is the number of its thresholds the input lies above, so comparing codes in the "
          "CAM gives the same decisions as comparing the values with the thresholds. On a CAM core it stands for "
          "the core's input DACs (the same codes, timed as one conversion per feature)", shape="cenc", cost="cenc",
          dtypes="i32 f32 f32 f32 f32"),
    _spec("csearch", "dst src src src src imm", "cam", "search the rows of analog CAM arrays",
          "dst[r] = 1 if lo[r, f] <= q[f] < hi[r, f] for every feature f, else 0, with operands lo, hi "
          "(i32 [R, F] constants: the range each cell holds, in code levels), levels (i32 [F] constant: "
          "each feature's number of code levels; lo = 0 and hi = levels are open bounds) and the query "
          "codes q (i32 [F]); the immediate is the number of physical CAM "
          "columns (cells) the features occupy (features no row tests take none). All R rows are searched at once; dst is f32 [R]. With "
          "device noise the programmed bounds deviate from lo and hi", shape="csearch", cost="cam_search",
          dtypes="f32 i32 i32 i32 i32 *"),
    _spec("cleaf", "dst src src imm", "cam", "read the leaves of matched rows and add them onto dst",
          "dst[t] += leaves[r, t] for each row r with match[r] = 1, one row after another in row order (float32; "
          "rows in tree order add the trees in order, as onnxruntime does): the match-line resolver reads each "
          "matched row's leaf from leaf memory and the adder accumulates them per target; operands "
          "match (f32 [R]) and leaves (f32 [R, T] constant); dst f32 [T]. The immediate is the number of "
          "matches a search yields without device errors (the trees with rows in this block), for timing",
          shape="cleaf", cost="cam_leaf", dtypes="f32 f32 f32 *", reads_dst=True),
    _spec("cleafmin", "dst src src imm", "cam", "read the leaves of matched rows and keep the smallest",
          "dst[t] = min over rows r with match[r] = 1 and leaves[r, t] not NaN of leaves[r, t], or the largest "
          "float32 where there is none: cleaf with a reduction network of comparators (the MIN aggregate of "
          "tree ensembles); NaN in leaf memory marks a leaf without a value for that target. Operands as cleaf",
          shape="cleaf", cost="cam_leaf", dtypes="f32 f32 f32 *"),
    _spec("cleafmax", "dst src src imm", "cam", "read the leaves of matched rows and keep the largest",
          "dst[t] = max over rows r with match[r] = 1 and leaves[r, t] not NaN of leaves[r, t], or minus the "
          "largest float32 where there is none (the MAX aggregate); operands as cleaf",
          shape="cleaf", cost="cam_leaf", dtypes="f32 f32 f32 *"),
    _spec("gather", "dst src src", "vector", "read the rows of a table at run-time indices (embedding lookup)",
          "dst[i, ...] = table[idx[i] (+ R if negative), ...] with operands table (a view [R, ...], "
          "usually a constant in digital memory) and idx (i32, any shape); an index outside -R..R-1 "
          "is a run-time error. The table's view may put any axis first, so a Gather on axis k is "
          "one gather through permuted views", shape="gather", cost="gather", dtypes="= = i32"),
    _spec("select", "dst src src|imm src|imm", "vector", "choose between two views by a mask",
          "dst = a where cond != 0 else b with operands cond (i32 0/1), a and b (views or immediates "
          "of dst's element type), all of one shape (stride 0 broadcasts)", dtypes="= i32 = ="),
    _spec("cast", "dst src", "vector", "convert between f32 and i32",
          "dst = src in dst's element type: f32 to i32 truncates toward zero (an out-of-range value "
          "is a run-time error), i32 to f32 rounds to nearest beyond 2^24", dtypes="* *"),
    _spec("sync", "", "control", "barrier across all cores",
          "no core passes its k-th sync before every core has reached its k-th sync", shape="free", cost="scheduled"),
):
    OPCODES[_s.name] = _s
for _name, (_formula, _cost) in _UNARY.items():
    OPCODES[_name] = _spec(_name, "dst src", "vector", f"element-wise {_formula}", f"dst = {_formula}", cost=_cost)
for _name, (_formula, _cost) in _BINARY.items():
    OPCODES[_name] = _spec(_name, "dst src src|imm", "vector", f"element-wise {_formula}",
                           f"dst = {_formula}, all three views of one shape (stride 0 broadcasts)", cost=_cost)
for _name, _formula in _COMPARE.items():
    OPCODES[_name] = _spec(_name, "dst src src|imm", "vector", f"element-wise comparison {_formula}",
                           f"dst = 1 if {_formula} else 0: dst i32, a and b views (b may be an immediate) "
                           "of one element type and one shape (stride 0 broadcasts)", dtypes="i32 = =")
for _name, _np in _REDUCE.items():
    OPCODES[_name] = _spec(_name, "dst src", "vector", f"{_np} over trailing dimensions",
                           f"dst = {_np} of src over the dimensions src has beyond dst's", shape="reduce",
                           cost="reduce")

UNARY_OPS = tuple(_UNARY)
BINARY_OPS = tuple(_BINARY)
REDUCE_OPS = tuple(_REDUCE)
COMPARE_OPS = tuple(_COMPARE)


@dataclass(frozen=True)
class Instr:
    """One instruction; ``layer`` indexes the program's layer table (-1: none)."""

    opcode: str
    operands: tuple[Operand, ...]
    layer: int = -1

    @property
    def spec(self) -> OpSpec:
        return OPCODES[self.opcode]

    def views(self) -> tuple[View, ...]:
        return tuple(op for op in self.operands if isinstance(op, View))


@dataclass(frozen=True)
class Loop:
    """A counted loop ``for %var in 0..count-1``. By default its iterations are independent (a
    parallel for, ``loop``), so the runtime may execute each body instruction for all iterations
    at once and the timing model pipelines them. A ``sequential`` loop (``loop.seq``) runs its
    iterations one after another, each seeing what the previous one wrote (a recurrence over
    time steps); its body may exchange messages (``send``/``recv``) when every enclosing loop is
    sequential too, and it costs ``count`` times its body's latency."""

    var: str
    count: int
    body: tuple["Instr | Loop", ...] = field(default_factory=tuple)
    sequential: bool = False

    @property
    def keyword(self) -> str:
        return "loop.seq" if self.sequential else "loop"


Statement = Instr | Loop

MESSAGE_OPS = ("send", "recv", "sync")  # run by the core streams, which meet at them


def exchanges_messages(stmt: Statement) -> bool:
    """Whether a statement is, or a loop holds, a send, recv or sync."""
    if isinstance(stmt, Loop):
        return any(exchanges_messages(s) for s in stmt.body)
    return stmt.opcode in MESSAGE_OPS


__all__ = ["OPCODES", "OpSpec", "SHAPE_RULES", "COST_CLASSES", "Instr", "Loop", "Statement", "exchanges_messages", "Affine", "View", "WeightRef", "Imm",
           "CoreRef", "UNARY_OPS", "BINARY_OPS", "REDUCE_OPS", "COMPARE_OPS"]
