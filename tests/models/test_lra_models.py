"""The LRA model pieces: padding never reaches a sequence's logits (masked BatchNorm, masked mean
pooling, the bidirectional S4 and attention encoder), the encoder attention against a dense
float64 reference, token inputs, and the Δ guard that keeps a run-away log Δ finite."""

from __future__ import annotations

import math

import pytest
import torch

from hippos.layers.attention import MultiHeadAttention
from hippos.layers.block import make_norm
from hippos.layers.s4 import S4
from hippos.models.classifier import SequenceClassifier
from hippos.models.config import ModelConfig
from hippos.train.optim import param_groups

torch.set_num_threads(1)


def _classifier(**kw) -> SequenceClassifier:
    torch.manual_seed(0)
    base = {"vocab_size": 12, "n_classes": 5, "d_model": 16, "n_layers": 2, "d_state": 4, "mode": "dplr",
            "bidirectional": True, "norm": "batch", "prenorm": False, "pool": "mean", "l_max": 64}
    return SequenceClassifier(ModelConfig(**{**base, **kw})).double()


def _batch(L=23, pad_to=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([L, 7, 15, 3])
    x = torch.randint(1, 12, (4, pad_to), generator=g)
    x[torch.arange(pad_to)[None, :] >= lengths[:, None]] = 0
    return x, lengths


@pytest.mark.parametrize("kw", [{"mode": "dplr"}, {"mode": "diag"}, {"mode": "dplr", "prenorm": True},
                                {"mixer": "attention", "norm": "layer", "prenorm": True, "mlp_expand": 2}],
                         ids=["s4-postnorm", "s4d", "s4-prenorm", "transformer"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_padding_does_not_reach_the_logits(kw, train):
    """The same batch padded to 23 or to 40 steps gives the same logits (BatchNorm statistics,
    both SSM directions, attention keys and the pooling all see the valid steps only)."""
    model = _classifier(**kw).train(train)
    x, lengths = _batch()
    wide = torch.cat([x, torch.zeros(4, 17, dtype=x.dtype)], dim=1)  # 17 more padding steps
    a, _ = model(x, lengths)
    b, _ = model(wide, lengths)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    if kw.get("norm", "batch") == "batch" and train:  # the masked statistics are what makes it hold
        c, _ = model(wide, None)
        assert (c - a).abs().max() > 1e-3


def test_padding_invariance_fails_without_the_mask():
    """The property above is not vacuous: an unmasked padded batch changes the logits."""
    model = _classifier().eval()
    x, lengths = _batch()
    wide = torch.cat([x, torch.zeros(4, 17, dtype=x.dtype)], dim=1)
    assert (model(x, lengths)[0] - model(wide, None)[0]).abs().max() > 1e-3


def test_masked_batchnorm_matches_batchnorm_on_the_valid_steps():
    torch.manual_seed(1)
    bn = make_norm("batch", 6).double().train()
    ref = torch.nn.BatchNorm1d(6).double().train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
        ref.load_state_dict(bn.state_dict())
    x = torch.randn(3, 10, 6, dtype=torch.float64)
    lengths = torch.tensor([10, 4, 1])
    y = bn(x, lengths)
    valid = torch.arange(10)[None, :] < lengths[:, None]
    y_ref = ref(x[valid])  # (T_valid, 6): BatchNorm over the valid steps only
    torch.testing.assert_close(y[valid], y_ref)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    bn.eval()
    ref.eval()
    torch.testing.assert_close(bn(x, lengths)[valid], ref(x[valid]))


def test_masked_batchnorm_gradients_and_bfloat16():
    """The masked statistics' gradient equals BatchNorm1d's on the valid steps (padding gets
    none); a bfloat16 batch takes its statistics in float32 and returns bfloat16."""
    torch.manual_seed(3)
    bn = make_norm("batch", 5).double().train()
    ref = torch.nn.BatchNorm1d(5).double().train()
    x = torch.randn(3, 8, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([8, 3, 5])
    valid = torch.arange(8)[None, :] < lengths[:, None]
    w = torch.randn(3, 8, 5, dtype=torch.float64)
    (bn(x, lengths) * w).sum().backward()
    x_ref = x.detach()[valid].requires_grad_()  # (16, 5)
    (ref(x_ref) * w[valid]).sum().backward()
    torch.testing.assert_close(x.grad[valid], x_ref.grad)
    assert (x.grad[~valid] == 0).all()
    bn16 = make_norm("batch", 5).train()
    x16 = (3 + 2 * torch.randn(3, 8, 5)).to(torch.bfloat16)
    y16 = bn16(x16, lengths)
    assert y16.dtype == torch.bfloat16
    y32 = make_norm("batch", 5).train()(x16.float(), lengths)
    torch.testing.assert_close(y16.float()[valid], y32[valid], rtol=0, atol=2e-2)  # one bfloat16 rounding


def test_encoder_attention_matches_dense_reference():
    torch.manual_seed(2)
    att = MultiHeadAttention(12, n_heads=3, causal=False).double()
    u = torch.randn(2, 9, 12, dtype=torch.float64)
    lengths = torch.tensor([9, 5])
    y, state = att(u, lengths=lengths)
    assert state is None
    # dense reference: per head softmax(q kᵀ/√dh) v over the valid keys
    W, b = att.qkv.weight, att.qkv.bias
    q, k, v = (u @ W.T + b).split(12, dim=-1)
    out = torch.zeros_like(u)
    for bi in range(2):
        n = int(lengths[bi])
        for h in range(3):
            sl = slice(4 * h, 4 * h + 4)
            s = q[bi, :, sl] @ k[bi, :n, sl].T / math.sqrt(4)  # (9, n)
            out[bi, :, sl] = s.softmax(-1) @ v[bi, :n, sl]
    y_ref = out @ att.out_proj.weight.T + att.out_proj.bias
    torch.testing.assert_close(y, y_ref)
    mat = MultiHeadAttention(12, n_heads=3, causal=False, impl="materialized").double()
    mat.load_state_dict(att.state_dict())
    torch.testing.assert_close(mat(u, lengths=lengths)[0], y_ref)


def test_encoder_attention_sees_the_future_and_has_no_step():
    torch.manual_seed(3)
    att = MultiHeadAttention(8, n_heads=2, causal=False).double()
    u = torch.randn(1, 6, 8, dtype=torch.float64)
    u2 = u.clone()
    u2[0, -1] += 1.0
    assert (att(u)[0][0, 0] - att(u2)[0][0, 0]).abs().max() > 1e-6  # position 0 reads the last token
    with pytest.raises(ValueError, match="no recurrent view"):
        att.default_state(1)
    with pytest.raises(ValueError, match="has no state"):
        att(u, return_state=True)


def test_token_inputs_are_checked():
    model = _classifier()
    x, lengths = _batch()
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 12\)"):
        model(x + 20, lengths)
    with pytest.raises(ValueError, match="integer token ids"):
        model(x.double(), lengths)


@pytest.mark.parametrize("mode", ["dplr", "diag"])
@pytest.mark.parametrize("log_dt", [100.0, -100.0])
def test_run_away_log_dt_stays_finite(mode, log_dt):
    """The S4 reference's ListOps NaN: log Δ trained off to ±100 (exp overflows float32 at 88.7,
    2/Δ at Δ -> 0). The layer clamps Δ to DT_RANGE: output and every gradient stay finite."""
    torch.manual_seed(4)
    layer = S4(8, d_state=4, mode=mode, bidirectional=True)
    with torch.no_grad():
        layer.kernel.log_dt.fill_(log_dt)
    u = torch.randn(2, 50, 8)
    y, _ = layer(u)
    y.square().mean().backward()
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


def test_dt_lr_sets_the_step_size_rate_alone():
    model = SequenceClassifier(ModelConfig(d_model=8, n_layers=1, d_state=4, mode="dplr", dt_lr=0.01, bidirectional=True))
    rates = {n: g["lr"] for g in param_groups(model, lr=0.01, weight_decay=0.05) for n in g["param_names"]}
    hinted = {n for n, p in model.named_parameters() if hasattr(p, "_optim")}  # A, B, P and log Δ
    assert {n.rsplit(".", 1)[-1] for n in hinted} == {"log_dt", "log_neg_re", "im", "P", "B"}
    assert {rates[n] for n in hinted if n.endswith("log_dt")} == {0.01}
    assert {rates[n] for n in hinted if not n.endswith("log_dt")} == {1e-3}  # min(lr, 1e-3), as without dt_lr


def test_attn_dropout_acts_on_the_attention_probabilities_only():
    """``attn_dropout`` (the LRA Transformer sets 0: torch's CPU attention has no fused kernel with
    dropout) switches the attention-probability dropout independently of the residual dropout."""
    x, lengths = _batch()

    def two_draws(**kw):
        model = _classifier(mixer="attention", norm="layer", prenorm=True, mlp_expand=2, **kw).train()
        return model(x, lengths)[0], model(x, lengths)[0]

    a, b = two_draws(dropout=0.0, attn_dropout=0.5)  # only the attention probabilities are dropped
    assert (a - b).abs().max() > 1e-3
    a, b = two_draws(dropout=0.0, attn_dropout=0.0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    a, b = two_draws(dropout=0.3, attn_dropout=0.0)  # the residual dropout still acts
    assert (a - b).abs().max() > 1e-3
    model = _classifier(mixer="attention", norm="layer", mlp_expand=2, dropout=0.3)  # None: follows dropout
    assert [blk.mixer.dropout for blk in model.backbone.blocks] == [0.3, 0.3]
    with pytest.raises(ValueError, match="attn_dropout"):
        ModelConfig(mixer="attention", attn_dropout=1.0).validate()
