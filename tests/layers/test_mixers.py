"""The mixer vocabulary: one name per mixer, its options checked against the layer's."""

from __future__ import annotations

import pytest
import torch

from hippos.layers import H3, MIXERS, S4, MultiHeadAttention, make_mixer
from hippos.layers.mixers import MIXER_OF_MODE

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def test_every_kind_builds_its_layer():
    assert MIXERS == ("s4", "s4d", "lssl", "h3", "attention")
    modes = {kind: make_mixer(kind, 8, d_state=4).mode for kind in ("s4", "s4d", "lssl")}
    assert modes == {"s4": "dplr", "s4d": "diag", "lssl": "dense"}
    assert MIXER_OF_MODE == {"dplr": "s4", "diag": "s4d", "dense": "lssl"}
    assert isinstance(make_mixer("h3", 8, head_dim=2, shift_state=4), H3)
    attn = make_mixer("attention", 8, n_heads=2, impl="materialized")
    assert isinstance(attn, MultiHeadAttention) and attn.impl == "materialized"
    for kind in MIXERS:
        mixer = make_mixer(kind, 8, **({"n_heads": 2} if kind == "attention" else {"d_state": 4}))
        y, _ = mixer(torch.randn(2, 5, 8))
        assert y.shape == (2, 5, 8)


def test_options_follow_the_same_seed():
    torch.manual_seed(0)
    a = make_mixer("s4d", 8, d_state=4, init="inv", output="linear")
    torch.manual_seed(0)
    b = S4(8, d_state=4, mode="diag", init="inv", output="linear")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_bad_kinds_and_options():
    with pytest.raises(ValueError, match="unknown mixer 'mamba'.*s4, s4d, lssl, h3, attention"):
        make_mixer("mamba", 8)
    with pytest.raises(TypeError, match="mixer 's4d' takes no option 'head_dim'.*d_state"):
        make_mixer("s4d", 8, head_dim=2)
    with pytest.raises(TypeError, match="takes no option 'mode'"):
        make_mixer("s4", 8, mode="diag")  # the kind fixes the mode
    with pytest.raises(TypeError, match="needs the option n_heads"):
        make_mixer("attention", 8)
    with pytest.raises(ValueError, match="impl"):
        make_mixer("attention", 8, n_heads=2, impl="flash")
