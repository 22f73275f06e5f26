"""The decode loop of :class:`~hippos.models.LanguageModel`: one token through every block, lean.

Paper: H3 (arXiv 2212.14052) §5.3 / Table 7: after the prompt, every new token is one recurrent
step of each layer. ``LanguageModel.step`` is the reference (pure, checked, states as values);
:class:`LMDecoder` computes the same logits with the per-token work cut to the arithmetic:

* each mixer runs as a *stepper* (:mod:`hippos.layers.stepper`) that owns its state and updates it
  in place: the KV caches append into their stores, the H3 layers keep their shift SSM as a filter
  over a window of inputs and their diagonal SSM state in place;
* the blocks (pre-norm LayerNorm, GELU MLP) are written out with ``torch.nn.functional`` on the
  modules' parameters (no module calls, no dropout: eval mode whatever the training flags), the
  head is applied to one position, and the tokens are not checked (the sampler made them);
* the absolute position (``attn_pos="learned"``) is a counter.

The parameters are read at every step (never copied), so the decoder sees the weights as they
are; the discretized step parameters come from ``setup_step`` once, as for the reference.
``docs/h3.md`` §7 has the measurements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hippos.layers.stepper import fast_steppers_apply, stepper

__all__ = ["LMDecoder", "decoder_applies"]


def _standard_block(block) -> bool:
    """The block :func:`hippos.models.lm.lm_block` builds: pre-norm LayerNorm, GELU MLP (or none)."""
    if not (block.prenorm and isinstance(block.norm, nn.LayerNorm)):
        return False
    return block.mlp is None or (isinstance(block.mlp_norm, nn.LayerNorm) and isinstance(block.mlp.act, nn.GELU))


def decoder_applies(model) -> bool:
    """Whether :class:`LMDecoder` runs ``model`` (standard blocks); its fast steppers also need one
    parameter dtype and no autocast (:func:`~hippos.layers.stepper.fast_steppers_apply`), else the
    layers' reference steps are used."""
    return all(_standard_block(b) for b in model.blocks)


def _norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class LMDecoder:
    """``step(token_t: long(B)) -> logits: r(B V)``; :attr:`state` the model's state (a value).

    Built by :meth:`LanguageModel.decoder` from a state (after a prefill, or ``default_state``).
    ``fast=False`` runs every mixer through its reference ``step`` (same loop otherwise).
    """

    def __init__(self, model, state: list, params: list, fast: bool = True):
        if not decoder_applies(model):
            raise ValueError("LMDecoder runs the pre-norm LayerNorm blocks of lm_block only; use LanguageModel.step")
        self.model = model
        device = model.embedding.weight.device
        fast = fast and fast_steppers_apply(model, device)
        self.steppers = [stepper(b.mixer, s, p, fast=fast) for b, s, p in zip(model.blocks, state, params)]
        self.position = 0  # T: tokens seen, for the position table
        if model.pos_emb is not None:
            self.position = state[model._first_attn].keys.shape[-2]

    @property
    def state(self) -> list:
        return [s.state for s in self.steppers]

    def step(self, token_t: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # no graph, ever (the stream runs under inference mode)
            with torch.no_grad():
                return self.step(token_t)
        model = self.model
        h = F.embedding(token_t, model.embedding.weight)  # (B d)
        if model.pos_emb is not None:
            if self.position >= model.cfg.max_len:
                raise ValueError(f"sequence of {self.position + 1} tokens exceeds max_len={model.cfg.max_len}")
            h = h + model.pos_emb.weight[self.position]
        self.position += 1
        for block, s in zip(model.blocks, self.steppers):
            h = h + s.step(_norm(h, block.norm))
            if block.mlp is not None:
                h = h + self._mlp(block, h)
        return model._logits(h)

    def _mlp(self, block, h: torch.Tensor) -> torch.Tensor:
        """``fc2(GELU(fc1(LN(h))))``: the block's MLP branch, ``r(B d)``, no dropout."""
        mlp = block.mlp
        z = F.gelu(F.linear(_norm(h, block.mlp_norm), mlp.fc1.weight, mlp.fc1.bias), approximate=mlp.act.approximate)
        return F.linear(z, mlp.fc2.weight, mlp.fc2.bias)
