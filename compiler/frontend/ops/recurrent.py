"""Recurrent layers: LSTM, GRU and RNN (opsets 1–22).

One ONNX node becomes: a Dense of X by all directions' W for every time step at once (before
the time loop); per direction a ``LoopCarried`` hidden state and the Dense by R that reads it
(inside the loop); one ``Recurrence`` node that runs the gates over the time steps; and Slice
(+ Reshape) nodes that take Y, Y_h and Y_c out of its stacked output. W and R are ordinary
Dense layers, so on a crossbar target they go to crossbars through the usual passes.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from nmc.compiler.frontend.context import NodeContext
from nmc.compiler.frontend.ops import converter
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph, Node

# cell: (gates, default activation functions per direction)
_CELLS = {"LSTM": (4, ("sigmoid", "tanh", "tanh")), "GRU": (3, ("sigmoid", "tanh")), "RNN": (1, ("tanh",))}

# onnxruntime's activation table (rnn_helpers.cc): whether each takes alpha and beta from the
# attribute lists (consumed in order, only by the functions that take them), and the defaults
# when the lists run out (0 for those not listed)
ACTIVATIONS = {
    "relu": (False, False), "tanh": (False, False), "sigmoid": (False, False),
    "affine": (True, True), "leakyrelu": (True, False), "thresholdedrelu": (True, False),
    "scaledtanh": (True, True), "hardsigmoid": (True, True), "elu": (True, False),
    "softsign": (False, False), "softplus": (False, False),
}
_DEFAULTS = {"leakyrelu": (0.01, 0.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, 0.0)}
_DIRECTIONS = {"forward": ("forward",), "reverse": ("reverse",), "bidirectional": ("forward", "reverse")}


def _activations(ctx: NodeContext, cell: str, directions: int) -> tuple[tuple[tuple[str, float, float], ...], ...]:
    """Per direction, each cell function as (lower-case name, alpha, beta), read as onnxruntime does."""
    defaults = _CELLS[cell][1]
    names = [str(n) for n in ctx.attr("activations", []) or []]
    if not names:
        names = list(defaults) * directions
    elif len(names) == len(defaults) and directions == 2:
        names = names * 2
    if len(names) != len(defaults) * directions:
        raise ctx.fail(f"activations lists {len(names)} functions; a {cell} with {directions} direction(s) "
                       f"needs {len(defaults) * directions} ({', '.join(defaults)} per direction)")
    alphas = [float(a) for a in ctx.attr("activation_alpha", []) or []]
    betas = [float(b) for b in ctx.attr("activation_beta", []) or []]
    entries = []
    for name in names:
        key = name.lower()
        if key not in ACTIVATIONS:
            raise ctx.fail(f"activation {name!r} is not supported; supported: Relu, Tanh, Sigmoid, Affine, "
                           "LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus")
        takes_alpha, takes_beta = ACTIVATIONS[key]
        alpha, beta = _DEFAULTS.get(key, (0.0, 0.0))
        if takes_alpha and alphas:
            alpha = alphas.pop(0)
        if takes_beta and betas:
            beta = betas.pop(0)
        entries.append((key, alpha if takes_alpha else 0.0, beta if takes_beta else 0.0))
    per = len(defaults)
    return tuple(tuple(entries[d * per:(d + 1) * per]) for d in range(directions))


def _base(ctx: NodeContext) -> str:
    """The stem of the tensors a converter makes: the first output the node names (Y may be absent)."""
    return next((o for o in ctx.node.output if o), ctx.label)


def _temp(ctx: NodeContext, hint: str) -> str:
    return ctx.g.fresh(f"{_base(ctx)}.{hint}")


def _const(ctx: NodeContext, hint: str, value: np.ndarray) -> str:
    return ctx.g.add_constant(f"{_base(ctx)}.{hint}", value)


def _step_mask(ctx: NodeContext, steps: int, batch: int, layout: int) -> str | None:
    """The ``[T, B]`` (layout 1: ``[B, T]``) mask of the steps within sequence_lens, or None
    when every sequence is full length. Lengths known at compile time give a constant; an
    integer graph input is computed at run time as clip(length − t, 0, 1)."""
    if not ctx.has_input(4):
        return None
    lengths = ctx.const(4)
    shape = (steps, batch) if layout == 0 else (batch, steps)
    if lengths is not None:
        lengths = np.asarray(lengths).reshape(-1).astype(np.int64)
        if lengths.shape != (batch,) or lengths.min() < 0 or lengths.max() > steps:
            raise ctx.fail(f"sequence_lens {lengths.tolist()} must hold {batch} lengths in 0..{steps}")
        if (lengths == steps).all():
            return None
        mask = (np.arange(steps)[:, None] < lengths[None, :]).astype(np.float32)
        return _const(ctx, "mask", mask if layout == 0 else mask.T)
    name = ctx.integer_input(4)
    if name is None:
        name = ctx.input(4)  # a float tensor, or the error that names why it cannot be read
    if ctx.g.shape(name) != (batch,):
        raise ctx.fail(f"sequence_lens has shape {list(ctx.g.shape(name))}, expected [{batch}]")
    along = (1, batch) if layout == 0 else (batch, 1)
    lengths_2d = ctx.emit(ops.Reshape(), [name], _temp(ctx, "lengths"), along)
    times = np.arange(steps, dtype=np.float32).reshape((steps, 1) if layout == 0 else (1, steps))
    left = ctx.emit(ops.Binary("sub"), [lengths_2d, _const(ctx, "times", times)], _temp(ctx, "left"), shape)
    return ctx.emit(ops.Clip(0.0, 1.0), [left], _temp(ctx, "mask"), shape)


@converter("LSTM", "GRU", "RNN", unit="crossbar",
           limits="W, R on crossbars, gates on the vector unit; forward/reverse/bidirectional; initial states; sequence_lens; layout 0 needs a fixed batch")
def recurrent(ctx: NodeContext) -> None:
    cell = ctx.node.op_type
    gates = _CELLS[cell][0]
    direction = ctx.attr("direction", "forward")
    if direction not in _DIRECTIONS:
        raise ctx.fail(f"direction {direction!r}; supported: forward, reverse, bidirectional")
    directions = _DIRECTIONS[direction]
    nd = len(directions)
    layout = int(ctx.attr("layout", 0))
    if layout not in (0, 1):
        raise ctx.fail(f"layout={layout}; supported: 0 (time first) and 1 (batch first)")
    x_shape = ctx.shape(0)
    if len(x_shape) != 3:
        raise ctx.fail(f"X has shape {list(x_shape)}; expected 3 axes")
    if ctx.g.batched and layout == 0:
        raise ctx.fail("a batched model (free leading dimension) runs sample by sample along axis 0, but with "
                       "layout=0 axis 0 holds the time steps: export with fixed sizes (PyTorch: no dynamic_axes; "
                       "the batch then stays inside the tensors) or with layout=1 (batch first)")
    steps, batch, inputs = (x_shape if layout == 0 else (x_shape[1], x_shape[0], x_shape[2]))
    w = np.asarray(ctx.need_const(1, "the input weights W"), np.float32)
    r = np.asarray(ctx.need_const(2, "the recurrent weights R"), np.float32)
    hidden = int(ctx.attr("hidden_size", 0) or r.shape[-1])
    if w.shape != (nd, gates * hidden, inputs) or r.shape != (nd, gates * hidden, hidden):
        raise ctx.fail(f"W {list(w.shape)} and R {list(r.shape)} do not fit {nd} direction(s) of {gates} gate(s) "
                       f"of hidden size {hidden} over {inputs} inputs")
    bias = ctx.optional_const(3, "the biases B")
    bias = np.zeros((nd, 2 * gates * hidden), np.float32) if bias is None else np.asarray(bias, np.float32)
    if bias.shape != (nd, 2 * gates * hidden):
        raise ctx.fail(f"B has shape {list(bias.shape)}, expected {[nd, 2 * gates * hidden]}")
    wb, rb = bias[:, :gates * hidden], bias[:, gates * hidden:]
    before_reset = cell == "GRU" and bool(ctx.attr("linear_before_reset", 0))
    peepholes = ctx.optional_const(7, "the peepholes P") if cell == "LSTM" else None
    if peepholes is not None:
        peepholes = np.asarray(peepholes, np.float32)
        if peepholes.shape != (nd, 3 * hidden):
            raise ctx.fail(f"P has shape {list(peepholes.shape)}, expected {[nd, 3 * hidden]}")
        if not peepholes.any():
            peepholes = None
    clip = ctx.attr("clip")
    op = ops.Recurrence(
        cell=cell, hidden=hidden, steps=steps, directions=directions, activations=_activations(ctx, cell, nd),
        clip=None if clip is None else float(clip), layout=layout, linear_before_reset=before_reset,
        input_forget=cell == "LSTM" and bool(ctx.attr("input_forget", 0)),
        has_initial_h=ctx.has_input(5), has_initial_c=cell == "LSTM" and ctx.has_input(6),
        has_peepholes=peepholes is not None)

    # X·Wᵀ for every step and direction at once; the biases that add outside the gates' products
    outside = wb + rb
    if cell == "GRU" and before_reset:  # Rb_h multiplies with r: it stays with the product by R
        outside[:, 2 * hidden:] = wb[:, 2 * hidden:]
    projection = [ctx.input(0), _const(ctx, "W", w.reshape(nd * gates * hidden, inputs))]
    if outside.any():
        projection.append(_const(ctx, "WB", outside.reshape(-1)))
    xw_shape = x_shape[:2] + (nd * gates * hidden,)
    xw = ctx.emit(ops.Dense(), projection, _temp(ctx, "xw"), xw_shape)

    # inside the loop: per direction, Dense nodes by R reading the state the recurrence writes
    recurrent_inputs = []
    for d in range(nd):
        state = ctx.emit(ops.LoopCarried("h", d), [], _temp(ctx, f"h{d}"), (batch, hidden))
        if cell == "GRU" and not before_reset:
            zr = [state, _const(ctx, f"R{d}_zr", r[d, :2 * hidden])]
            recurrent_inputs.append(ctx.emit(ops.Dense(), zr, _temp(ctx, f"hr{d}"), (batch, 2 * hidden)))
            gated = ctx.emit(ops.LoopCarried("rh", d), [], _temp(ctx, f"rh{d}"), (batch, hidden))
            h_part = [gated, _const(ctx, f"R{d}_h", r[d, 2 * hidden:])]
            recurrent_inputs.append(ctx.emit(ops.Dense(), h_part, _temp(ctx, f"rhr{d}"), (batch, hidden)))
            continue
        product = [state, _const(ctx, f"R{d}", r[d])]
        if cell == "GRU":  # linear_before_reset: r ⊙ (h·R_hᵀ + Rb_h)
            inside = np.concatenate([np.zeros(2 * hidden, np.float32), rb[d, 2 * hidden:]])
            if inside.any():
                product.append(_const(ctx, f"RB{d}", inside))
        recurrent_inputs.append(ctx.emit(ops.Dense(), product, _temp(ctx, f"hr{d}"), (batch, gates * hidden)))

    extra = []
    if op.has_initial_h:
        extra.append(ctx.input(5))
    if op.has_initial_c:
        extra.append(ctx.input(6))
    state_shape = (nd, batch, hidden) if layout == 0 else (batch, nd, hidden)
    for t in extra:
        if ctx.g.shape(t) != state_shape:
            raise ctx.fail(f"initial state {t!r} has shape {list(ctx.g.shape(t))}, expected {list(state_shape)}")
    mask = _step_mask(ctx, steps, batch, layout)
    if mask is not None:
        op = replace(op, has_mask=True)
        extra.append(mask)
    if peepholes is not None:
        extra.append(_const(ctx, "P", peepholes))
    k = op.stacked
    stacked_shape = (steps + k, nd, batch, hidden) if layout == 0 else (batch, steps + k, nd, hidden)
    stacked = ctx.emit(op, [xw, *recurrent_inputs, *extra], _temp(ctx, "states"), stacked_shape)

    # Y, Y_h, Y_c: slices of the stacked output along its time axis
    time_axis = 0 if layout == 0 else 1
    for index, (start, count) in enumerate(((0, steps), (steps, 1), (steps + 1, 1))[:1 + k]):
        if index >= len(ctx.node.output) or not ctx.node.output[index]:
            continue
        starts = tuple(start if a == time_axis else 0 for a in range(4))
        shape = tuple(count if a == time_axis else n for a, n in enumerate(stacked_shape))
        out = ctx.node.output[index]
        if index == 0:
            ctx.emit(ops.Slice(starts, (1, 1, 1, 1)), [stacked], out, shape)
        else:
            part = ctx.emit(ops.Slice(starts, (1, 1, 1, 1)), [stacked], _temp(ctx, f"slot{index}"), shape)
            ctx.emit(ops.Reshape(), [part], out, ctx.out_shape(index))


# ---------------------------------------------------------------------------- calibration
def _hidden_sequences(g: Graph) -> Iterator[tuple[Node, str]]:
    """(recurrence, its Y tensor) for every Recurrence whose Y the model names."""
    for node in g.nodes():
        if not isinstance(node.op, ops.Recurrence):
            continue
        time_axis = node.op.layout
        for reader in g.consumers(node.outputs[0]):
            if (isinstance(reader.op, ops.Slice) and reader.op.starts[time_axis] == 0
                    and g.shape(reader.outputs[0])[time_axis] == node.op.steps):
                yield node, reader.outputs[0]


def calibration_sources(g: Graph) -> set[str]:
    """The tensors whose calibration values give those of the recurrences' states: their Ys."""
    return {y for _, y in _hidden_sequences(g)}


def calibrate_states(g: Graph, ranges: dict, values: dict) -> None:
    """Calibration of the LoopCarried states, which have no ONNX name: the state a step reads is
    the h an earlier step wrote into Y, so each direction's slice of Y's values, one sample per
    time step, stands for its h (range and values) and, for the ADCs only, for the reset-gated
    r ⊙ h of a GRU (whose inputs are scaled per step to full range either way)."""
    for node, y in _hidden_sequences(g):
        op = node.op
        if y not in values:
            continue
        shape = g.shape(y)
        v = np.asarray(values[y], np.float32)
        v = v[:len(v) // shape[0] * shape[0]].reshape((-1,) + shape)
        batch = shape[2] if op.layout == 0 else shape[0]
        for product in node.inputs[1:]:
            dense = g.producer(product)
            carried = g.producer(dense.inputs[0]) if dense is not None else None
            if carried is None or not isinstance(carried.op, ops.LoopCarried):
                continue
            d = carried.op.direction
            steps = v[:, :, d] if op.layout == 0 else v[:, :, :, d].transpose(0, 2, 1, 3)
            g.calibration[carried.outputs[0]] = steps.reshape(-1, batch, op.hidden)
            if carried.op.role == "h" and y in ranges:
                g.ranges[carried.outputs[0]] = ranges[y]
