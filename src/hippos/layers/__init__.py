"""Sequence layers with a convolutional and a recurrent view: S4 (S4/S4D/LSSL), H3, causal
attention with a KV cache, and blocks."""

from hippos.layers.attention import KVCache, MultiHeadAttention
from hippos.layers.block import ResidualBlock
from hippos.layers.dropout import SequenceDropout
from hippos.layers.h3 import H3, H3State
from hippos.layers.mlp import MLP
from hippos.layers.s4 import S4

__all__ = ["H3", "H3State", "KVCache", "MLP", "MultiHeadAttention", "ResidualBlock", "S4", "SequenceDropout"]
