"""Sequence layers with a convolutional and a recurrent view: S4 (S4/S4D/LSSL), H3, causal
attention with a KV cache; the mixer vocabulary (:func:`make_mixer`) and the residual
:class:`Block` around a mixer."""

from hippos.layers.attention import KVCache, MultiHeadAttention
from hippos.layers.block import Block
from hippos.layers.dropout import SequenceDropout
from hippos.layers.h3 import H3, H3State
from hippos.layers.mixers import MIXERS, make_mixer
from hippos.layers.mlp import MLP
from hippos.layers.s4 import S4

__all__ = ["Block", "H3", "H3State", "KVCache", "MIXERS", "MLP", "MultiHeadAttention", "S4", "SequenceDropout", "make_mixer"]
