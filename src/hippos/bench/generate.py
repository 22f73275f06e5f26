"""``hippos bench generate``: generation tokens/s of a hybrid H3 LM against a Transformer LM.

Paper: H3 (arXiv 2212.14052) §5.3 / Table 7: 1.3B models, batch 64, 128 new tokens, prompts of
512 / 1024 / 1536 tokens; Transformer 1340 / 770 / 520 vs hybrid H3 1980 / 1580 / 1240 tokens/s
(ratios 1.48 / 2.05 / 2.38). The authors' generation benchmark script times "prompt processing
+ decoding" of ``generate`` for a 24-layer H3 with attention at layers 8 and 16, and a GPT-2 of
the same width; tokens/s = batch · new tokens / that time.

Here both models are :class:`hippos.models.LanguageModel` (byte vocabulary, tied embeddings,
pre-norm blocks, 4d GELU MLP, no position embeddings):

* **hybrid**: H3 mixers (head_dim 1, d_state 64, shift 64) with causal attention at
  ``attn_layers`` (default ``n//3, 2n//3``, the paper's 8 and 16 of 24); its state is constant
  except for the KV caches of those layers.
* **transformer**: attention at every layer, KV cache; its width is chosen (a multiple of
  ``n_heads``) so its parameter count is the closest to the hybrid's (:func:`match_width`).

Each (model, batch, prompt length) runs in its own process (:func:`hippos.bench.measure.run_isolated`,
``{"what": "generate"}``): one warm-up generation (full prompt, 2 new tokens), then ``repeats``
timed calls of :meth:`LanguageModel.generate_stream` (greedy; ``decode``: ``"fast"``, the
decoder with the layers' in-place steppers, or ``"reference"``, ``LanguageModel.step``; ``dtype``:
the parameters', float32 by default, bfloat16 or float16 for both models alike, the SSMs still
computing in float32 as the layers do). Times per call:

* ``prefill_s``: until the first token (prompt through the convolutional view, ``setup_step``,
  first sample);
* ``decode_s``: the remaining ``new_tokens - 1`` recurrent steps; decode tokens/s =
  ``batch · (new_tokens - 1) / decode_s``;
* end-to-end tokens/s = ``batch · new_tokens / (prefill_s + decode_s)``: the paper's measure.

Memory: the generation state at the end (bytes of the KV caches and of the SSM states, read off
the tensors) and the process's extra peak resident set over the warm-up and the timed calls
(above the resident set once the model and prompt exist; the prefill's activations set it).

**Allocator.** A step allocates temporaries of the SSM state's size (the reference step also a new
state; the fast steppers update theirs in place; the KV caches are appended in place in their
preallocated stores, which grow now and then). With glibc's defaults each allocation over the
mmap threshold is a fresh mapping whose page faults can dominate a CPU step;
``allocator="cached"`` (the default) keeps freed memory in the heap (``mallopt``), as PyTorch's
GPU caching allocator does for the paper's numbers. ``"system"`` leaves glibc's defaults.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import statistics
import time

import torch

from hippos.bench.measure import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from hippos.models.lm_config import LMConfig

__all__ = [
    "ALLOCATORS",
    "DTYPES",
    "PAPER_TABLE7",
    "build_configs",
    "default_attn_layers",
    "generate_jobs",
    "match_width",
    "param_count",
    "profile_step",
    "run_generate_job",
    "state_bytes",
]

#: H3 Table 7 (1.3B, A100, batch 64, 128 new tokens): prompt -> (Transformer, hybrid H3) tokens/s.
PAPER_TABLE7 = {512: (1340, 1980), 1024: (770, 1580), 1536: (520, 1240)}
ALLOCATORS = ("cached", "system")
MODELS = ("transformer", "hybrid")


def default_attn_layers(n_layers: int) -> tuple[int, ...]:
    """The paper's placement scaled to ``n_layers``: ``n//3`` and ``2n//3`` (8, 16 of 24)."""
    return tuple(sorted({n_layers // 3, 2 * n_layers // 3}))


def param_count(cfg: LMConfig) -> int:
    """Parameters of ``LanguageModel(cfg)`` (tied embedding counted once)."""
    from hippos.models.lm import LanguageModel

    return sum(p.numel() for p in LanguageModel(cfg).parameters())


def match_width(target: int, base: LMConfig, multiple: int, lo: int | None = None, hi: int | None = None) -> tuple[int, int]:
    """The width ``d`` (a multiple of ``multiple``) whose ``base`` with ``d_model=d`` has the
    parameter count closest to ``target``; returns ``(d, count)``. The count grows with d, so a
    bisection over the multiples finds the bracket, then the nearer side is taken."""
    lo = multiple if lo is None else lo
    hi = max(4 * base.d_model, 4 * multiple) if hi is None else hi
    k_lo, k_hi = max(1, lo // multiple), max(1, hi // multiple)

    @functools.lru_cache(maxsize=None)
    def count(k: int) -> int:
        return param_count(dataclasses.replace(base, d_model=k * multiple))

    while count(k_hi) < target:  # widen until the target is bracketed
        k_hi *= 2
    while k_hi - k_lo > 1:
        mid = (k_lo + k_hi) // 2
        if count(mid) < target:
            k_lo = mid
        else:
            k_hi = mid
    best = min((k_lo, k_hi), key=lambda k: abs(count(k) - target))
    return best * multiple, count(best)


def build_configs(
    d_model: int, n_layers: int, attn_layers: tuple[int, ...] | None, n_heads: int, vocab_size: int = 256, match: bool = True
) -> dict[str, dict]:
    """``{"hybrid": {...}, "transformer": {...}}``, each with ``cfg`` (an :class:`LMConfig` as a
    dict) and ``params``. With ``match`` the Transformer's width is fitted to the hybrid's count."""
    attn = default_attn_layers(n_layers) if attn_layers is None else tuple(attn_layers)
    hybrid = LMConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, mixer="h3", attn_layers=attn, n_heads=n_heads).validate()
    trans = LMConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, mixer="attention", n_heads=n_heads).validate()
    n_hybrid = param_count(hybrid)
    if match:
        width, n_trans = match_width(n_hybrid, trans, multiple=n_heads)
        trans = dataclasses.replace(trans, d_model=width)
    else:
        n_trans = param_count(trans)
    return {
        "hybrid": {"cfg": dataclasses.asdict(hybrid), "params": n_hybrid},
        "transformer": {"cfg": dataclasses.asdict(trans), "params": n_trans},
    }


def generate_jobs(
    configs: dict, batches, prompt_lens, new_tokens: int, repeats: int, threads: int | None, allocator: str, decode: str = "fast", dtype: str = "float32"
) -> list[dict]:
    """One job per (batch, prompt length, model), Transformer first."""
    return [
        {
            "what": "generate",
            "model": name,
            "cfg": configs[name]["cfg"],
            "params": configs[name]["params"],
            "batch": b,
            "prompt_len": L,
            "new_tokens": new_tokens,
            "repeats": repeats,
            "threads": threads,
            "allocator": allocator,
            "decode": decode,
            "dtype": dtype,
        }
        for b in batches
        for L in prompt_lens
        for name in MODELS
    ]


# ---------------------------------------------------------------------------- in the worker
def _keep_freed_memory() -> bool:
    """glibc: serve large allocations from the heap and never trim it (a caching allocator)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    ok = libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)  # allocations up to 1 GiB come from the heap
    return bool(ok) and bool(libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))  # and it is never trimmed


def state_bytes(state) -> dict:
    """Bytes of a LanguageModel state: ``{"kv_cache": …, "ssm": …}`` (KV caches, with their stores'
    spare room, vs SSM states)."""
    from hippos.layers.attention import KVCache

    out = {"kv_cache": 0, "ssm": 0}
    for s in state:
        key = "kv_cache" if isinstance(s, KVCache) else "ssm"
        if key == "kv_cache" and s.store is not None:  # the preallocated store, room included
            out[key] += sum(t.numel() * t.element_size() for t in (s.store.keys, s.store.values))
            continue
        tensors = s if isinstance(s, tuple) else (s,)
        out[key] += sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))
    return out


#: ``dtype`` of a job: the models' parameters (built in float32, then converted: the same weights).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _model(job: dict):
    from hippos.models.lm import LanguageModel

    cfg = dict(job["cfg"])
    cfg["attn_layers"] = tuple(cfg["attn_layers"])
    return LanguageModel(LMConfig(**cfg)).eval().to(DTYPES[job.get("dtype", "float32")])


class _LastState:
    """Wraps ``model.prefill``, ``model.step`` and ``model.decoder`` (instance attributes) to keep
    the latest state: :attr:`state` (a decoder's is read when asked, at the end)."""

    def __init__(self, model):
        self._state, self._decoder = None, None
        for name in ("prefill", "step", "decoder"):
            setattr(model, name, self._wrap(getattr(model, name), name))

    @property
    def state(self):
        return self._decoder.state if self._decoder is not None else self._state

    def _wrap(self, fn, name):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            if name == "decoder":
                self._decoder = out
            else:
                self._state, self._decoder = out[1], None
            return out

        return wrapped


def _generate_once(model, prompt: torch.Tensor, new_tokens: int, decode: str = "fast") -> tuple[float, float]:
    """``(seconds to the first token, seconds for the rest)`` of one greedy ``generate_stream``."""
    t0 = time.perf_counter()
    stream = model.generate_stream(prompt, new_tokens, temperature=0, decode=decode)
    next(stream)
    t1 = time.perf_counter()
    for _ in stream:
        pass
    return t1 - t0, time.perf_counter() - t1


def run_generate_job(job: dict) -> dict:
    """Build the model of ``job``, warm up, time ``repeats`` generations; the result record.
    A job with ``"context"`` is a step profile instead (:func:`profile_step`)."""
    if "context" in job:
        return profile_step(job)
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    cached = job.get("allocator", "cached") == "cached" and _keep_freed_memory()
    torch.manual_seed(0)
    model = _model(job)
    batch, L, new = job["batch"], job["prompt_len"], job["new_tokens"]
    prompt = torch.randint(0, model.cfg.vocab_size, (batch, L), generator=torch.Generator().manual_seed(1))
    recorder = _LastState(model)
    gc.collect()
    exact = reset_peak_rss()  # before the warm-up: with the cached allocator the timed runs reuse its memory
    base = current_rss_bytes()
    decode = job.get("decode", "fast")
    _generate_once(model, prompt, min(new, 2), decode)  # warm-up: same shapes for the prefill, a few steps
    runs = [_generate_once(model, prompt, new, decode) for _ in range(job.get("repeats", 1))]
    peak = peak_rss_bytes()
    prefill = statistics.median(r[0] for r in runs)
    decode = statistics.median(r[1] for r in runs)
    total = statistics.median(r[0] + r[1] for r in runs)
    sb = state_bytes(recorder.state)
    return {
        **job,
        "cfg": {k: job["cfg"][k] for k in ("d_model", "n_layers", "mixer", "attn_layers", "n_heads", "vocab_size")},
        "threads": torch.get_num_threads(),
        "allocator_cached": cached,
        "prefill_s": prefill,
        "decode_s": decode,
        "total_s": total,
        "times_s": [list(r) for r in runs],
        "decode_tokens_per_s": batch * (new - 1) / decode if new > 1 and decode > 0 else None,
        "tokens_per_s": batch * new / total,
        "state_kv_bytes": sb["kv_cache"],
        "state_ssm_bytes": sb["ssm"],
        "extra_peak_bytes": max(0, peak - base),
        "peak_is_exact": exact,
    }


# ---------------------------------------------------------------------------- step profile
class _Timer:
    """Wall time of calls to ``obj.name`` accumulated under ``key`` (an instance-attribute wrapper)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, obj, name: str, key: str) -> None:
        fn = getattr(obj, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
            return out

        setattr(obj, name, timed)


def _state_at(model, batch: int, context: int) -> list:
    """A state after ``context`` tokens without running them: SSM states from ``default_state``
    (their size is fixed) and KV caches of random keys and values of length ``context``, in stores
    with room to append (as after a prefill)."""
    from hippos.layers.attention import KVCache, KVStore

    def cache(s: KVCache) -> KVCache:
        B, nh, _, dh = s.keys.shape
        store = KVStore(*(torch.randn(B, nh, context + 64, dh).to(s.keys.dtype) for _ in range(2)), context)
        return KVCache(store.keys[:, :, :context], store.values[:, :, :context], store)

    return [cache(s) if isinstance(s, KVCache) else s for s in model.default_state(batch)]


def _rewind(state: list, context: int) -> list:
    """Make ``state`` (from :func:`_state_at`) the newest cache of its stores again, so the next
    step appends in place, as every decode step of a generation does."""
    for s in state:
        if getattr(s, "store", None) is not None:
            s.store.filled = context
    return state


def profile_step(job: dict, steps: int = 8, top: int = 10) -> dict:
    """Where one decode step spends its time at ``batch`` with ``context`` cached tokens: a step of
    :meth:`LanguageModel.decoder` (``job["decode"] == "fast"``, the default) or of
    :meth:`LanguageModel.step` (``"reference"``).

    Returns wall ms per step; ms per step inside each layer's mixer (by kind) and MLP (from
    wrappers around the mixers' ``step`` (their steppers' for the decoder) and the MLP branch);
    the rest (embedding, norms, logits, the reference's input checks); the torch profiler's top
    ops by self CPU time; and ``python_ms``, the wall time not spent inside any aten op under the
    profiler (interpreter, module calls, dispatch; the profiler's own cost per op lands here too,
    so it is an upper bound).
    """
    from torch.profiler import ProfilerActivity, profile

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    if job.get("allocator", "cached") == "cached":
        _keep_freed_memory()
    torch.manual_seed(0)
    model = _model(job)
    batch, context = job["batch"], job["context"]
    state = _state_at(model, batch, context)
    token = torch.randint(0, model.cfg.vocab_size, (batch,), generator=torch.Generator().manual_seed(1))
    kinds = model.cfg.layer_mixers()
    timer = _Timer()
    fast = job.get("decode", "fast") == "fast"
    with torch.inference_mode() if fast else torch.no_grad():
        params = model.setup_step()
        if fast:
            from hippos.layers.attention import AttentionStepper

            decoder = model.decoder(state, params)
            caches = [(s, s.cache) for s in decoder.steppers if isinstance(s, AttentionStepper)]

            def one_step():
                for s, cache in caches:  # every step sees `context` tokens (see _rewind)
                    s.cache, cache.store.filled = cache, context
                decoder.step(token)

            def wrap_parts():
                for s, kind in zip(decoder.steppers, kinds):
                    timer.wrap(s, "step", f"mixer:{kind}")
                timer.wrap(decoder, "_mlp", "mlp")
        else:

            def one_step():  # the state passed is the same each time: every step sees `context` tokens
                model.step(token, _rewind(state, context), params)

            def wrap_parts():
                for block, kind in zip(model.blocks, kinds):
                    timer.wrap(block.mixer, "step", f"mixer:{kind}")
                    timer.wrap(block.mlp, "forward", "mlp")

        for _ in range(2):  # warm-up
            one_step()
        t0 = time.perf_counter()
        for _ in range(steps):
            one_step()
        wall = (time.perf_counter() - t0) / steps
        wrap_parts()
        t0 = time.perf_counter()
        for _ in range(steps):
            one_step()
        wall_wrapped = (time.perf_counter() - t0) / steps
        parts = {k: 1000 * v / steps for k, v in sorted(timer.seconds.items())}
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                one_step()
            wall_profiled = (time.perf_counter() - t0) / steps
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    aten_ms = sum(e.self_cpu_time_total for e in events) / 1000 / steps
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return {
        **job,
        "cfg": {k: job["cfg"][k] for k in ("d_model", "n_layers", "mixer", "attn_layers", "n_heads")},
        "layers": {k: model.cfg.layer_mixers().count(k.split(":")[1]) for k in parts if k.startswith("mixer:")},
        "threads": torch.get_num_threads(),
        "step_ms": 1000 * wall,
        "parts_ms": {**parts, "rest": 1000 * wall_wrapped - sum(parts.values())},
        "aten_ops_per_step": sum(e.count for e in events) / steps,
        "aten_ms": aten_ms,
        "profiled_step_ms": 1000 * wall_profiled,
        "python_ms": max(0.0, 1000 * wall_profiled - aten_ms),
        "top_ops": [{"op": e.key, "ms": e.self_cpu_time_total / 1000 / steps, "calls": e.count / steps} for e in ops],
    }
