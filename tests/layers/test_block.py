"""The residual Block: its formulas written out (pre-norm with and without MLP, post-norm),
step == forward for S4 and attention mixers, and the forward keywords a mixer does not take."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hippos.layers import S4, Block, MultiHeadAttention, make_mixer

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def ln(norm: nn.LayerNorm, x):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def mlp(block, x):
    """W₂ GELU(W₁ x + b₁) + b₂, written out."""
    m = block.mlp
    return F.linear(F.gelu(F.linear(x, m.fc1.weight, m.fc1.bias)), m.fc2.weight, m.fc2.bias)


def randomize_norms(block):
    """LayerNorm weights away from (1, 0), so a swapped or missing norm shows."""
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_()


def test_prenorm_block_with_mlp_is_the_lm_block_formula():
    """x ← x + drop(mixer(LN₁(x))); x ← x + drop(MLP(LN₂(x))): the former LMBlock, attributes
    norm, mixer, mlp_norm, mlp."""
    torch.manual_seed(3)
    block = Block(make_mixer("h3", 8, d_state=4, shift_state=4), 8, mlp_expand=4).double().eval()
    randomize_norms(block)
    assert block.mlp.fc1.out_features == 32
    x = torch.randn(2, 10, 8, dtype=F64)
    h = x + block.mixer(ln(block.norm, x))[0]
    expected = h + mlp(block, ln(block.mlp_norm, h))
    y, state = block(x)
    close(y, expected)
    assert state is None


def test_prenorm_block_without_mlp_is_the_residual_block_formula():
    torch.manual_seed(4)
    block = Block(S4(8, d_state=4, mode="diag"), 8).double().eval()
    randomize_norms(block)
    assert block.mlp is None and block.mlp_norm is None
    x = torch.randn(2, 10, 8, dtype=F64)
    close(block(x)[0], x + block.mixer(ln(block.norm, x))[0])


@pytest.mark.parametrize("mlp_expand", [0, 2])
def test_postnorm_block(mlp_expand):
    """x ← LN₁(x + mixer(x)); x ← LN₂(x + MLP(x)) when there is an MLP."""
    torch.manual_seed(5)
    block = Block(S4(8, d_state=4, mode="diag"), 8, prenorm=False, mlp_expand=mlp_expand).double().eval()
    randomize_norms(block)
    x = torch.randn(2, 10, 8, dtype=F64)
    h = ln(block.norm, x + block.mixer(x)[0])
    if mlp_expand:
        h = ln(block.mlp_norm, h + mlp(block, h))
    close(block(x)[0], h)


def test_dropout_and_mlp_dropout():
    block = Block(S4(8, d_state=4, mode="diag"), 8, dropout=0.2, tie_dropout=True, mlp_expand=2)
    assert (block.dropout.p, block.dropout.tie, block.mlp.dropout.p) == (0.2, True, 0.2)  # mlp_dropout None: dropout
    block = Block(S4(8, d_state=4, mode="diag"), 8, dropout=0.2, mlp_expand=2, mlp_dropout=0.0)
    assert block.mlp.dropout.p == 0.0
    block.train()
    x = torch.randn(2, 10, 8)
    assert (block(x)[0] - block(x)[0]).abs().max() > 0  # residual dropout is on in training
    block.eval()
    close(block(x)[0], block(x)[0], tol=0)


def looped(block, x, rate=1.0):
    state, params, ys = block.default_state(x.shape[0]), block.setup_step(rate=rate), []
    for t in range(x.shape[1]):
        y_t, state = block.step(x[:, t], state, params)
        ys.append(y_t)
    return torch.stack(ys, 1), state


@pytest.mark.parametrize(
    "kind,norm,prenorm,mlp_expand",
    [("s4", "layer", True, 0), ("s4", "batch", False, 0), ("s4d", "layer", True, 4), ("attention", "layer", True, 4), ("attention", "batch", False, 2)],
)
def test_step_equals_forward(kind, norm, prenorm, mlp_expand):
    torch.manual_seed(6)
    options = {"n_heads": 2} if kind == "attention" else {"d_state": 8, "l_max": 16}
    block = Block(make_mixer(kind, 8, **options), 8, norm=norm, prenorm=prenorm, mlp_expand=mlp_expand, dropout=0.3).double()
    randomize_norms(block)
    x = torch.randn(3, 11, 8, dtype=F64)
    block.train()(x)  # BatchNorm running statistics away from (0, 1)
    block.eval()
    y, final = block(x, return_state=True)
    y_step, state = looped(block, x)
    close(y_step, y)
    if kind == "attention":
        close(state.keys, final.keys), close(state.values, final.values)
    else:
        close(state, final)


def test_step_equals_forward_at_another_rate():
    block = Block(make_mixer("s4", 8, d_state=8, l_max=16), 8).double().eval()
    x = torch.randn(2, 9, 8, dtype=F64)
    close(looped(block, x, rate=0.5)[0], block(x, rate=0.5)[0])


class Spy(nn.Module):
    """A mixer on the contract that records the keywords its forward receives (none but its own)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, u, state=None, return_state=False):
        self.seen.append({"return_state": return_state})
        return u, None

    def default_state(self, batch_size):
        return None

    def setup_step(self):
        return None

    def step(self, u_t, state, params=None):
        return u_t, None


class Takes(Spy):
    """A mixer whose forward takes any keyword: it receives all of them."""

    def forward(self, u, state=None, **kwargs):
        self.seen.append(kwargs)
        return u, None


def test_forward_keywords_a_mixer_does_not_take():
    spy = Spy()
    block = Block(spy, 4, norm="none")
    x = torch.randn(2, 5, 4)
    block(x, lengths=torch.tensor([5, 3]), return_state=True)  # lengths: dropped (a causal mixer)
    block(x, rate=1.0)
    assert spy.seen == [{"return_state": True}, {"return_state": False}]
    with pytest.raises(ValueError, match="Spy has no sampling rate"):
        block(x, rate=0.5)
    with pytest.raises(ValueError, match="no sampling rate"):
        block.setup_step(rate=2.0)
    assert block.setup_step(rate=1.0) is None
    with pytest.raises(TypeError):
        block(x, lenghts=torch.tensor([5, 3]))  # a misspelt keyword is not silently dropped
    takes = Takes()
    Block(takes, 4)(x, lengths=torch.tensor([5, 3]), rate=0.5)
    assert set(takes.seen[0]) == {"lengths", "rate", "return_state"} and takes.seen[0]["rate"] == 0.5


def test_attention_and_s4_blocks_in_one_stack_take_the_same_keywords():
    """A classifier-style call (lengths, rate=1) through an attention block and an S4 block; the
    S4 mixer receives lengths (bidirectional: the padding would otherwise leak backwards)."""
    torch.manual_seed(7)
    attn = Block(make_mixer("attention", 8, n_heads=2), 8, mlp_expand=2).double().eval()
    s4 = Block(make_mixer("s4d", 8, d_state=4, bidirectional=True), 8).double().eval()
    x = torch.randn(2, 10, 8, dtype=F64)
    lengths = torch.tensor([10, 6])
    close(attn(x, lengths=lengths)[0], attn(x)[0])
    y, _ = s4(x, lengths=lengths)
    padded = x.clone()
    padded[1, 6:] = torch.randn(4, 8, dtype=F64)
    close(s4(padded, lengths=lengths)[0][1, :6], y[1, :6])
    assert (s4(padded)[0][1, :6] - y[1, :6]).abs().max() > 1e-6  # without lengths the padding is seen
    with pytest.raises(ValueError, match="MultiHeadAttention has no sampling rate"):
        attn(x, rate=2.0)


def test_bad_arguments():
    class NoState(nn.Module):
        def forward(self, u):
            return u

    with pytest.raises(TypeError, match="state= and return_state="):
        Block(NoState(), 4)
    with pytest.raises(TypeError, match="mixer nn.Module"):
        Block(lambda u, state=None: (u, None), 4)
    with pytest.raises(ValueError, match="mlp_expand"):
        Block(Spy(), 4, mlp_expand=-1)
    with pytest.raises(ValueError, match="d_model"):
        Block(Spy(), 0)
    with pytest.raises(ValueError, match="unknown norm"):
        Block(Spy(), 4, norm="rms")
    with pytest.raises(ValueError, match="dropout"):
        Block(Spy(), 4, dropout=1.0)
    with pytest.raises(TypeError):
        Block(Spy(), 4, "layer")  # options are keyword-only
    assert isinstance(Block(MultiHeadAttention(4, 2), 4).mixer, MultiHeadAttention)
