"""Edge inputs of the sequence layers and models (issue 14, hardening).

1. dtypes: a plain mismatch names both dtypes; float64 modules are exact; under autocast (and in
   float16/bfloat16 modules) the SSM kernels, FFT convolutions and D terms run in float32;
2. empty inputs: batch 0 and length 0 give empty outputs and states of the right shape;
3. states of the wrong batch, shape or dtype are refused by name;
4. non-finite values: ``hippos.ops.check_finite`` names the first position, and what a NaN does
   to each view (``docs/kernels.md``, "Edge inputs") is pinned down;
5. model sizes: ``ModelConfig.validate`` gives one message per bad field, before any warning.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from hippos.kernels.base import dense_oracle
from hippos.layers import H3, S4, H3State, KVCache, MultiHeadAttention
from hippos.models import (
    LanguageModel,
    LMConfig,
    ModelConfig,
    SequenceClassifier,
    SSMBackbone,
)
from hippos.ops import check_finite
from hippos.ops.fftconv import direct_conv, fft_conv

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

H = 8
LAYERS = {
    "s4": lambda: S4(H, d_state=8, l_max=32, dt_min=0.01, dt_max=0.1),
    "s4d": lambda: S4(H, d_state=8, mode="diag", dt_min=0.01, dt_max=0.1),
    "lssl": lambda: S4(H, d_state=8, mode="dense", dt_min=0.01, dt_max=0.1),
    "h3": lambda: H3(H, d_state=8, head_dim=2, shift_state=4),
    "attention": lambda: MultiHeadAttention(H, 2),
}
KINDS = list(LAYERS)
LOW = [torch.float16, torch.bfloat16]


def make(kind: str) -> torch.nn.Module:
    return LAYERS[kind]().eval()


def shapes(state):
    """The shapes of a layer state (a tensor, an H3State or a KVCache)."""
    if torch.is_tensor(state):
        return [tuple(state.shape)]
    return [tuple(s.shape) for s in state[:2]]


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    """|a - b| <= tol · max(1, max|b|), in float64."""
    a, b = a.double(), b.double()
    err = (a - b).abs().max().item()
    assert err <= tol * max(1.0, b.abs().max().item()), f"max error {err:.3g}"


# --------------------------------------------------------------------------------------- 1. dtypes
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_plain_dtype_mismatch_names_both_dtypes(kind, dtype):
    layer = make(kind)
    name = str(dtype).removeprefix("torch.")
    msg = re.escape(f"input is {name} but the layer's parameters are float32; use layer.to(torch.{name}) or torch.autocast")
    with pytest.raises(TypeError, match=msg):
        layer(torch.randn(2, 16, H).to(dtype))
    with pytest.raises(TypeError, match=msg):  # the step checks lazily (only once it fails), same message
        layer.step(torch.randn(2, H).to(dtype), layer.default_state(2), layer.setup_step())


@pytest.mark.parametrize("kind", KINDS)
def test_float64_module_refuses_float32_input(kind):
    layer = make(kind).double()
    with pytest.raises(TypeError, match="input is float32 but the layer's parameters are float64"):
        layer(torch.randn(2, 16, H))


@pytest.mark.parametrize("kind", ["s4", "s4d", "lssl"])
def test_float64_module_matches_the_dense_reference(kind):
    layer = make(kind).double()
    u = torch.randn(2, 23, H, dtype=torch.float64)
    y, _ = layer(u)
    K = dense_oracle(layer.kernel, 23)  # f64(H L): C Ā^l B̄ by plain powers
    ref = layer._out(direct_conv(u, K, layer.D))
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["h3", "attention"])
def test_float64_module_forward_equals_step(kind):
    layer = make(kind).double()
    u = torch.randn(2, 11, H, dtype=torch.float64)
    y, _ = layer(u)
    state, params, ys = layer.default_state(2), layer.setup_step(), []
    for t in range(11):
        y_t, state = layer.step(u[:, t], state, params)
        ys.append(y_t)
    assert y.dtype == torch.float64
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-9, atol=1e-10)


def _ssm_output_dtypes(layer) -> list:
    """Record the dtype that reaches the output map (S4: its activation; H3: out_proj)."""
    seen = []
    target = layer.activation if isinstance(layer, S4) else layer.out_proj
    target.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    return seen


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("input_low", [False, True])
def test_autocast_returns_the_autocast_dtype_with_the_ssm_in_float32(kind, dtype, input_low):
    layer = make(kind)
    u = torch.randn(2, 16, H)
    ref, _ = layer(u)
    seen = [] if kind == "attention" else _ssm_output_dtypes(layer)
    with torch.autocast("cpu", dtype=dtype):
        y, _ = layer(u.to(dtype) if input_low else u)
    assert y.dtype == dtype  # what the output linear produces under autocast
    assert all(d == torch.float32 for d in seen)  # the SSM part (kernel, FFT conv, D) ran in float32
    close(y, ref, 3e-2 if dtype == torch.bfloat16 else 5e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_autocast_step_equals_autocast_forward(kind):
    layer = make(kind)
    u = torch.randn(2, 9, H)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = layer(u)
        state, params, ys = layer.default_state(2), layer.setup_step(), []
        for t in range(9):
            y_t, state = layer.step(u[:, t], state, params)
            ys.append(y_t)
    assert y.dtype == ys[0].dtype == torch.bfloat16
    close(torch.stack(ys, 1), y, 3e-2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_module_runs_its_kernels_in_float32(kind, dtype):
    layer = make(kind)
    u = torch.randn(2, 16, H)
    ref, _ = layer(u)
    low = make(kind)
    low.load_state_dict(layer.state_dict())
    low.to(dtype)
    seen = [] if kind == "attention" else _ssm_output_dtypes(low)
    y, _ = low(u.to(dtype))
    assert y.dtype == dtype
    assert all(d == dtype for d in seen)  # z is cast back to the module's dtype for its output map
    close(y, ref, 0.1 if dtype == torch.bfloat16 else 2e-2)  # the parameters themselves are rounded
    y_t, _ = low.step(u[:, 0].to(dtype), low.default_state(2), low.setup_step())
    assert y_t.dtype == dtype


def test_fft_conv_runs_in_float32_for_half_inputs():
    u, K, D = torch.randn(2, 64, 3), torch.randn(3, 64), torch.randn(3)
    ref = fft_conv(u.double(), K.double(), D.double())
    y = fft_conv(u.half(), K, D)  # K float32: the FFT and D u in float32, the result in u's dtype
    assert y.dtype == torch.float16
    close(y, ref, 2e-3)  # float16 rounding of u and of y only


# ------------------------------------------------------------------------------- 2. empty inputs
@pytest.mark.parametrize("kind", KINDS)
def test_batch_zero(kind):
    layer = make(kind).train()
    u = torch.randn(0, 16, H, requires_grad=True)
    y, state = layer(u, return_state=True)
    assert y.shape == (0, 16, H)
    want = shapes(layer.default_state(0))
    if kind == "attention":
        want = [(0, 2, 16, 4)] * 2  # the cache holds the 16 keys and values
    assert shapes(state) == want
    y.sum().backward()  # an empty batch is differentiable (zero gradients)
    assert u.grad.shape == u.shape
    y2, _ = layer(torch.randn(0, 5, H), state=state)  # carrying an empty state
    assert y2.shape == (0, 5, H)
    layer.eval()
    y_t, s = layer.step(torch.randn(0, H), layer.default_state(0), layer.setup_step())
    assert y_t.shape == (0, H) and shapes(s)[0][0] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_length_zero_passes_the_state_through(kind):
    layer = make(kind)
    u = torch.randn(2, 12, H)
    _, s = layer(u[:, :7], return_state=True)
    y0, s0 = layer(torch.randn(2, 0, H), state=s)
    assert y0.shape == (2, 0, H)
    for a, b in zip([s0] if torch.is_tensor(s0) else s0[:2], [s] if torch.is_tensor(s) else s[:2]):
        torch.testing.assert_close(a, b)
    y_after, _ = layer(u[:, 7:], state=s0)
    y_ref, _ = layer(u[:, 7:], state=s)
    torch.testing.assert_close(y_after, y_ref)
    y_none, s_none = layer(torch.randn(2, 0, H), return_state=True)
    assert y_none.shape == (2, 0, H) and shapes(s_none) == shapes(layer(torch.randn(2, 0, H), state=layer.default_state(2))[1])


def test_fft_conv_empty():
    K, D = torch.randn(3, 8, requires_grad=True), torch.randn(3, requires_grad=True)
    for shape in [(0, 8, 3), (2, 0, 3)]:
        u = torch.randn(shape, requires_grad=True)
        y = fft_conv(u, K, D)
        assert y.shape == shape
        y.sum().backward()
        assert K.grad is not None and not K.grad.any()


# ------------------------------------------------------------------------------------ 3. states
@pytest.mark.parametrize("kind", KINDS)
def test_state_of_another_batch_is_named(kind):
    layer = make(kind)
    msg = "has batch 5, input has batch 2"
    with pytest.raises(ValueError, match=msg):
        layer(torch.randn(2, 16, H), state=layer.default_state(5))
    with pytest.raises(ValueError, match=msg):
        layer.step(torch.randn(2, H), layer.default_state(5), layer.setup_step())


@pytest.mark.parametrize("kind", ["s4", "s4d", "lssl"])
def test_s4_state_shape_and_dtype_messages(kind):
    layer = make(kind)
    u = torch.randn(2, 16, H)
    good = layer.default_state(2)  # c(B H M), or r(B H N) for lssl
    _, H_, M = good.shape
    with pytest.raises(ValueError, match=re.escape(f"state must have shape (B, {H_}, {M}), got (2, {H_}, {M + 1})")):
        layer(u, state=torch.zeros(2, H_, M + 1, dtype=good.dtype))
    with pytest.raises(ValueError, match="state must have shape"):
        layer(u, state=good[0])
    other = good.real if good.is_complex() else torch.complex(good, good)
    with pytest.raises(TypeError, match="state must be (complex|real floating point), got"):
        layer(u, state=other)
    with pytest.raises(TypeError, match="state must be a tensor"):
        layer(u, state=[good])


def test_h3_and_attention_state_messages():
    h3, attn = make("h3"), make("attention")
    u = torch.randn(2, 16, H)
    s = h3.default_state(2)
    with pytest.raises(ValueError, match=r"H3 state.diag must have shape \(B, 4, 4, 4\)"):
        h3(u, state=H3State(s.shift, s.diag[..., :3]))
    with pytest.raises(TypeError, match="H3 state.shift must be real floating point"):
        h3(u, state=H3State(s.shift.to(torch.complex64), s.diag))
    with pytest.raises(ValueError, match="H3 state must be an H3State"):
        h3(u, state=s.shift)
    c = attn.default_state(2)
    with pytest.raises(ValueError, match=r"KVCache\(keys, values\) of shape \(B, 2, T, 4\)"):
        attn(u, state=KVCache(c.keys[..., :3], c.values[..., :3]))
    with pytest.raises(TypeError, match="must be floating point"):
        attn(u, state=KVCache(c.keys.long(), c.values.long()))


def test_model_states_of_another_batch_are_named():
    backbone = SSMBackbone(ModelConfig(d_model=H, n_layers=2, d_state=8, l_max=16)).eval()
    with pytest.raises(ValueError, match="has batch 5, input has batch 2"):
        backbone(torch.randn(2, 16, 1), state=backbone.default_state(5))
    with pytest.raises(ValueError, match="has batch 5, input has batch 2"):
        backbone.step(torch.randn(2, 1), backbone.default_state(5))
    with pytest.raises(ValueError, match="state must be a list of 2 layer states"):
        backbone.step(torch.randn(2, 1), backbone.default_state(2)[:1])
    lm = LanguageModel(LMConfig(vocab_size=11, d_model=H, n_layers=2, mixer="h3", attn_layers=(1,), n_heads=2, d_state=8, shift_state=4)).eval()
    tokens = torch.randint(0, 11, (2, 6))
    with pytest.raises(ValueError, match="has batch 5, input has batch 2"):
        lm(tokens, state=lm.default_state(5))
    with pytest.raises(ValueError, match="has batch 5, input has batch 2"):
        lm.step(tokens[:, 0], lm.default_state(5))
    _, state = lm(tokens, return_state=True)  # the attention layer's cache, with batch 2
    bad = [lm.default_state(2)[0], KVCache(state[1].keys[:1], state[1].values[:1])]
    with pytest.raises(ValueError, match=r"attention state \(KVCache\) has batch 1, input has batch 2"):
        lm.step(tokens[:, 0], bad)


# --------------------------------------------------------------------------- 4. non-finite values
def test_check_finite_names_the_first_position():
    x = torch.randn(2, 16, 4)
    assert check_finite(x) is x
    x[1, 2, 0] = float("inf")
    x[0, 10, 3] = float("nan")
    with pytest.raises(ValueError, match=re.escape("input has a non-finite value (NaN) at batch 0, step 10, channel 3 (2 non-finite values in all)")):
        check_finite(x)
    x[0, 10, 3] = 0.0
    with pytest.raises(ValueError, match=re.escape("x has a non-finite value (inf) at batch 1, step 2, channel 0") + "$"):
        check_finite(x, "x")
    with pytest.raises(ValueError, match=re.escape("at row 1, column 2")):
        check_finite(torch.tensor([[0.0, 1, 2], [0, 1, -float("inf")]]), "table", dims=("row", "column"))
    assert check_finite(torch.arange(3)) is not None  # integer tensors are finite


def test_models_refuse_a_non_finite_input_by_position():
    model = SequenceClassifier(ModelConfig(d_model=H, n_layers=1, d_state=8, l_max=32))
    x = torch.randn(3, 32, 1)
    x[2, 17, 0] = float("nan")
    with pytest.raises(ValueError, match=re.escape("input has a non-finite value (NaN) at batch 2, step 17, channel 0")):
        model(x)


def test_what_one_nan_does_to_each_view():
    """One NaN at (batch 0, step 10, channel 3): the numbers quoted in docs/kernels.md."""
    u = torch.randn(2, 32, H)
    u[0, 10, 3] = float("nan")
    K = torch.randn(H, 32)
    for conv in (fft_conv, direct_conv):  # a Toeplitz product spreads it too: 0 · NaN = NaN
        nan = conv(u, K).isnan()
        assert nan[0, :, 3].all() and nan.sum() == 32  # every step of that channel, before step 10 too
    layer = make("s4d")
    y, _ = layer(u)
    assert y[0].isnan().all() and not y[1].isnan().any()  # the output linear mixes the channels
    state, params, ys = layer.default_state(2), layer.setup_step(), []
    for t in range(32):
        y_t, state = layer.step(u[:, t], state, params)
        ys.append(y_t)
    ys = torch.stack(ys, 1)
    assert not ys[0, :10].isnan().any() and ys[0, 10:].isnan().all()  # the recurrence is causal
    layer.train()
    y, _ = layer(u)
    y[1].sum().backward()  # a loss on the clean sequence only: the kernel's gradient sums over the batch
    assert all(p.grad.isnan().any() for p in layer.kernel.parameters())


# ------------------------------------------------------------------------------ 5. model sizes
BAD_FIELDS = [
    ("d_model", 0), ("n_layers", 0), ("d_state", 0), ("d_state", 3), ("d_input", 0), ("n_classes", 0), ("l_max", 0),
    ("mode", "fast"), ("init", "foo"), ("disc", "rk4"), ("dt_min", 0.0), ("dt_max", 1e-4), ("ssm_lr", -1.0),
    ("dropout", 1.0), ("activation", "swish2"), ("output", "mlp"), ("norm", "group"), ("pool", "max"),
    ("d_model", 2.5), ("n_layers", True), ("bidirectional", 1),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS)
def test_model_config_gives_one_message_per_field(field, value):
    cfg = ModelConfig(d_model=H, n_layers=1, d_state=8, l_max=16)
    setattr(cfg, field, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zero-size nn.Linear warning before the message
        with pytest.raises(ValueError, match=rf"^ModelConfig\.{field} must be"):
            SequenceClassifier(cfg)


def test_lm_config_odd_d_state():
    with pytest.raises(ValueError, match=r"LMConfig\.d_state must be even"):
        LanguageModel(LMConfig(d_model=H, d_state=7))


def test_cli_zero_width_is_one_clean_line(tmp_path, capsys):
    from hippos.cli import main

    argv = ["train", "--model.d_model=0", "--data.length=16", "--data.bits=4", "--data.bit_length=2", "--data.n_train=8",
            "--data.n_val=4", "--data.n_test=4", "--epochs=1", "--tensorboard=false", f"--out_dir={tmp_path / 'run'}"]
    before = torch.get_num_threads()
    try:
        assert main(argv) == 2
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hippos train: error: ModelConfig.d_model must be an integer >= 1, got 0"]
