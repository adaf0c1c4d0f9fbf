"""Recurrent networks: the sequential loop of the ISA (round trip, validation, runtime, timing)
and ONNX LSTM / GRU / RNN compiled onto it, against onnxruntime on ``ideal`` and, with W and R
on crossbars, on ``pcm`` without device noise."""
from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import run_ort
from nmc.backends.target import load_target
from nmc.compiler import compile_model
from nmc.compiler.errors import CompileError, UnsupportedOpError
from nmc.compiler.ir import ops
from nmc.isa import Loop, ProgramError, format_program, parse_program, validate
from nmc.runtime import SimOptions, execute
from nmc.runtime.costs import CostModel
from nmc.runtime.timing import estimate

# ----------------------------------------------------------------------------- the ISA
RUNNING_SUM = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [6]
.output "y" out0 f32 [6]
.buffer in0 f32 6 global
.buffer out0 f32 6 global
.buffer x f32 6 core0
.buffer acc f32 1 core0
.buffer y f32 6 core0
.core 0
    load x[0; 6:1], in0[0; 6:1]
    fill acc[0; 1:1], #0.0
    loop.seq %t, 6 {
        add acc[0; 1:1], acc[0; 1:1], x[0 + 1*%t; 1:1]
        mov y[0 + 1*%t; 1:1], acc[0; 1:1]
    }
    store out0[0; 6:1], y[0; 6:1]
"""


def _program(text: str):
    p = parse_program(text)
    p.data = {}
    return p


def test_sequential_loop_round_trips():
    p = _program(RUNNING_SUM)
    assert format_program(p) == RUNNING_SUM
    assert parse_program(format_program(p)) == parse_program(RUNNING_SUM)
    (loop,) = [s for s in p.cores[0] if isinstance(s, Loop)]
    assert loop.sequential and loop.var == "t" and loop.count == 6
    assert not parse_program(RUNNING_SUM.replace("loop.seq", "loop")).cores[0][2].sequential


def test_sequential_loop_computes_a_running_sum_vectorised_over_the_batch():
    x = np.arange(18, dtype=np.float32).reshape(3, 6) - 4
    y = execute(_program(RUNNING_SUM), {"x": x})["y"]
    np.testing.assert_array_equal(y, np.cumsum(x, axis=1))
    # the same body as a parallel loop: every iteration reads acc before any writes it
    parallel = execute(_program(RUNNING_SUM.replace("loop.seq", "loop")), {"x": x})["y"]
    assert not np.array_equal(parallel, np.cumsum(x, axis=1))


NESTED = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [4, 3]
.output "y" out0 f32 [4, 3]
.buffer in0 f32 12 global
.buffer out0 f32 12 global
.buffer x f32 12 core0
.buffer h f32 3 core0
.buffer y f32 12 core0
.core 0
    load x[0; 12:1], in0[0; 12:1]
    fill h[0; 3:1], #1.0
    loop.seq %t, 4 {
        loop %i, 3 {
            mul h[0 + 1*%i; 1:1], h[0 + 1*%i; 1:1], x[9 - 3*%t + 1*%i; 1:1]
        }
        mov y[9 - 3*%t; 3:1], h[0; 3:1]
    }
    store out0[0; 12:1], y[0; 12:1]
"""


def test_parallel_loop_inside_a_reverse_sequential_loop():
    """A reverse pass (t runs down the rows) with a parallel loop in each step: a running product
    from the last row up, per column."""
    x = np.random.default_rng(0).uniform(0.5, 1.5, (2, 4, 3)).astype(np.float32)
    y = execute(_program(NESTED), {"x": x})["y"]
    np.testing.assert_allclose(y, np.cumprod(x[:, ::-1], axis=1)[:, ::-1], rtol=1e-6)


PING_PONG = """\
.nmc 2
.target "ideal"
.batched true
.input "x" in0 f32 [5]
.output "y" out0 f32 [5]
.buffer in0 f32 5 global
.buffer out0 f32 5 global
.buffer x f32 5 core0
.buffer h f32 1 core0
.buffer back f32 1 core0
.buffer y f32 5 core0
.buffer there f32 1 core1
.core 0
    load x[0; 5:1], in0[0; 5:1]
    fill h[0; 1:1], #0.0
    loop.seq %t, 5 {
        send $1, h[0; 1:1]
        recv back[0; 1:1], $1
        add h[0; 1:1], back[0; 1:1], x[0 + 1*%t; 1:1]
        mov y[0 + 1*%t; 1:1], h[0; 1:1]
    }
    store out0[0; 5:1], y[0; 5:1]
.core 1
    loop.seq %t, 5 {
        recv there[0; 1:1], $0
        mul there[0; 1:1], there[0; 1:1], #2.0
        send $0, there[0; 1:1]
    }
"""


def test_cores_exchange_messages_in_every_step():
    """h_t = 2 h_{t-1} + x_t with the doubling on another core: the cores meet twice per step."""
    x = np.array([[1, 0, 0, 1, 2], [0.5, -1, 3, 0, 0]], np.float32)
    y = execute(_program(PING_PONG), {"x": x})["y"]
    want = np.zeros_like(x)
    h = np.zeros(2, np.float32)
    for t in range(5):
        h = 2 * h + x[:, t]
        want[:, t] = h
    np.testing.assert_array_equal(y, want)


def test_cores_that_disagree_on_the_step_count_deadlock_with_a_message():
    from nmc.runtime import SimulationError

    program = _program(PING_PONG.replace("    loop.seq %t, 5 {\n        recv there", "    loop.seq %t, 4 {\n        recv there"))
    with pytest.raises(SimulationError, match=r"deadlock: core 0 waits \(recv from core 1\)"):
        execute(program, {"x": np.zeros((1, 5), np.float32)})


@pytest.mark.parametrize("edit, message", [
    (("loop.seq %t, 5 {\n        send", "loop %t, 5 {\n        send"),
     r"send may not appear inside a parallel loop \(loop %t\)"),
    (("    store out0", "    loop.seq %s, 2 {\n        sync\n    }\n    store out0"),
     "sync may not appear inside a loop"),
    (("loop.seq %t, 5 {\n        recv there", "loop.seq %t, 0 {\n        recv there"), "loop.seq %t has count 0"),
])
def test_validator_rules_of_sequential_loops(edit, message):
    with pytest.raises(ProgramError, match=message):
        validate(_program(PING_PONG.replace(*edit)))


def _first_loop(p) -> Loop:
    return next(s for s in p.cores[0] if isinstance(s, Loop))


def test_timing_charges_count_times_the_body_without_pipelining():
    """The body (a load on the buffer port, then an add on the vector unit) uses two units, so
    a parallel loop overlaps iterations; a sequential one cannot."""
    old_body = ("        add acc[0; 1:1], acc[0; 1:1], x[0 + 1*%t; 1:1]\n"
                "        mov y[0 + 1*%t; 1:1], acc[0; 1:1]\n")
    new_body = ("        load x[0 + 1*%t; 1:1], in0[0 + 1*%t; 1:1]\n"
                "        add acc[0; 1:1], acc[0; 1:1], x[0 + 1*%t; 1:1]\n")
    target = load_target("ideal")
    seq = _program(RUNNING_SUM.replace(old_body, new_body))
    par = _program(RUNNING_SUM.replace(old_body, new_body).replace("loop.seq", "loop"))
    model = CostModel(seq, target)
    one = model.block(_first_loop(seq).body, 0)
    assert model.loop(_first_loop(seq), 0).cycles == pytest.approx(6 * one.cycles)
    assert model.loop(_first_loop(par), 0).cycles < 6 * one.cycles
    assert model.loop(_first_loop(seq), 0).energy == model.loop(_first_loop(par), 0).energy
    assert estimate(seq, target).latency_cycles > estimate(par, target).latency_cycles


def test_timing_schedules_a_talking_loop_step_by_step():
    ideal = load_target("ideal")
    short = estimate(_program(PING_PONG), ideal)
    longer = estimate(_program(PING_PONG.replace("5", "10")), ideal)  # 10 steps over 10 inputs
    # each step waits for its round trip: latency and message energy grow with the steps
    assert longer.energy_pj["noc"] == pytest.approx(2 * short.energy_pj["noc"])
    assert longer.latency_cycles > 1.8 * short.latency_cycles


# ----------------------------------------------------------------------------- ONNX recurrences
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def recurrent_model(cell: str, steps=4, batch=2, inputs=3, hidden=5, direction="forward", layout=0,
                    initial=False, lengths=None, peepholes=False, free_batch=False, scale=0.5, seed=0, **attrs):
    """One ONNX recurrence with constant weights and its feeds (X, and as asked initial states
    and int32 sequence lengths as graph inputs)."""
    rng = np.random.default_rng(seed)
    g, d = GATES[cell], 2 if direction == "bidirectional" else 1
    init = {"W": rng.standard_normal((d, g * hidden, inputs)) * scale,
            "R": rng.standard_normal((d, g * hidden, hidden)) * scale,
            "B": rng.standard_normal((d, 2 * g * hidden)) * scale}
    if peepholes:
        init["P"] = rng.standard_normal((d, 3 * hidden)) * scale
    x_shape = [steps, batch, inputs] if layout == 0 else [batch, steps, inputs]
    state = [d, batch, hidden] if layout == 0 else [batch, d, hidden]
    feeds = {"X": rng.standard_normal(x_shape).astype(np.float32)}
    graph_inputs = [("X", TensorProto.FLOAT, x_shape)]
    names = ["X", "W", "R", "B", "", "", "", ""]
    if lengths is not None:
        feeds["L"] = np.asarray(lengths, np.int32)
        graph_inputs.append(("L", TensorProto.INT32, [batch]))
        names[4] = "L"
    if initial:
        for i, name in ((5, "h0"), (6, "c0"))[:2 if cell == "LSTM" else 1]:
            feeds[name] = rng.standard_normal(state).astype(np.float32)
            graph_inputs.append((name, TensorProto.FLOAT, state))
            names[i] = name
    if peepholes:
        names[7] = "P"
    while not names[-1]:
        names.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if cell == "LSTM" else [])
    node = helper.make_node(cell, names, outputs, hidden_size=hidden, direction=direction,
                            **({"layout": layout} if layout else {}), **attrs)
    value_infos = [helper.make_tensor_value_info(n, t, [("N" if free_batch and i == 0 else s)
                                                        for i, s in enumerate(shape)])
                   for n, t, shape in graph_inputs]
    graph = helper.make_graph([node], "rnn", value_infos,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in init.items()])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]))
    return model, feeds


def reference(cell: str, **kw):
    """The model, its feeds and onnxruntime's outputs; onnxruntime has no layout=1, so that one
    is answered by the time-first model on transposed tensors."""
    model, feeds = recurrent_model(cell, **kw)
    if kw.get("layout", 0) == 0:
        return model, feeds, run_ort(model, feeds)
    first, _ = recurrent_model(cell, **{**kw, "layout": 0, "free_batch": False})
    swapped = {k: (v.transpose(1, 0, 2) if v.ndim == 3 else v) for k, v in feeds.items()}
    y, *states = run_ort(first, swapped)
    return model, feeds, [y.transpose(2, 0, 1, 3)] + [s.transpose(1, 0, 2) for s in states]


def run(model, feeds, target="ideal", **compile_kw):
    compiled = compile_model(model, target=target, **compile_kw)
    out = execute(compiled.program, feeds, target=compiled.target, options=SimOptions(noise=False))
    return compiled, [np.asarray(out[o.name]) for o in model.graph.output]


def assert_matches(got, want, rtol=1e-5):
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * float(np.abs(w).max()))


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("initial, lengths", [(False, None), (True, None), (False, [4, 2]), (True, [0, 3])])
def test_ideal_matches_onnxruntime(cell, direction, initial, lengths):
    model, feeds, want = reference(cell, direction=direction, initial=initial, lengths=lengths)
    _, got = run(model, feeds)
    assert_matches(got, want)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_batch_first_layout(cell, direction):
    model, feeds, want = reference(cell, direction=direction, layout=1, initial=True, lengths=[3, 4])
    _, got = run(model, feeds)
    assert_matches(got, want)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_free_batch_runs_sample_by_sample(cell):
    """layout=1 with a free batch: the runtime's batch axis carries the sequences, each with its
    own initial state and length."""
    model, feeds, want = reference(cell, direction="bidirectional", layout=1, batch=5, initial=True,
                                   lengths=[4, 1, 3, 0, 2], free_batch=True)
    compiled, got = run(model, feeds)
    assert compiled.graph.batched and compiled.program.inputs[0].shape == (4, 3)
    assert_matches(got, want)


@pytest.mark.parametrize("cell, attrs", [
    ("LSTM", {"clip": 0.7}), ("LSTM", {"input_forget": 1, "direction": "bidirectional"}),
    ("LSTM", {"peepholes": True, "initial": True, "lengths": [2, 4]}),
    ("LSTM", {"activations": ["HardSigmoid", "Tanh", "Softsign"], "activation_alpha": [0.25],
              "activation_beta": [0.45]}),
    ("GRU", {"linear_before_reset": 1, "direction": "bidirectional", "initial": True, "lengths": [3, 1]}),
    ("GRU", {"clip": 0.5}),
    ("GRU", {"activations": ["HardSigmoid", "Softsign", "Sigmoid", "Elu"], "direction": "bidirectional",
             "activation_alpha": [0.3, 0.4, 1.1], "activation_beta": [0.4, 0.3]}),
    ("RNN", {"activations": ["Relu"]}), ("RNN", {"activations": ["Affine"], "activation_alpha": [0.7],
                                                 "activation_beta": [0.2]}),
    ("RNN", {"activations": ["LeakyRelu"]}), ("RNN", {"activations": ["ThresholdedRelu"], "activation_alpha": [0.3]}),
    ("RNN", {"activations": ["ScaledTanh"], "activation_alpha": [1.5], "activation_beta": [0.5]}),
    ("RNN", {"activations": ["Elu"], "activation_alpha": [0.8]}), ("RNN", {"activations": ["Softplus"]}),
    ("RNN", {"clip": 0.3, "direction": "bidirectional"}),
])
def test_attributes(cell, attrs):
    model, feeds, want = reference(cell, **attrs)
    _, got = run(model, feeds)
    assert_matches(got, want)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_one_step_and_only_the_final_states(cell):
    model, feeds = recurrent_model(cell, steps=1, initial=True, lengths=[1, 0])
    assert_matches(run(model, feeds)[1], run_ort(model, feeds))
    model, feeds = recurrent_model(cell, direction="bidirectional")
    model.graph.node[0].output[0] = ""  # Y not asked for
    del model.graph.output[0]
    compiled, got = run(model, feeds)
    assert_matches(got, run_ort(model, feeds))
    assert all(not t.startswith(".") for t in compiled.graph.tensors)


def test_program_grows_with_layers_not_time_steps():
    sizes = {}
    for steps in (3, 12):
        model, _ = recurrent_model("LSTM", steps=steps, direction="bidirectional")
        sizes[steps] = compile_model(model, target="pcm").program.instruction_count()
    assert sizes[3] == sizes[12]


def _crossbar_layers(compiled):
    g = compiled.graph
    return {n.name: g.producer(n.inputs[0]) for n in g.nodes()
            if isinstance(n.op, ops.Dense) and g.mapping[n.name].unit == "crossbar"}


@pytest.mark.parametrize("cell, recurrent_denses", [("LSTM", 2), ("GRU", 4), ("RNN", 2)])
def test_weights_go_to_crossbars_and_the_loop_runs_on_both_kinds_of_core(cell, recurrent_denses):
    model, feeds, want = reference(cell, steps=6, batch=3, inputs=8, hidden=16, direction="bidirectional",
                                   initial=True, lengths=[6, 3, 5], scale=0.25)
    compiled, got = run(model, feeds, target="pcm")
    layers = _crossbar_layers(compiled)
    # W: one Dense over the whole sequence (reads X); R: one (GRU: two) per direction in the loop
    assert sum(p is None for p in layers.values()) == 1
    assert sum(p is not None and isinstance(p.op, ops.LoopCarried) for p in layers.values()) == recurrent_denses
    assert len(layers) == 1 + recurrent_denses
    program = compiled.program
    crossbar_cores = set(compiled.target.core_range("crossbar"))
    looping = {c for c, stream in program.cores.items() if any(isinstance(s, Loop) and s.sequential for s in stream)}
    assert compiled.target.vector_core in looping and looping & crossbar_cores
    for g, w in zip(got, want):  # uncalibrated: each ADC covers its worst case (about 7 % here)
        assert np.abs(g - w).mean() <= 0.1 * np.abs(w).mean()


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_pcm_without_noise_is_close_to_float_with_calibration(cell):
    """Calibration sizes the ADCs of W from X and of R from the hidden states Y holds; sequences
    are stacked along the time axis (the leading axis of a fixed-size time-first model)."""
    kw = {"steps": 10, "batch": 8, "inputs": 12, "hidden": 32, "direction": "bidirectional", "scale": 0.15}
    model, feeds, want = reference(cell, **kw)
    samples = np.random.default_rng(5).standard_normal((16 * 10, 8, 12)).astype(np.float32)
    compiled, got = run(model, feeds, target="pcm", calibration={"X": samples})
    sources = {t.adc_range_source.split(":")[0] for m in compiled.graph.mapping.values() for t in m.tiles}
    assert sources == {"calibration"}
    for g, w in zip(got, want):
        assert np.abs(g - w).mean() <= 0.03 * np.abs(w).mean()
        assert np.abs(g - w).max() <= 0.08 * np.abs(w).max()


# ----------------------------------------------------------------------------- refusals
def test_unknown_activation_is_refused_naming_the_node():
    model, _ = recurrent_model("RNN", activations=["Swish"])
    model.graph.node[0].name = "rnn0"
    with pytest.raises(UnsupportedOpError, match=r"node 'rnn0' \(RNN.*activation 'Swish' is not supported"):
        compile_model(model)


def test_wrong_number_of_activations_is_refused():
    model, _ = recurrent_model("LSTM", activations=["Sigmoid", "Tanh"])
    with pytest.raises(UnsupportedOpError, match="activations lists 2 functions; a LSTM with 1 direction"):
        compile_model(model)


def test_time_first_model_with_a_free_batch_is_refused():
    """A free leading dimension is the batch, but layout 0 puts the time steps there."""
    model, _ = recurrent_model("GRU", free_batch=True)
    with pytest.raises(CompileError, match="layout=0 axis 0 holds the time steps"):
        compile_model(model)


# ----------------------------------------------------------------------------- PyTorch exports
@pytest.mark.filterwarnings("ignore")  # the TorchScript exporter's deprecation and tracer warnings
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_torch_export(kind):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(6, 8, num_layers=2, bidirectional=True, batch_first=True)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.head(y)

    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(3, 7, 6)
    buffer = io.BytesIO()
    torch.onnx.export(net, (x,), buffer, input_names=["x"], output_names=["y"], dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    assert kind in {n.op_type for n in model.graph.node}
    feeds = {"x": x.numpy()}
    want = run_ort(model, feeds)
    _, got = run(model, feeds)
    assert_matches(got, want)
    with torch.no_grad():
        np.testing.assert_allclose(got[0], net(x).numpy(), rtol=1e-4, atol=1e-5)
