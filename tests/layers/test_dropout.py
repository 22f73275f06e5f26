"""SequenceDropout: element-wise vs tied along the sequence, scaling, eval identity, wiring."""

import pytest
import torch

from hippos.layers import S4, Block, SequenceDropout
from hippos.models import ModelConfig, SequenceClassifier


@pytest.mark.parametrize("tie", [False, True])
def test_mask_values_rate_and_gradient(tie):
    torch.manual_seed(0)
    p = 0.25
    drop = SequenceDropout(p, tie=tie).train()
    x = torch.ones(64, 50, 400, requires_grad=True)  # (B L H)
    y = drop(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))  # kept entries scaled by 1/(1-p)
    assert abs((~kept).float().mean().item() - p) < 0.01  # 1.28M (or 25.6K tied) Bernoulli draws
    along_l_constant = (kept == kept[:, :1]).all().item()
    assert along_l_constant == tie  # tied: one mask per (b, h) for every position l
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, y.detach())  # d(mask ⊙ x / (1-p))/dx = mask / (1-p) = y at x = 1


@pytest.mark.parametrize("tie", [False, True])
def test_eval_mode_and_zero_rate_are_identity(tie):
    x = torch.randn(2, 7, 3)
    assert SequenceDropout(0.5, tie=tie).eval()(x) is x
    assert SequenceDropout(0.0, tie=tie).train()(x) is x


def test_bad_rate_and_tied_step_errors():
    with pytest.raises(ValueError, match="dropout must be in"):
        SequenceDropout(1.0)
    with pytest.raises(ValueError, match="dropout must be in"):
        S4(4, d_state=4, dropout=-0.1)
    with pytest.raises(ValueError, match="whole sequences"):
        SequenceDropout(0.1, tie=True).train()(torch.randn(2, 3))


def test_tied_dropout_reaches_every_layer_of_a_model():
    model = SequenceClassifier(ModelConfig(d_model=8, n_layers=2, d_state=4, dropout=0.1, tie_dropout=True, l_max=16))
    drops = [m for m in model.modules() if isinstance(m, SequenceDropout)]
    assert len(drops) == 4 and all(d.tie and d.p == 0.1 for d in drops)  # S4 + residual, per block
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())


def test_tied_dropout_in_a_block_zeroes_whole_channels_of_the_residual_branch():
    torch.manual_seed(1)
    layer = S4(16, d_state=4, mode="diag", dropout=0.0, l_max=32)
    block = Block(layer, 16, dropout=0.5, tie_dropout=True).train()
    x = torch.randn(3, 32, 16)
    y, _ = block(x)
    unchanged = (y == x).all(dim=1)  # (B H): the branch was dropped for the whole sequence
    assert unchanged.any() and not unchanged.all()
