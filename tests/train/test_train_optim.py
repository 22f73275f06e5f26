"""Parameter groups honour the SSM hints; the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hippos.kernels.base import ssm_parameter
from hippos.train.optim import (
    SSM_LR_DEFAULT,
    build_optimizer,
    lr_factor,
    param_groups,
    set_lr,
)


class _Tiny(nn.Module):
    """Two SSM parameters with the hint lr ``ssm_lr`` (None: unset), one frozen, the usual rest."""

    def __init__(self, ssm_lr=None):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.A = ssm_parameter(torch.randn(4, 2), ssm_lr)
        self.dt = nn.Parameter(torch.randn(4))
        self.dt._optim = {} if ssm_lr is None else {"lr": ssm_lr}  # no "lr" key: unset too
        self.frozen = nn.Parameter(torch.randn(3, 3), requires_grad=False)


def _group_of(groups, p):
    found = [g for g in groups if any(q is p for q in g["params"])]
    assert len(found) == 1
    return found[0]


def test_groups_honour_hints_and_skip_decay():
    m = _Tiny()
    groups = param_groups(m, lr=1e-2, weight_decay=0.1)
    assert _group_of(groups, m.A)["lr"] == 1e-3 and _group_of(groups, m.A)["weight_decay"] == 0.0
    assert _group_of(groups, m.dt)["lr"] == 1e-3 and _group_of(groups, m.dt)["weight_decay"] == 0.0
    assert _group_of(groups, m.proj.weight)["weight_decay"] == 0.1 and _group_of(groups, m.proj.weight)["lr"] == 1e-2
    for p in (m.proj.bias, m.norm.weight, m.norm.bias):
        assert _group_of(groups, p)["weight_decay"] == 0.0 and _group_of(groups, p)["lr"] == 1e-2
    assert all(m.frozen is not q for g in groups for q in g["params"])
    n = sum(len(g["params"]) for g in groups)
    assert n == sum(1 for p in m.parameters() if p.requires_grad)
    assert _group_of(groups, m.A)["name"] == "ssm"


@pytest.mark.parametrize("base_lr, want", [(4e-3, 1e-3), (5e-4, 5e-4), (1e-2, 1e-3)])
def test_unset_ssm_lr_is_min_of_base_and_default(base_lr, want):
    assert SSM_LR_DEFAULT == 1e-3
    m = _Tiny()
    assert m.A._optim == {"lr": None, "weight_decay": 0.0}
    groups = param_groups(m, lr=base_lr, weight_decay=0.1)
    for p in (m.A, m.dt):
        assert _group_of(groups, p)["lr"] == want and _group_of(groups, p)["weight_decay"] == 0.0
    assert _group_of(groups, m.proj.weight)["lr"] == base_lr


@pytest.mark.parametrize("ssm_lr, base_lr", [(4e-3, 1e-3), (1e-4, 1e-3), (4e-3, 1e-4), (1e-2, 1e-2)])
def test_explicit_ssm_lr_is_used_exactly(ssm_lr, base_lr):
    """A number set by the user is neither capped at 1e-3 nor at the base rate."""
    m = _Tiny(ssm_lr)
    assert m.A._optim == {"lr": ssm_lr, "weight_decay": 0.0}
    groups = param_groups(m, lr=base_lr, weight_decay=0.1)
    for p in (m.A, m.dt):
        g = _group_of(groups, p)
        assert g["lr"] == ssm_lr and g["initial_lr"] == ssm_lr and g["weight_decay"] == 0.0
    assert _group_of(groups, m.proj.weight)["lr"] == base_lr and _group_of(groups, m.proj.weight)["weight_decay"] == 0.1


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan"), float("inf"), "1e-3", True])
def test_bad_hint_lr_is_refused(bad):
    m = _Tiny()
    m.dt._optim = {"lr": bad}
    with pytest.raises(ValueError, match="'dt'"):
        param_groups(m, lr=1e-3, weight_decay=0.1)
    with pytest.raises(ValueError, match="lr"):
        ssm_parameter(torch.zeros(2), bad)


def test_groups_of_the_real_model():
    from hippos.models import ModelConfig, SequenceClassifier

    model = SequenceClassifier(ModelConfig(d_model=8, n_layers=2, d_state=8, mode="diag"))
    hinted = [p for p in model.parameters() if hasattr(p, "_optim")]
    assert hinted, "the SSM parameters should carry _optim hints"
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.05)
    for p in hinted:
        g = _group_of(opt.param_groups, p)
        assert g["lr"] == 1e-3 and g["weight_decay"] == 0.0  # ssm_lr unset: min(1e-2, 1e-3)
    set_lr(opt, 0.5)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(0.5 * g["initial_lr"])


@pytest.mark.parametrize("mode", ["diag", "dplr"])
def test_model_ssm_lr_above_1e3_is_not_capped(mode):
    from hippos.models import ModelConfig, SequenceClassifier

    model = SequenceClassifier(ModelConfig(d_model=8, n_layers=1, d_state=8, mode=mode, ssm_lr=4e-3))
    hinted = [p for p in model.parameters() if hasattr(p, "_optim")]
    groups = build_optimizer(model, lr=1e-3, weight_decay=0.05).param_groups
    assert hinted and all(_group_of(groups, p)["lr"] == 4e-3 and _group_of(groups, p)["weight_decay"] == 0.0 for p in hinted)


@pytest.mark.parametrize("ssm_lr, want", [(None, 5e-4), (4e-3, 4e-3), (1e-4, 1e-4)])
def test_language_model_ssm_lr(ssm_lr, want):
    from hippos.models import LanguageModel, LMConfig

    model = LanguageModel(LMConfig(vocab_size=8, d_model=8, n_layers=1, mixer="h3", d_state=4, shift_state=4, ssm_lr=ssm_lr))
    hinted = [p for p in model.parameters() if hasattr(p, "_optim")]
    groups = param_groups(model, lr=5e-4, weight_decay=0.1)
    assert hinted and all(_group_of(groups, p)["lr"] == want and _group_of(groups, p)["weight_decay"] == 0.0 for p in hinted)


def test_schedule_values():
    total, warm = 110, 10
    assert lr_factor(0, total, warm) == pytest.approx(1 / 11)
    assert lr_factor(9, total, warm) == pytest.approx(10 / 11)
    assert lr_factor(10, total, warm) == 1.0
    assert lr_factor(60, total, warm) == pytest.approx(0.5)
    assert lr_factor(110, total, warm) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(500, total, warm) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(110, total, warm, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(35, total, warm, min_ratio=0.2) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))
    values = [lr_factor(s, total, warm) for s in range(warm, total)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_factor(0, 5, 0) == 1.0 and lr_factor(3, 2, 5) == pytest.approx(4 / 6)
