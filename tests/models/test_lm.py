"""The language model: every mixer's forward == looped step, chunked prefill == one pass, greedy
generation == argmax of repeated full forwards, sampling options, and a tiny H3 that learns recall."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from hippos.layers import H3, S4, Block, KVCache, MultiHeadAttention
from hippos.models import LanguageModel, LMConfig
from hippos.models.lm import sample_logits

F64 = torch.float64
V = 11

MIXERS = {
    "h3": dict(mixer="h3"),
    "h3-heads": dict(mixer="h3", head_dim=4),
    "s4d": dict(mixer="s4d"),
    "s4": dict(mixer="s4"),
    "attention": dict(mixer="attention", n_heads=2, attn_pos="learned", max_len=64),
    "hybrid": dict(mixer="h3", attn_layers=(1,), n_heads=2),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def make(name, **kw):
    cfg = LMConfig(vocab_size=V, d_model=8, n_layers=2, d_state=8, shift_state=4, l_max=32, dt_min=0.01, dt_max=0.1, **{**MIXERS[name], **kw})
    return LanguageModel(cfg).double().eval()


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_layers_follow_the_config():
    m = make("hybrid")
    assert [type(b.mixer) for b in m.blocks] == [H3, MultiHeadAttention]
    assert all(isinstance(b, Block) and b.prenorm and b.mlp.fc1.out_features == 4 * 8 for b in m.blocks)
    assert [type(b.mixer) for b in make("s4").blocks] == [S4, S4]
    assert make("s4").blocks[0].mixer.mode == "dplr" and make("s4d").blocks[0].mixer.mode == "diag"
    assert make("s4d").blocks[0].mixer.kernel.init == "inv"
    assert m.head is None  # tied: logits = LN(x) Eᵀ
    h = m.final_norm(m.embedding.weight[:3])
    close(m._logits(m.embedding.weight[:3]), h @ m.embedding.weight.T)


def test_learned_positions_enter_the_residual_stream():
    """attn_pos="learned": one table added to the token embeddings (GPT-2 / the H3 paper's
    Transformer), not to each attention layer's input: with every attention output zeroed, a
    repeated token still gives position-dependent logits, and chunked calls continue the positions."""
    m = make("attention")
    assert m.pos_emb is not None and m.pos_emb.weight.shape == (64, 8)
    assert all(b.mixer.pos_emb is None for b in m.blocks)
    assert make("hybrid").pos_emb is None and make("h3", attn_pos="learned", max_len=64).pos_emb is None
    with torch.no_grad():
        for b in m.blocks:
            b.mixer.out_proj.weight.zero_(), b.mixer.out_proj.bias.zero_()
    tokens = torch.full((1, 6), 3)
    logits, _ = m(tokens)
    assert (logits[0, 1:] - logits[0, :1]).abs().amax(-1).min() > 1e-6  # every position differs from the first
    with torch.no_grad():
        m.pos_emb.weight.zero_()
    logits, _ = m(tokens)
    close(logits[0, 1:], logits[0, :1].expand(5, V))  # no positions, no attention: the same at every position
    m = make("attention", max_len=10)
    _, state = m(torch.randint(0, V, (2, 7)), return_state=True)
    with pytest.raises(ValueError, match="exceeds max_len=10"):
        m(torch.randint(0, V, (2, 4)), state=state)


@pytest.mark.parametrize("name", list(MIXERS))
def test_forward_equals_looped_step(name):
    m = make(name)
    tokens = torch.randint(0, V, (2, 15))
    logits, final = m(tokens, return_state=True)
    assert logits.shape == (2, 15, V)
    state, params, out = m.default_state(2), m.setup_step(), []
    for t in range(15):
        lt, state = m.step(tokens[:, t], state, params)
        out.append(lt)
    close(torch.stack(out, 1), logits)
    close(state, final)


@pytest.mark.parametrize("name", list(MIXERS))
def test_chunked_prefill_equals_one_pass(name):
    m = make(name)
    prompt = torch.randint(0, V, (2, 19))
    last, state = m.prefill(prompt)
    close(last, m(prompt)[0][:, -1])  # the head at the last position only, same logits
    for chunk in (1, 4, 7):
        last_c, state_c = m.prefill(prompt, chunk=chunk)
        close(last_c, last)
        close(state_c, state)
    # the chunks' logits are the one pass's logits
    logits, _ = m(prompt)
    l1, s1 = m(prompt[:, :8], return_state=True)
    l2, _ = m(prompt[:, 8:], state=s1)
    close(torch.cat([l1, l2], 1), logits)


def greedy_by_full_forwards(m, prompt, n):
    seq = prompt
    for _ in range(n):
        nxt = m(seq)[0][:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
    return seq


@pytest.mark.parametrize("name", list(MIXERS))
def test_greedy_generate_equals_argmax_of_full_forwards(name):
    m = make(name)
    prompt = torch.randint(0, V, (3, 6))
    want = greedy_by_full_forwards(m, prompt, 9)
    assert torch.equal(m.generate(prompt, 9, temperature=0), want)
    assert torch.equal(m.generate(prompt, 9, top_k=1, prefill_chunk=4), want)
    stream = m.generate_stream(prompt, 9, temperature=0.0)
    assert torch.equal(torch.stack(list(stream), 1), want[:, 6:])


def tensors(state: list) -> list:
    """The tensors of a model state (an H3State's two, a KVCache's keys and values, an S4 state)."""
    return [t for s in state for t in (s[:2] if isinstance(s, tuple) else (s,))]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", list(MIXERS))
def test_decoder_equals_forward_and_the_reference_step(name, batch):
    """LanguageModel.decoder (the decode loop: steppers in place, written-out blocks) gives the
    forward's logits after a prefill and from the empty state, its state equals the forward's, and
    the reference steppers (fast=False) give the same; the state handed in is not changed."""
    m = make(name)
    tokens = torch.randint(0, V, (batch, 30))
    logits, final = m(tokens, return_state=True)
    for start in (0, 7):
        for fast in (True, False):
            state = m.default_state(batch) if start == 0 else m.prefill(tokens[:, :start])[1]
            before = [t.clone() for t in tensors(state)]
            dec = m.decoder(state, fast=fast) if start else m.decoder(batch_size=batch, fast=fast)
            out = torch.stack([dec.step(tokens[:, t]) for t in range(start, 30)], 1)
            close(out, logits[:, start:])
            close(tensors(dec.state), tensors(final))
            assert all(torch.equal(a, b) for a, b in zip(tensors(state), before))
    lt, _ = m.step(tokens[:, 7], m.prefill(tokens[:, :7])[1])
    close(m.decoder(m.prefill(tokens[:, :7])[1]).step(tokens[:, 7]), lt)


@pytest.mark.parametrize("name", list(MIXERS))
def test_fast_and_reference_decode_give_the_same_tokens(name):
    m = make(name)
    prompt = torch.randint(0, V, (3, 5))
    for kw in ({"temperature": 0}, {"temperature": 1.3, "seed": 5}, {"top_k": 3, "top_p": 0.9, "seed": 1}):
        fast = m.generate(prompt, 20, **kw)
        assert torch.equal(fast, m.generate(prompt, 20, decode="reference", **kw))
    tokens = list(m.generate_stream(prompt, 3, temperature=0))
    assert not any(t.is_inference() for t in tokens)  # ordinary tensors, usable anywhere
    tokens[0] += 1
    with pytest.raises(ValueError, match="decode"):
        m.generate(prompt, 2, decode="compiled")


def test_fast_decode_grows_the_kv_cache():
    """A short prompt then 90 tokens: the attention store (64 slots of room) grows while decoding,
    and greedy decoding still equals argmax of full forwards."""
    m = make("hybrid")
    prompt = torch.randint(0, V, (2, 3))
    want = greedy_by_full_forwards(m, prompt, 90)
    assert torch.equal(m.generate(prompt, 90, temperature=0), want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["hybrid", "h3-heads", "attention"])
def test_fast_decode_in_half_precision_and_under_autocast(name, dtype):
    """A half-precision model: the fast steppers run (projections in its dtype, the SSMs in float32,
    as the reference step does) and give the reference steps' logits to half-precision rounding,
    and the half-precision forward's. Under autocast they do not apply: the decoder runs the
    layers' reference steps."""
    from hippos.layers.stepper import ReferenceStepper

    cfg = LMConfig(vocab_size=V, d_model=16, n_layers=2, d_state=8, shift_state=4, dt_min=0.01, dt_max=0.1, **MIXERS[name])
    low = LanguageModel(cfg).eval().to(dtype)
    tokens = torch.randint(0, V, (2, 20))
    logits = low(tokens)[0].float()
    state = low.prefill(tokens[:, :6])[1]
    fast, ref = low.decoder(state), low.decoder(state, fast=False)
    assert not any(isinstance(s, ReferenceStepper) for s in fast.steppers)
    for t in range(6, 20):
        a, b = fast.step(tokens[:, t]).float(), ref.step(tokens[:, t]).float()
        torch.testing.assert_close(a, b, rtol=0.02, atol=0.02)
        torch.testing.assert_close(a, logits[:, t], rtol=0.05, atol=0.05)
    m = LanguageModel(cfg).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dec = m.decoder(m.prefill(tokens[:, :6])[1])
        assert all(isinstance(s, ReferenceStepper) for s in dec.steppers)
        assert torch.equal(m.generate(tokens[:, :6], 6, temperature=0), m.generate(tokens[:, :6], 6, temperature=0, decode="reference"))


@pytest.mark.parametrize("name", ["h3", "hybrid"])
def test_ssm_state_does_not_grow(name):
    m = make(name)
    _, state = m.prefill(torch.randint(0, V, (2, 5)))
    shapes = [tuple(t.shape for t in s if torch.is_tensor(t)) for s in state]
    params = m.setup_step()
    for _ in range(20):
        _, state = m.step(torch.randint(0, V, (2,)), state, params)
    for kind, before, s in zip(m.cfg.layer_mixers(), shapes, state):
        if kind == "attention":
            assert isinstance(s, KVCache) and s.length == 25
        else:
            assert tuple(t.shape for t in s if torch.is_tensor(t)) == before


def test_sampling_seed_top_k_top_p():
    m = make("h3")
    prompt = torch.randint(0, V, (4, 5))
    rng = torch.get_rng_state()
    a = m.generate(prompt, 12, temperature=1.5, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # a seed uses a private generator
    assert torch.equal(m.generate(prompt, 12, temperature=1.5, seed=3, prefill_chunk=2), a)
    assert not torch.equal(m.generate(prompt, 12, temperature=1.5, seed=4), a)
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0, -1.0]]).repeat(500, 1)
    assert set(sample_logits(logits, 1.0, top_k=2, generator=g).tolist()) == {1, 2}
    # probabilities ≈ .64 .24 .09 .03 .01: top_p .8 keeps {1, 2}, top_p .5 only the argmax
    assert set(sample_logits(logits, 1.0, top_p=0.8, generator=g).tolist()) == {1, 2}
    assert set(sample_logits(logits, 1.0, top_p=0.5, generator=g).tolist()) == {1}
    assert set(sample_logits(logits, 1.0, generator=g).tolist()) == {0, 1, 2, 3, 4}


def test_generate_turns_dropout_off_and_restores_the_mode():
    m = make("h3", embed_dropout=0.5, dropout=0.5).train()
    prompt = torch.randint(0, V, (2, 5))
    out = m.generate(prompt, 6, temperature=0)
    assert m.training
    m.blocks[0].eval()  # mixed flags come back as they were, module by module
    flags = [x.training for x in m.modules()]
    assert torch.equal(m.generate(prompt, 6, temperature=0), out)
    assert [x.training for x in m.modules()] == flags
    m.eval()
    assert torch.equal(out, greedy_by_full_forwards(m, prompt, 6))
    assert torch.equal(m.generate(prompt, 0), prompt)


def ar_batch(n, g, n_keys=4, n_vals=4, n_pairs=3):
    """Associative recall: ``k1 v1 k2 v2 k3 v3 => k``, target the value bound to k in this sequence
    (keys 0-3, values 4-7, ``=>`` = 8; a fresh key→value map per example)."""
    keys = torch.stack([torch.randperm(n_keys, generator=g)[:n_pairs] for _ in range(n)])
    vals = n_keys + torch.randint(0, n_vals, (n, n_pairs), generator=g)
    q = torch.randint(0, n_pairs, (n,), generator=g)
    arrow = torch.full((n, 1), n_keys + n_vals)
    x = torch.cat([torch.stack([keys, vals], -1).flatten(1), arrow, keys.gather(1, q[:, None])], 1)
    return x, vals.gather(1, q[:, None])[:, 0]


def test_tiny_h3_learns_associative_recall():
    """Keys rebound in every sequence: the answer must be looked up in context (H3 §3.1)."""
    t0 = time.process_time()  # CPU seconds of this process: wall time moves with whatever else runs
    torch.manual_seed(0)
    m = LanguageModel(LMConfig(vocab_size=9, d_model=64, n_layers=2, mixer="h3", d_state=16, shift_state=8))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    x_test, y_test = ar_batch(500, torch.Generator().manual_seed(1))
    for _ in range(250):  # seeds 0-4 all reach >= 0.998 by step 200 (2 cores, ~4 s)
        x, y = ar_batch(64, g)
        loss = F.cross_entropy(m(x)[0][:, -1], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        acc = (m(x_test)[0][:, -1].argmax(-1) == y_test).float().mean().item()
        greedy = m.generate(x_test[:50], 1, temperature=0)[:, -1]
    assert acc > 0.95, acc  # chance: 0.25 (0.33 knowing the values present)
    assert (greedy == y_test[:50]).float().mean() > 0.95
    assert time.process_time() - t0 < 60  # 12.6 CPU-s measured (one thread, loaded 2-core machine: 136 s wall)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mixer"):
        LanguageModel(LMConfig(mixer="mamba"))
    with pytest.raises(ValueError, match="attn_layers"):
        LanguageModel(LMConfig(n_layers=2, attn_layers=(2,)))
    with pytest.raises(ValueError, match="head_dim"):
        LanguageModel(LMConfig(d_model=10, head_dim=4))
    with pytest.raises(ValueError, match="max_len"):
        LanguageModel(LMConfig(mixer="attention", attn_pos="learned"))
    m = make("attention")
    with pytest.raises(ValueError, match="token ids"):
        m(torch.tensor([[0, V]]))
    with pytest.raises(TypeError, match="integer"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        m(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        m.generate(torch.zeros(1, 60, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="temperature"):
        m.generate(torch.zeros(1, 3, dtype=torch.long), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        m.generate_stream(torch.zeros(1, 3, dtype=torch.long), 2, top_p=0.0)
    with pytest.raises(ValueError, match="prefill_chunk"):
        m.generate(torch.zeros(1, 3, dtype=torch.long), 2, prefill_chunk=0)
    with pytest.raises(ValueError, match="layer states"):
        m(torch.zeros(1, 3, dtype=torch.long), state=[None])


@pytest.mark.parametrize("name", sorted(MIXERS))
@pytest.mark.parametrize("T", [5, 16])
def test_chunked_forward_equals_one_pass_with_gradients(name, T):
    """LanguageModel.forward(chunk_size=T): the whole stack over chunks, every layer's state (SSM
    states, KV caches) carried: the same logits, final state and gradients as one pass."""
    m = make(name)
    tokens = torch.randint(0, V, (2, 29))

    def run(chunk):
        m.zero_grad()
        logits, state = m(tokens, chunk_size=chunk, return_state=True)
        logits.square().sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    l1, g1 = run(None)
    l2, g2 = run(T)
    close(l2, l1, 1e-9)
    assert g1.keys() == g2.keys()
    for n in g1:
        torch.testing.assert_close(g2[n], g1[n], rtol=1e-7, atol=1e-9, msg=n)
    with torch.no_grad():  # the preallocated path, with a carried state
        l3, _ = m(tokens, state=m.default_state(2), chunk_size=T)
    close(l3, l1, 1e-9)


@pytest.mark.parametrize("name", ["s4d", "h3", "hybrid"])
@pytest.mark.parametrize("T", [4, 11])
def test_stream_loss_equals_one_pass_over_the_whole_text(name, T):
    """Scoring a text as one stream in chunks, the state carried, is the cross-entropy of one
    forward pass over the whole text (every token predicted from all before it)."""
    import math

    import torch.nn.functional as F

    from hippos.train.stream_eval import stream_loss

    m = make(name)
    ids = torch.randint(0, V, (40,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, _ = m(ids[None, :-1])
    want = F.cross_entropy(logits[0], ids[1:]).item()
    r = stream_loss(m, ids, chunk=T)
    assert r["tokens"] == 39 and abs(r["loss"] - want) < 1e-9 and abs(r["bpc"] - want / math.log(2)) < 1e-9
    # and it is not what independent windows of T give (the test can tell the two apart)
    with torch.no_grad():
        windows = [F.cross_entropy(m(ids[None, a : a + T])[0][0], ids[a + 1 : a + T + 1], reduction="sum").item()
                   for a in range(0, 39, T) if a + T + 1 <= 40]
    n = sum(min(T, 39 - a) for a in range(0, 39, T) if a + T + 1 <= 40)
    assert abs(sum(windows) / n - want) > 1e-6
