"""Backbone and classifier: the stack keeps step == forward; a model overfits one batch."""

from __future__ import annotations

import pytest
import torch

from hippos.models import ModelConfig, SequenceClassifier, SSMBackbone


@pytest.mark.parametrize("mode,norm,prenorm", [("diag", "layer", True), ("dplr", "batch", False)])
def test_backbone_step_equals_forward(mode, norm, prenorm):
    cfg = ModelConfig(d_input=2, d_model=4, n_layers=2, d_state=8, mode=mode, norm=norm, prenorm=prenorm)
    model = SSMBackbone(cfg).double().eval()
    x = torch.randn(3, 11, 2, dtype=torch.float64)
    h, _ = model(x)
    state, params = model.default_state(3), model.setup_step()
    outs = []
    for k in range(11):
        h_t, state = model.step(x[:, k], state, params)
        outs.append(h_t)
    torch.testing.assert_close(torch.stack(outs, 1), h, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_classifier_overfits_one_batch(pool):
    torch.manual_seed(0)
    cfg = ModelConfig(d_input=1, n_classes=4, d_model=16, n_layers=2, d_state=8, mode="diag", pool=pool)
    model = SequenceClassifier(cfg)
    x = torch.randn(8, 32, 1)
    y = torch.arange(8) % 4
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x)[0], y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert (model(x)[0].argmax(-1) == y).all()


def test_classifier_masked_pooling_ignores_padding():
    cfg = ModelConfig(d_input=1, n_classes=3, d_model=8, n_layers=1, d_state=8, mode="diag")
    model = SequenceClassifier(cfg).eval()
    x = torch.randn(1, 10, 1)
    padded = torch.cat([x, torch.randn(1, 5, 1)], 1)
    torch.testing.assert_close(model(padded, lengths=torch.tensor([10]))[0], model(x)[0])


def test_ssm_parameters_carry_optimizer_hints():
    model = SequenceClassifier(ModelConfig(d_model=8, n_layers=1, d_state=8, mode="dplr", ssm_lr=0.01))
    hinted = [n for n, p in model.named_parameters() if hasattr(p, "_optim")]
    assert hinted and all(p._optim == {"lr": 0.01, "weight_decay": 0.0} for p in model.parameters() if hasattr(p, "_optim"))
    assert not any("head" in n or "encoder" in n for n in hinted)


def test_classifier_returns_logits_and_no_state():
    model = SequenceClassifier(ModelConfig(d_input=2, n_classes=3, d_model=8, n_layers=1, d_state=4)).eval()
    out = model(torch.randn(2, 6, 2), lengths=torch.tensor([6, 4]))
    assert isinstance(out, tuple) and len(out) == 2
    logits, state = out
    assert logits.shape == (2, 3) and state is None


def test_nan_input_is_refused():
    model = SequenceClassifier(ModelConfig(d_model=8, n_layers=1, d_state=8))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 5, 1), float("nan")))
