"""Lowering of a recurrence (ONNX LSTM, GRU, RNN): one sequential loop over the time steps.

Before the loop the vector core sets each direction's state from initial_h / initial_c (or 0).
Each step ``%t`` of ``loop.seq`` runs, per direction (forward reads time step t, reverse
T − 1 − t, both as views whose offset moves with the counter): the Dense nodes by R on the
state — on a crossbar target the usual crossbar lowering (quantise, send, ``xmvm`` on the
crossbar cores, which get a ``loop.seq`` of their own around their part, receive, dequantise) —
then the gates (the step's slice of X·Wᵀ, computed for all steps before the loop, plus the
product by R), the activations and the state update on the vector core, and the step's h goes
to Y. With sequence lengths a 0/1 mask per step and batch row keeps a finished sequence's
state and zeroes its Y. After the loop the states go to the Y_h (and Y_c) slots of the stacked
output. The program grows with layers, not with time steps.
"""
from __future__ import annotations

from nmc.compiler.codegen.emitter import affine, view
from nmc.compiler.errors import CompileError
from nmc.compiler.ir import ops
from nmc.compiler.ir.graph import Graph, Node

_HUGE = 3.0e38  # (x - alpha) * _HUGE is ≥ 1 for every normal float32 x > alpha: a 0/1 step


def inside_loop(g: Graph, node: Node) -> bool:
    """Whether ``node`` is a Dense of a recurrence's time loop (it reads a LoopCarried state):
    its recurrence lowers it, inside the loop."""
    if not isinstance(node.op, ops.Dense):
        return False
    producer = g.producer(node.inputs[0])
    return producer is not None and isinstance(producer.op, ops.LoopCarried)


class RecurrentLowering:
    def __init__(self, low):
        self.low, self.e, self.g = low, low.e, low.g

    def lower(self, node: Node) -> None:
        if isinstance(node.op, ops.LoopCarried):
            self.low.place(node.outputs[0])  # the state buffer, on the vector core
        elif isinstance(node.op, ops.Recurrence):
            self._recurrence(node, node.op)
        # a Dense inside the loop: lowered by its recurrence

    # ------------------------------------------------------------------ helpers
    def _buffer(self, rows: int, cols: int):
        """A fresh ``[rows, cols]`` buffer on the vector core and its view."""
        name = self.e.buffer(rows * cols)
        return view(name, 0, [(rows, cols), (cols, 1)])

    def _rows(self, t: str, rows: int, cols: int, offset: int = 0):
        """View ``[rows, cols]`` of a contiguous tensor ``t`` from element ``offset``."""
        buf, off = self.low.place(t)
        return view(buf, off + offset, [(rows, cols), (cols, 1)])

    def _project(self, dense: Node) -> None:
        """Lower a Dense of the loop here (crossbar or vector path), tagged with its own layer."""
        from nmc.compiler.codegen.crossbar import CrossbarLowering

        saved = self.e.layer
        self.e.layer = self.layer_of[dense.name]
        mapping = self.g.mapping.get(dense.name)
        if mapping is not None and mapping.unit == "crossbar":
            CrossbarLowering(self.low).lower(dense, mapping)
        else:
            self.low.lower_dense(dense, dense.op)
        self.e.core = self.low.vector_core
        self.e.layer = saved

    def _activate(self, fn: tuple[str, float, float], dst, src) -> None:
        """``dst = fn(src)`` for one of onnxruntime's RNN activation functions (dst may be src)."""
        name, alpha, beta = fn
        e = self.e
        if name in ("sigmoid", "tanh", "relu"):
            e.emit(name, dst, src)
        elif name == "affine":
            e.emit("mul", dst, src, alpha)
            e.emit("add", dst, dst, beta)
        elif name == "leakyrelu":
            e.emit("leaky", dst, src, alpha)
        elif name == "scaledtanh":
            e.emit("mul", dst, src, beta)
            e.emit("tanh", dst, dst)
            e.emit("mul", dst, dst, alpha)
        elif name == "hardsigmoid":
            e.emit("mul", dst, src, alpha)
            e.emit("add", dst, dst, beta)
            e.emit("clip", dst, dst, 0.0, 1.0)
        else:
            tmp = self._buffer(*src.shape)
            if name == "thresholdedrelu":  # x if x > alpha else 0: x times a 0/1 step
                e.emit("sub", tmp, src, alpha)
                e.emit("mul", tmp, tmp, _HUGE)
                e.emit("clip", tmp, tmp, 0.0, 1.0)
                e.emit("mul", dst, src, tmp)
            elif name == "elu":  # max(x, 0) + alpha (exp(min(x, 0)) - 1)
                e.emit("min", tmp, src, 0.0)
                e.emit("exp", tmp, tmp)
                e.emit("sub", tmp, tmp, 1.0)
                e.emit("mul", tmp, tmp, alpha)
                e.emit("max", dst, src, 0.0)
                e.emit("add", dst, dst, tmp)
            elif name == "softsign":
                e.emit("abs", tmp, src)
                e.emit("add", tmp, tmp, 1.0)
                e.emit("div", dst, src, tmp)
            elif name == "softplus":
                e.emit("exp", tmp, src)
                e.emit("add", tmp, tmp, 1.0)
                e.emit("log", dst, tmp)
            else:
                raise CompileError(f"no lowering for the activation function {name!r}")

    def _clip(self, op: ops.Recurrence, v) -> None:
        if op.clip is not None:
            self.e.emit("clip", v, v, -op.clip, op.clip)

    # ------------------------------------------------------------------ the loop
    def _recurrence(self, node: Node, op: ops.Recurrence) -> None:
        e, g = self.e, self.g
        e.core = self.low.vector_core
        self.layer_of = {n.name: i for i, n in enumerate(g.nodes())}
        steps, hidden, gates = op.steps, op.hidden, op.gates
        nd = len(op.directions)
        xw = node.inputs[0]
        batch = g.shape(xw)[1] if op.layout == 0 else g.shape(xw)[0]
        width = nd * gates * hidden
        per_direction = 2 if op.cell == "GRU" and not op.linear_before_reset else 1
        products = node.inputs[1:1 + nd * per_direction]
        rest = list(node.inputs[1 + nd * per_direction:])
        initial_h = rest.pop(0) if op.has_initial_h else None
        initial_c = rest.pop(0) if op.has_initial_c else None
        mask = rest.pop(0) if op.has_mask else None
        peepholes = rest.pop(0) if op.has_peepholes else None
        k = op.stacked
        if op.layout == 0:  # strides (elements) of a time step and a batch row; offset of a direction
            xw_step, xw_row = batch * width, width
            out_step, out_row, out_dir = nd * batch * hidden, hidden, batch * hidden
            init_row, init_dir = hidden, batch * hidden
            mask_step, mask_row = batch, 1
        else:
            xw_step, xw_row = width, steps * width
            out_step, out_row, out_dir = nd * hidden, (steps + k) * nd * hidden, hidden
            init_row, init_dir = nd * hidden, hidden
            mask_step, mask_row = 1, steps
        xb, xo = self.low.place(xw)
        ob, oo = self.low.place(node.outputs[0])

        # the Dense nodes of the loop and the states they read, by direction and role
        cells: dict[tuple[int, str], tuple[Node, str]] = {}
        for product in products:
            dense = g.producer(product)
            carried = g.producer(dense.inputs[0])
            cells[(carried.op.direction, carried.op.role)] = (dense, carried.outputs[0])

        def moving(buf: str, base: int, step: int, reverse: bool, t, dims):
            """A view at time step t (forward) or T − 1 − t (reverse) of the loop counter t."""
            if reverse:
                return view(buf, affine(base + (steps - 1) * step, (t, -step)), dims)
            return view(buf, affine(base, (t, step)), dims)

        # states: h (the buffer of its LoopCarried tensor) and, for an LSTM, c
        h_state = [self._rows(cells[(d, "h")][1], batch, hidden) for d in range(nd)]
        c_state = [self._buffer(batch, hidden) for _ in range(nd)] if op.cell == "LSTM" else []
        for d in range(nd):
            for state, initial in ((h_state, initial_h), (c_state, initial_c)):
                if not state:
                    continue
                if initial is None:
                    e.emit("fill", state[d], 0.0)
                else:
                    ib, io = self.low.place(initial)
                    e.emit("mov", state[d], view(ib, io + d * init_dir, [(batch, init_row), (hidden, 1)]))
        if mask is not None:
            mb, mo = self.low.place(mask)
            keep = e.buffer(steps * batch)  # 1 − mask: where a finished sequence keeps its state
            e.emit("mul", view(keep, 0, [(steps * batch, 1)]), view(mb, mo, [(steps * batch, 1)]), -1.0)
            e.emit("add", view(keep, 0, [(steps * batch, 1)]), view(keep, 0, [(steps * batch, 1)]), 1.0)

        gate_buf = [e.buffer(batch * gates * hidden) for _ in range(nd)]
        h_new = [self._buffer(batch, hidden) for _ in range(nd)]
        c_new = [self._buffer(batch, hidden) for _ in range(nd)] if op.cell == "LSTM" else []
        scratch = self._buffer(batch, hidden)

        with e.loop(steps, sequential=True) as t:
            for d, direction in enumerate(op.directions):
                reverse = direction == "reverse"
                fns = op.activations[d]

                def gate(j: int, n: int = 1, _d=d):
                    """Gates j .. j + n − 1 of this direction's gate buffer, ``[B, n·H]``."""
                    return view(gate_buf[_d], j * hidden, [(batch, gates * hidden), (n * hidden, 1)])

                def step_xw(j: int, n: int, _d=d, _reverse=reverse):
                    return moving(xb, xo + _d * gates * hidden + j * hidden, xw_step, _reverse, t,
                                  [(batch, xw_row), (n * hidden, 1)])

                h, hn = h_state[d], h_new[d]
                dense, _ = cells[(d, "h")]
                self._project(dense)
                product = dense.outputs[0]
                if op.cell == "LSTM":
                    self._lstm_step(op, d, fns, gate, step_xw, product, hn, c_state[d], c_new[d], scratch,
                                    peepholes, batch)
                elif op.cell == "GRU":
                    self._gru_step(op, d, fns, gate, step_xw, product, cells, h, hn, scratch, batch)
                else:
                    e.emit("add", gate(0), step_xw(0, 1), self._rows(product, batch, hidden))
                    self._clip(op, gate(0))
                    self._activate(fns[0], hn, gate(0))
                # commit the step: the new state, and its h into Y at this time step
                y_t = moving(ob, oo + d * out_dir, out_step, reverse, t, [(batch, out_row), (hidden, 1)])
                pairs = [(h, hn)] + ([(c_state[d], c_new[d])] if op.cell == "LSTM" else [])
                if mask is None:
                    for state, new in pairs:
                        e.emit("mov", state, new)
                    e.emit("mov", y_t, hn)
                    continue
                m = moving(mb, mo, mask_step, reverse, t, [(batch, mask_row), (hidden, 0)])
                kept = moving(keep, 0, mask_step, reverse, t, [(batch, mask_row), (hidden, 0)])
                e.emit("mul", y_t, hn, m)
                for state, new in pairs:  # state = mask · new + (1 − mask) · state, exact for 0/1
                    e.emit("mul", scratch, state, kept)
                    e.emit("mul", state, new, m)
                    e.emit("add", state, state, scratch)

        for d in range(nd):
            for slot, state in ((steps, h_state), (steps + 1, c_state)):
                if not state:
                    continue
                final = view(ob, oo + slot * out_step + d * out_dir, [(batch, out_row), (hidden, 1)])
                if mask is not None:
                    # onnxruntime gives a sequence of length 0 zero final states, not the
                    # initial ones; mask[0] is 0 exactly for those
                    e.emit("mul", final, state[d], view(mb, mo, [(batch, mask_row), (hidden, 0)]))
                else:
                    e.emit("mov", final, state[d])

    def _lstm_step(self, op, d, fns, gate, step_xw, product, h_new, c, c_new, scratch, peepholes, batch) -> None:
        """onnxruntime's order (deep_cpu_lstm.cc): i = f(clip(x_i + P_i c)), f = f(clip(x_f + P_f c))
        or 1 − i, c̃ = g(clip(x_c)), C = f c + i c̃, o = f(clip(x_o + P_o C)), H = o h(C); gates iofc."""
        e, hidden = self.e, op.hidden
        f_fn, g_fn, h_fn = fns
        e.emit("add", gate(0, 4), step_xw(0, 4), self._rows(product, batch, 4 * hidden))
        if peepholes is not None:
            pb, po = self.low.place(peepholes)

            def p(j: int):
                return view(pb, po + d * 3 * hidden + j * hidden, [(batch, 0), (hidden, 1)])

            for j, pj in ((0, 0), (2, 2)):  # input and forget gates read the previous cell state
                e.emit("mul", scratch, c, p(pj))
                e.emit("add", gate(j), gate(j), scratch)
            for j in (0, 2, 3):
                self._clip(op, gate(j))
        else:
            self._clip(op, gate(0, 4))
        self._activate(f_fn, gate(0), gate(0))
        if op.input_forget:
            e.emit("mul", gate(2), gate(0), -1.0)
            e.emit("add", gate(2), gate(2), 1.0)
        else:
            self._activate(f_fn, gate(2), gate(2))
        self._activate(g_fn, gate(3), gate(3))
        e.emit("mul", c_new, c, gate(2))
        e.emit("mul", scratch, gate(0), gate(3))
        e.emit("add", c_new, c_new, scratch)
        if peepholes is not None:  # the output gate reads the new cell state
            e.emit("mul", scratch, c_new, p(1))
            e.emit("add", gate(1), gate(1), scratch)
            self._clip(op, gate(1))
        self._activate(f_fn, gate(1), gate(1))
        self._activate(h_fn, h_new, c_new)
        e.emit("mul", h_new, h_new, gate(1))

    def _gru_step(self, op, d, fns, gate, step_xw, product, cells, h, h_new, scratch, batch) -> None:
        """z, r = f(clip(x_zr + h R_zrᵀ)); h̃ = g(clip(x_h + (r ⊙ h) R_hᵀ)), or with
        linear_before_reset g(clip(x_h + r ⊙ (h R_hᵀ + Rb_h))); H = (1 − z) h̃ + z h; gates zrh."""
        e, hidden = self.e, op.hidden
        f_fn, g_fn = fns
        width = (2 if not op.linear_before_reset else 3) * hidden
        pb, po = self.low.place(product)
        e.emit("add", gate(0, 2), step_xw(0, 2), view(pb, po, [(batch, width), (2 * hidden, 1)]))
        self._clip(op, gate(0, 2))
        self._activate(f_fn, gate(0, 2), gate(0, 2))
        if op.linear_before_reset:
            e.emit("mul", gate(2), gate(1), view(pb, po + 2 * hidden, [(batch, width), (hidden, 1)]))
            e.emit("add", gate(2), gate(2), step_xw(2, 1))
        else:
            dense, gated = cells[(d, "rh")]
            e.emit("mul", self._rows(gated, batch, hidden), gate(1), h)
            self._project(dense)
            e.emit("add", gate(2), step_xw(2, 1), self._rows(dense.outputs[0], batch, hidden))
        self._clip(op, gate(2))
        self._activate(g_fn, gate(2), gate(2))
        e.emit("mul", scratch, gate(0), -1.0)
        e.emit("add", scratch, scratch, 1.0)
        e.emit("mul", scratch, scratch, gate(2))
        e.emit("mul", h_new, gate(0), h)
        e.emit("add", h_new, h_new, scratch)
