"""A language model scored on a whole text read as one stream, its state carried (issue 17).

Evaluation by independent windows (the trainer's default) restarts every window of
``data.seq_len`` characters from a zero state: the first characters of each window are predicted
with no context. Read as one stream, chunk by chunk with every layer's state carried
(``LanguageModel.forward(tokens, state, return_state=True)``), each character is predicted from
all the text before it, as the recurrent view would: for SSM layers this costs the same as the
windows and is exact (state passing); attention layers keep a KV cache that grows with the text.

    from hippos.train.stream_eval import stream_loss
    r = stream_loss(model, ids, chunk=1024)   # {"loss": nats per token, "bpc": bits, "tokens": N - 1}
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["stream_loss"]


@torch.no_grad()
def stream_loss(model, ids: torch.Tensor, chunk: int, kv_memory: int | None = None) -> dict:
    """Mean next-token cross-entropy of ``model`` over ``ids: long(N)`` read as one stream in chunks
    of ``chunk`` tokens, every layer's state carried: token ``t + 1`` scored from tokens ``0..t``.
    Memory follows the chunk (logits of one chunk at a time) plus the state. ``kv_memory``: the
    keys and values an attention layer keeps from one chunk to the next (None: all; 0: none,
    attention within each chunk, as a model trained with ``data.kv_memory=0``)."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.long or len(ids) < 2:
        raise ValueError(f"ids must be a 1-d int64 tensor of at least 2 tokens, got {getattr(ids, 'dtype', type(ids))} "
                         f"{tuple(getattr(ids, 'shape', ()))}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    if kv_memory is not None:
        from hippos.train.carry import check_kv_memory, trim_state

        check_kv_memory(kv_memory, False)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x, y = ids[:-1].to(device), ids[1:].to(device)
        state, total = None, 0.0
        for a in range(0, len(x), chunk):
            logits, state = model(x[None, a : a + chunk], state, return_state=True)  # (1, T, V)
            total += F.cross_entropy(logits[0].double(), y[a : a + chunk], reduction="sum").item()
            if kv_memory is not None:
                state = trim_state(state, kv_memory)
    finally:
        model.train(was_training)
    loss = total / len(x)
    return {"loss": loss, "bpc": loss / math.log(2), "tokens": len(x)}
