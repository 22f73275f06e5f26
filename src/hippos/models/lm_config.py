"""``LMConfig``: the dataclass of :class:`hippos.models.LanguageModel` (DESIGN.md: models take a config)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LMConfig", "MIXERS"]

#: Sequence mixers a layer can use: H3, S4D (S4 layer, diagonal), S4 (S4 layer, DPLR), attention.
MIXERS = ("h3", "s4d", "s4", "attention")

_SSM_DEFAULTS = {  # (init, disc) when ssm_init / ssm_disc are None
    "h3": ("lin", "bilinear"),  # H3 §3.2: S4D-Lin, bilinear
    "s4d": ("inv", "zoh"),  # H3 Table 2's S4D baseline: Inv init, ZOH
    "s4": ("legs", None),  # S4: HiPPO-LegS, always bilinear
}


@dataclass
class LMConfig:
    """A causal language model: embedding -> ``n_layers`` pre-norm blocks -> norm -> tied head.

    Every layer's sequence mixer is ``mixer``, except the layers listed in ``attn_layers``, which
    use causal attention (the hybrid H3 of H3 §3.3 / §5: e.g. ``mixer="h3", attn_layers=(1,)``).
    ``mixer="attention"`` gives a Transformer. Each block is ``x + drop(mixer(LN(x)))`` then
    ``x + drop(MLP(LN(x)))`` with a GELU MLP of width ``mlp_expand·d_model``.
    """

    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 2
    mixer: str = "h3"  # "h3", "s4d", "s4" or "attention"
    attn_layers: tuple[int, ...] = ()  # layer indices that use attention instead of `mixer`
    # SSM mixers
    d_state: int = 64  # state size N of the diagonal / DPLR SSM (H3: 32 complex modes)
    head_dim: int = 1  # H3 head size h (d_model/h heads)
    shift_state: int = 64  # H3 shift-SSM taps
    ssm_init: str | None = None  # None: h3 "lin", s4d "inv", s4 "legs"
    ssm_disc: str | None = None  # None: h3 "bilinear", s4d "zoh" (s4 is always bilinear)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm_lr: float | None = None  # SSM parameters' learning rate; None: min(lr, 1e-3), a number: used as given
    s4_output: str = "glu"  # S4 layers' output map: "glu" or "linear"
    l_max: int = 1024  # S4 (DPLR) kernel length set up at init (longer ones cost more each call; kernel.grow)
    # attention layers
    n_heads: int = 1
    max_len: int | None = None  # longest prompt + generation; required with attn_pos="learned"
    attn_pos: str = "none"  # "none" or "learned": absolute position embeddings added at the input (GPT-2)
    attn_dropout: float = 0.0
    # the rest of the model
    mlp_expand: int = 4
    embed_dropout: float = 0.0  # dropout on the token embeddings (0.1 in the H3 synthetics)
    dropout: float = 0.0  # residual dropout after each mixer and MLP
    tie_embeddings: bool = True

    def layer_mixers(self) -> list[str]:
        """The mixer of every layer, in order."""
        attn = set(self.attn_layers)
        return ["attention" if i in attn else self.mixer for i in range(self.n_layers)]

    def ssm_options(self) -> tuple[str | None, str | None]:
        """``(init, disc)`` of the SSM mixer, defaults filled in (``(None, None)`` for attention)."""
        init, disc = _SSM_DEFAULTS.get(self.mixer, (None, None))
        return (self.ssm_init or init, self.ssm_disc or disc)

    def validate(self) -> LMConfig:
        """Raise ``ValueError`` naming the first field that does not fit; return self."""
        for name in ("vocab_size", "d_model", "n_layers", "d_state", "head_dim", "shift_state", "n_heads", "mlp_expand", "l_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LMConfig.{name} must be an integer >= 1, got {value!r}")
        if self.mixer not in MIXERS:
            raise ValueError(f"LMConfig.mixer must be one of {', '.join(MIXERS)}, got {self.mixer!r}")
        bad = [i for i in self.attn_layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_layers]
        if bad or len(set(self.attn_layers)) != len(tuple(self.attn_layers)):
            raise ValueError(f"LMConfig.attn_layers must be distinct layer indices in [0, {self.n_layers}), got {self.attn_layers!r}")
        mixers = set(self.layer_mixers())
        if mixers & {"h3", "s4d", "s4"} and self.d_state % 2:
            raise ValueError(f"LMConfig.d_state must be even for the {self.mixer} mixer (N/2 conjugate modes are kept), got {self.d_state}")
        if "h3" in mixers and self.d_model % self.head_dim:
            raise ValueError(f"LMConfig.head_dim={self.head_dim} must divide d_model={self.d_model}")
        if "attention" in mixers:
            if self.d_model % self.n_heads:
                raise ValueError(f"LMConfig.n_heads={self.n_heads} must divide d_model={self.d_model}")
            if self.attn_pos not in ("none", "learned"):
                raise ValueError(f"LMConfig.attn_pos must be 'none' or 'learned', got {self.attn_pos!r}")
            if self.attn_pos == "learned" and self.max_len is None:
                raise ValueError("LMConfig.attn_pos='learned' needs max_len (the size of the position table)")
        if self.max_len is not None and (isinstance(self.max_len, bool) or not isinstance(self.max_len, int) or self.max_len < 1):
            raise ValueError(f"LMConfig.max_len must be None or an integer >= 1, got {self.max_len!r}")
        for name in ("embed_dropout", "dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"LMConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"LMConfig needs 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")
        if self.s4_output not in ("glu", "linear"):
            raise ValueError(f"LMConfig.s4_output must be 'glu' or 'linear', got {self.s4_output!r}")
        return self
