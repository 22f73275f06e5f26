"""A causal language model over H3, S4D, S4 or attention layers, with generation by recurrence.

Paper: H3 (arXiv 2212.14052) §3.3 and §5 (the H3 and hybrid H3 language models: no position
embeddings, pre-norm blocks, MLP 4d GELU, tied embeddings, attention at a few layer indices) and
§5.3 / Table 7 (generation: the prompt through the convolutional view, then one recurrent step
per token, with a cache that does not grow for the SSM layers). Shapes and cache: ``docs/h3.md``.

    x = dropout(E[tokens] + P[positions])                   # (B L d); P only with attn_pos="learned"
    for each layer:  x = x + drop(mixer(LN(x)));  x = x + drop(MLP(LN(x)))
    logits = LN(x) Eᵀ                                       # (B L V), tied head

**Positions.** ``attn_pos="learned"`` (in a model with an attention layer) adds one table ``P`` of
absolute position embeddings to the token embeddings at the input, into the residual stream, as
GPT-2 and the H3 paper's Transformer baseline do (safari's ``lm_simple`` with
``max_position_embeddings``); the attention layers themselves then take no positions. The absolute
position of a token is the length of the first attention layer's cache, so chunked calls and
``step`` continue the positions where the state left off. (Adding a table to each attention
layer's input instead, outside the residual stream, never formed an induction head in 400 epochs:
``docs/synthetics.md``.)

``forward(tokens, state=None, return_state=False) -> (logits, next_state)`` keeps the layer
contract (a state is the list of the layers' states: :class:`~hippos.layers.H3State`, S4 tensors,
:class:`~hippos.layers.KVCache`), so a prompt can be fed in chunks. ``step(token_t, state, params)``
is the recurrent view (the reference); :meth:`LanguageModel.decoder` the same logits for a decode
loop (in-place steppers, :mod:`hippos.models.lm_decode`). :meth:`LanguageModel.generate_stream`
yields tokens one at a time; :meth:`LanguageModel.generate` collects them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hippos.layers.block import Block
from hippos.layers.mixers import make_mixer
from hippos.models.lm_config import MIXERS, LMConfig
from hippos.models.lm_decode import LMDecoder, decoder_applies
from hippos.ops.chunked import check_chunk_size, resolve_chunk, run_chunked

__all__ = ["DECODES", "LanguageModel", "lm_block", "mixer_options", "sample_logits"]


def mixer_options(cfg: LMConfig, kind: str) -> dict:
    """The options of mixer ``kind`` (``"h3"``, ``"s4d"``, ``"s4"``, ``"attention"``) that ``cfg``
    sets, for :func:`hippos.layers.make_mixer`."""
    if kind == "attention":
        # positions, if any, are the LM's (added at its input), not the layer's
        return {"n_heads": cfg.n_heads, "max_len": cfg.max_len, "pos": "none", "dropout": cfg.attn_dropout}
    init, disc = cfg.ssm_options()
    ssm = {"d_state": cfg.d_state, "init": init, "dt_min": cfg.dt_min, "dt_max": cfg.dt_max, "lr": cfg.ssm_lr}
    if kind == "h3":
        return {**ssm, "disc": disc, "head_dim": cfg.head_dim, "shift_state": cfg.shift_state}
    if kind == "s4d":
        return {**ssm, "disc": disc, "dropout": cfg.dropout, "output": cfg.s4_output}
    if kind == "s4":
        return {**ssm, "dropout": cfg.dropout, "output": cfg.s4_output, "l_max": cfg.l_max}
    raise ValueError(f"unknown language-model mixer {kind!r}; expected one of {', '.join(MIXERS)}")


def lm_block(cfg: LMConfig, kind: str) -> Block:
    """One pre-norm block of the LM: ``x + drop(mixer(LN(x)))`` then ``x + drop(MLP(LN(x)))``."""
    mixer = make_mixer(kind, cfg.d_model, **mixer_options(cfg, kind))
    return Block(mixer, cfg.d_model, norm="layer", prenorm=True, dropout=cfg.dropout, mlp_expand=cfg.mlp_expand)


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logits: r(B V)`` -> ``long(B)``.

    Greedy (argmax) when ``temperature == 0`` or ``top_k == 1``. Otherwise softmax of
    ``logits/temperature`` restricted to the ``top_k`` largest and then to the smallest set whose
    probability reaches ``top_p`` (nucleus sampling; the most likely token is always kept).
    """
    if temperature == 0 or top_k == 1:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already reaches top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


#: ``decode=`` of :meth:`LanguageModel.generate_stream`: :class:`~hippos.models.lm_decode.LMDecoder`
#: with the layers' fast steppers, or the reference :meth:`LanguageModel.step`.
DECODES = ("fast", "reference")


@contextlib.contextmanager
def _inference(module: nn.Module, inference_mode: bool = False):
    """No gradients (``torch.inference_mode`` if asked) and no dropout for the duration of one
    call; the training flag is restored."""
    was_training = [m for m in module.modules() if m.training]
    for m in was_training:  # only the modules in training mode are switched (a no-op in eval)
        m.training = False
    try:
        with torch.inference_mode() if inference_mode else torch.no_grad():
            yield
    finally:
        for m in was_training:
            m.training = True


class LanguageModel(nn.Module):
    """Causal LM: ``forward(tokens: long(B L)) -> (logits: r(B L V), next_state)``. See the module docstring."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        if not isinstance(cfg, LMConfig):
            raise TypeError(f"LanguageModel takes an LMConfig, got {type(cfg).__name__}")
        self.cfg = cfg = dataclasses.replace(cfg).validate()  # a private copy
        d = cfg.d_model
        self.embedding = nn.Embedding(cfg.vocab_size, d)
        nn.init.normal_(self.embedding.weight, std=0.02)
        mixers = cfg.layer_mixers()
        self._first_attn = mixers.index("attention") if "attention" in mixers else None
        self.pos_emb = None  # P: r(max_len d), absolute positions added at the input
        if cfg.attn_pos == "learned" and self._first_attn is not None:
            self.pos_emb = nn.Embedding(cfg.max_len, d)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.embed_dropout = nn.Dropout(cfg.embed_dropout)
        self.blocks = nn.ModuleList(lm_block(cfg, kind) for kind in mixers)
        self.final_norm = nn.LayerNorm(d)
        self.head = None if cfg.tie_embeddings else nn.Linear(d, cfg.vocab_size, bias=False)

    # ------------------------------------------------------------------ helpers
    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        h = self.final_norm(h)
        return F.linear(h, self.embedding.weight) if self.head is None else self.head(h)

    def _check_tokens(self, tokens: torch.Tensor, dims: int, what: str) -> None:
        shape = "(B, L)" if dims == 2 else "(B,)"
        if not torch.is_tensor(tokens) or tokens.dim() != dims or tokens.numel() == 0:
            raise ValueError(f"{what} expects a non-empty {shape} tensor of token ids, got {getattr(tokens, 'shape', type(tokens))}")
        if tokens.dtype not in (torch.long, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"{what} expects integer token ids, got {tokens.dtype}")
        if tokens.min() < 0 or tokens.max() >= self.cfg.vocab_size:
            raise ValueError(f"{what}: token ids must be in [0, {self.cfg.vocab_size}), got range [{int(tokens.min())}, {int(tokens.max())}]")

    def _embed(self, tokens: torch.Tensor, states: list) -> torch.Tensor:
        """``tokens: long(B L)`` -> ``E[tokens] + P[T : T + L]``: r(B L d), T the tokens already in
        ``states`` (the first attention layer's cache length; 0 for a fresh sequence)."""
        h = self.embedding(tokens.long())
        if self.pos_emb is None:
            return h
        s = states[self._first_attn]
        ok = isinstance(s, tuple) and len(s) >= 2 and torch.is_tensor(s[0]) and s[0].dim() == 4
        T = s[0].shape[-2] if ok else 0  # KVCache.keys: (B nh T dh); a malformed state: the layer says so
        L = tokens.shape[1]
        if T + L > self.cfg.max_len:
            raise ValueError(f"sequence of {T + L} tokens (state {T} + input {L}) exceeds max_len={self.cfg.max_len}")
        return h + self.pos_emb.weight[T : T + L].to(h.dtype)

    def _check_state(self, state) -> list:
        if not isinstance(state, (list, tuple)) or len(state) != len(self.blocks):
            raise ValueError(f"state must be a list of {len(self.blocks)} layer states (from default_state or forward), got {type(state).__name__}")
        return list(state)

    # ------------------------------------------------------------------ convolutional view
    def forward(self, tokens: torch.Tensor, state: list | None = None, return_state: bool = False,
                chunk_size: int | str | None = None):
        """``tokens: long(B L)`` -> ``(logits: r(B L V), next_state: list | None)``.

        ``state`` is the state before ``tokens[:, 0]`` (:meth:`default_state` or a previous call):
        chunked calls that carry it equal one call on the whole sequence. ``next_state`` is
        returned when a state is passed or ``return_state`` is set, else None. ``chunk_size``:
        run the whole stack over chunks of that many tokens, every layer's state (SSM states, KV
        caches) carried (:mod:`hippos.ops.chunked`): the same logits and gradients, with the
        activations of one chunk alive at a time under ``no_grad`` (the logits aside).
        """
        self._check_tokens(tokens, 2, "LanguageModel.forward")
        T = resolve_chunk(check_chunk_size(chunk_size), tokens.shape[1])
        if T is not None:
            logits, s = run_chunked(self._logits_and_state, tokens, T, state)
            return logits, (s if state is not None or return_state else None)
        h, next_states = self._hidden(tokens, state, return_state)
        return self._logits(h), next_states

    def _logits_and_state(self, tokens: torch.Tensor, state: list | None, last: bool = False):
        h, next_states = self._hidden(tokens, state, True)
        return self._logits(h), next_states

    def _hidden(self, tokens: torch.Tensor, state: list | None, return_state: bool):
        """The blocks' output before the final norm and head: ``(h: r(B L d), next_state)``."""
        states = [None] * len(self.blocks) if state is None else self._check_state(state)
        h = self.embed_dropout(self._embed(tokens, states))
        next_states = []
        for block, s in zip(self.blocks, states):
            h, ns = block(h, state=s, return_state=return_state)
            next_states.append(ns)
        keep = state is not None or return_state
        return h, (next_states if keep else None)

    # ------------------------------------------------------------------ recurrent view
    def default_state(self, batch_size: int) -> list:
        """The state before any token: per layer, an SSM zero state or an empty KV cache."""
        return [b.default_state(batch_size) for b in self.blocks]

    def setup_step(self) -> list:
        """Per-layer step parameters (pure functions of the weights); cache them while stepping."""
        return [b.setup_step() for b in self.blocks]

    def decoder(self, state: list | None = None, params: list | None = None, batch_size: int | None = None, fast: bool = True) -> LMDecoder:
        """The decode loop's stepper (:class:`~hippos.models.lm_decode.LMDecoder`) from ``state``
        (``default_state(batch_size)`` when None): ``decoder.step(token_t) -> logits`` equals
        :meth:`step` in eval mode, its state held and updated in place; ``decoder.state`` is the
        state as a value. ``fast=False``: every mixer through its reference ``step``."""
        if state is None:
            state = self.default_state(batch_size if batch_size is not None else 1)
        state = self._check_state(state)
        return LMDecoder(self, state, self.setup_step() if params is None else params, fast=fast)

    def step(self, token_t: torch.Tensor, state: list, params: list | None = None):
        """One token per sequence: ``token_t: long(B)`` -> ``(logits: r(B V), next_state)``. The
        reference recurrent view (pure, checked); generation runs :meth:`decoder`."""
        self._check_tokens(token_t, 1, "LanguageModel.step")
        state = self._check_state(state)
        params = self.setup_step() if params is None else params
        h = self._embed(token_t[:, None], state)[:, 0]
        next_states = []
        for block, s, p in zip(self.blocks, state, params):
            h, ns = block.step(h, s, p)
            next_states.append(ns)
        return self._logits(h), next_states

    # ------------------------------------------------------------------ generation
    def prefill(self, prompt: torch.Tensor, chunk: int | None = None, state: list | None = None):
        """The prompt through the convolutional view, in one pass or in chunks of ``chunk`` tokens
        (the same state either way): ``prompt: long(B L0)`` -> ``(logits of the last position:
        r(B V), state after the prompt)``."""
        self._check_tokens(prompt, 2, "LanguageModel.prefill")
        L0 = prompt.shape[1]
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"prefill_chunk must be None or an integer >= 1, got {chunk!r}")
        chunk = L0 if chunk is None else chunk
        for a in range(0, L0, chunk):  # the head only at the very last position: (B d) -> (B V)
            h, state = self._hidden(prompt[:, a : a + chunk], state, return_state=True)
        return self._logits(h[:, -1]), state

    def generate_stream(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        prefill_chunk: int | None = None,
        decode: str = "fast",
    ) -> Iterator[torch.Tensor]:
        """Yield ``max_new_tokens`` tokens ``long(B)``, one at a time.

        The prompt goes through :meth:`prefill` (convolutional view), which hands the exact
        end-of-prompt state to :meth:`step`; every further token costs one recurrent step, whose
        SSM state has a fixed size (attention layers' caches grow by one key and value).
        Sampling: :func:`sample_logits` (``temperature=0`` or ``top_k=1``: greedy); ``seed``
        fixes a private generator (the global RNG is untouched). Dropout is off and no graph
        is built; the modules' training flags are restored between tokens.

        ``decode="fast"`` (the default) steps with :meth:`decoder` under ``torch.inference_mode``
        (the layers' in-place steppers); ``"reference"`` with :meth:`step`. Both give the same
        tokens (to rounding of the logits). The tokens yielded are ordinary tensors.
        """
        self._check_generate_args(prompt, max_new_tokens, temperature, top_k, top_p, prefill_chunk)
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {', '.join(DECODES)}, got {decode!r}")
        generator = None if seed is None else torch.Generator(device=prompt.device).manual_seed(seed)
        if decode == "fast" and decoder_applies(self):
            return self._fast_stream(prompt, max_new_tokens, temperature, top_k, top_p, generator, prefill_chunk)
        return self._stream(prompt, max_new_tokens, temperature, top_k, top_p, generator, prefill_chunk)

    def _stream(self, prompt, max_new_tokens, temperature, top_k, top_p, generator, prefill_chunk) -> Iterator[torch.Tensor]:
        if max_new_tokens == 0:
            return
        with _inference(self):
            logits, state = self.prefill(prompt, chunk=prefill_chunk)
            params = self.setup_step()
            token = sample_logits(logits, temperature, top_k, top_p, generator)
        for i in range(max_new_tokens):
            yield token
            if i + 1 < max_new_tokens:
                with _inference(self):
                    logits, state = self.step(token, state, params)
                    token = sample_logits(logits, temperature, top_k, top_p, generator)

    def _fast_stream(self, prompt, max_new_tokens, temperature, top_k, top_p, generator, prefill_chunk) -> Iterator[torch.Tensor]:
        """:meth:`_stream` with :meth:`decoder`: no flags switched per token (the decoder has no
        dropout), inference mode (the state never leaves the loop)."""
        if max_new_tokens == 0:
            return
        with _inference(self, inference_mode=True):
            logits, state = self.prefill(prompt, chunk=prefill_chunk)
            decoder = self.decoder(state)
            token = sample_logits(logits, temperature, top_k, top_p, generator)
        for i in range(max_new_tokens):
            yield token.clone()  # an ordinary tensor, not an inference tensor
            if i + 1 < max_new_tokens:
                with torch.inference_mode():
                    token = sample_logits(decoder.step(token), temperature, top_k, top_p, generator)

    def generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        prefill_chunk: int | None = None,
        decode: str = "fast",
    ) -> torch.Tensor:
        """``prompt: long(B L0)`` -> ``long(B L0 + max_new_tokens)``: the prompt followed by the
        generated tokens (see :meth:`generate_stream` for the arguments)."""
        new = list(self.generate_stream(prompt, max_new_tokens, temperature, top_k, top_p, seed, prefill_chunk, decode))
        return torch.cat([prompt.long()] + [t[:, None] for t in new], dim=1)

    def _check_generate_args(self, prompt, max_new_tokens, temperature, top_k, top_p, prefill_chunk) -> None:
        self._check_tokens(prompt, 2, "LanguageModel.generate")
        if prefill_chunk is not None and (isinstance(prefill_chunk, bool) or not isinstance(prefill_chunk, int) or prefill_chunk < 1):
            raise ValueError(f"prefill_chunk must be None or an integer >= 1, got {prefill_chunk!r}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature < float("inf"):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
        if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
            raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")
        max_len = self.cfg.max_len
        needed = prompt.shape[1] + max_new_tokens - 1  # the last token is never fed back
        if max_len is not None and "attention" in self.cfg.layer_mixers() and needed > max_len:
            raise ValueError(f"prompt ({prompt.shape[1]}) + max_new_tokens ({max_new_tokens}) - 1 = {needed} exceeds max_len={max_len}")
