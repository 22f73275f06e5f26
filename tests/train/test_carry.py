"""Truncated BPTT (issue 17): the state carried between training windows, its checkpoint, the trainer."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from hippos.cli import main
from hippos.layers.attention import KVCache
from hippos.models.lm import LanguageModel
from hippos.models.lm_config import LMConfig
from hippos.train import checkpoint as ckpt_io
from hippos.train.carry import (
    StateCarry,
    check_kv_memory,
    flatten_state,
    trim_state,
    unflatten_state,
)
from hippos.train.objectives import BITS_PER_CHAR

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

V = 9
MIXERS = {
    "h3": {"mixer": "h3"},
    "s4d": {"mixer": "s4d"},
    "s4": {"mixer": "s4"},
    "attention": {"mixer": "attention", "n_heads": 2},
    "hybrid": {"mixer": "h3", "attn_layers": (1,), "n_heads": 2},
}
TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))  # ~3K chars


def make(name):
    cfg = LMConfig(vocab_size=V, d_model=8, n_layers=2, d_state=8, shift_state=4, l_max=32, dt_min=0.01, dt_max=0.1,
                   **MIXERS[name])
    return LanguageModel(cfg).double()


@pytest.mark.parametrize("name", list(MIXERS))
def test_a_carried_state_round_trips_through_the_checkpoint(tmp_path, name):
    """flatten -> carry.safetensors -> unflatten into default_state's structure gives the state back
    (SSM states, H3State, KV caches of any length)."""
    m = make(name)
    tokens = torch.randint(0, V, (3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, state = m(tokens, return_state=True)
    carry = StateCarry(kv_memory=5)
    carry.keep(state)
    names = carry.tensors()
    assert names and all(isinstance(v, torch.Tensor) for v in names.values())
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    ckpt_io.save_checkpoint(model_dir, m, opt, {"step": 4}, carry=names)
    loaded = ckpt_io.load_carry(model_dir / "checkpoint")
    again = StateCarry(kv_memory=5)
    again.load(loaded, m.default_state(3))
    with torch.no_grad():  # the next window from either state: the same logits
        nxt = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(m(nxt, again.state)[0], m(nxt, carry.state)[0], rtol=0, atol=0)
    assert flatten_state(again.state).keys() == names.keys()
    with pytest.raises(ValueError, match="has no tensor"):
        unflatten_state(m.default_state(3), dict(list(names.items())[1:]))
    with pytest.raises(ValueError, match="does not"):
        unflatten_state(m.default_state(3), {**names, "99.x": torch.zeros(1)})


def test_trim_state_detaches_and_keeps_the_last_kv_tokens():
    m = make("hybrid")
    tokens = torch.randint(0, V, (2, 6), generator=torch.Generator().manual_seed(0))
    _, state = m(tokens, return_state=True)  # with autograd: the state is part of the graph
    assert state[0].diag.requires_grad and isinstance(state[1], KVCache) and state[1].length == 6
    for mem, want in ((0, 0), (4, 4), (100, 6)):
        t = trim_state(state, mem)
        assert not t[0].diag.requires_grad and not t[1].keys.requires_grad
        assert t[1].length == want and t[1].store is None
        torch.testing.assert_close(t[1].keys, state[1].keys[..., 6 - want :, :].detach(), rtol=0, atol=0)
        torch.testing.assert_close(t[0].diag, state[0].diag.detach(), rtol=0, atol=0)


def test_kv_memory_is_refused_with_learned_positions_and_when_negative():
    assert check_kv_memory(0, True) == 0 and check_kv_memory(7, False) == 7
    with pytest.raises(ValueError, match="learned attention positions"):
        check_kv_memory(4, True)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="integer >= 0"):
            check_kv_memory(bad, False)


@pytest.mark.parametrize("name", ["h3", "s4d", "hybrid"])
def test_windows_with_the_carried_state_score_like_one_pass(name):
    """Window k+1 started from the (detached) state window k ended in gives the logits of the same
    positions in one pass over both windows: the carried state is the true state. The gradient
    of the second window's loss stops at the boundary (it reaches no input of the first)."""
    m = make(name).eval()
    tokens = torch.randint(0, V, (2, 17), generator=torch.Generator().manual_seed(2))
    x, y = tokens[:, :-1], tokens[:, 1:]
    with torch.no_grad():
        whole, _ = m(x)
    carry = StateCarry(kv_memory=100)
    losses, embedded = [], []  # the embedded inputs of each window, to follow the gradient
    m.embedding.register_forward_hook(lambda mod, inp, out: embedded.append(out))
    for a in (0, 8):
        r = BITS_PER_CHAR.loss_and_metrics(m, x[:, a : a + 8], y[:, a : a + 8], state=carry.state, carry=True)
        losses.append(r.loss)
        carry.keep(r.state)
    # (the objective scores float32 logits, as in training)
    want = [F.cross_entropy(whole[:, a : a + 8].float().flatten(0, 1), y[:, a : a + 8].flatten()) for a in (0, 8)]
    for got, w in zip(losses, want):
        torch.testing.assert_close(got, w, rtol=1e-6, atol=1e-7)
    fresh = BITS_PER_CHAR.loss_and_metrics(m, x[:, 8:], y[:, 8:]).loss  # the same window from a zero state
    assert abs(fresh.item() - want[1].item()) > 1e-5  # (10x the tolerance above)
    # truncation: the second window's loss has no gradient path into the first window's inputs
    first, second = embedded[:2]
    assert torch.autograd.grad(losses[1], first, retain_graph=True, allow_unused=True)[0] is None
    assert torch.any(torch.autograd.grad(losses[1], second, retain_graph=True)[0] != 0)
    assert torch.any(torch.autograd.grad(losses[0], first)[0] != 0)


def tiny_carry(path, *extra):
    # 3K chars / 4 streams of window 16: ~44 windows per pass; 6 steps an epoch, 2 epochs
    return ["charlm", f"--data.path={path}", "--data.seq_len=16", "--data.steps_per_epoch=6", "--batch_size=4",
            "--epochs=2", "--model.d_model=8", "--model.d_state=8", "--model.shift_state=4", "--warmup_steps=1",
            "--log_every=1", "--tensorboard=false", "--model.embed_dropout=0.1", "--data.carry_state=true", *extra]


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT)
    return p


def _same_weights(a_dir, b_dir):
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (a_dir, b_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_trainer_carries_the_state_resets_at_pass_starts_and_resumes_bitwise(tmp_path, monkeypatch):
    from hippos.data.text import StreamWindowSampler
    from hippos.train import config as C
    from hippos.train import default_config, get_task
    from hippos.train.objectives import Objective

    text_file = tmp_path / "short.txt"
    text_file.write_text(TEXT[:420])  # 378 training characters: 4 streams of 90, passes of 5 windows of 16
    seen = []  # per training call: (inputs, was a state passed?)
    real = Objective.loss_and_metrics

    def spy(self, model, x, y, lengths=None, *, state=None, carry=False):
        if model.training:
            seen.append((x.clone(), state is not None, carry))
        return real(self, model, x, y, lengths, state=state, carry=carry)

    monkeypatch.setattr(Objective, "loss_and_metrics", spy)
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", *tiny_carry(text_file), f"--out_dir={full}"]) == 0
    cfg = C.apply_overrides(default_config("charlm"), [("data.path", str(text_file)), ("data.seq_len", "16")])
    train = get_task("charlm").load_data(cfg).train
    sampler = StreamWindowSampler(train, 4, n_batches=12, seed=cfg.seed)
    assert sampler.per_pass == 5
    assert len(seen) == 12 and all(c for *_, c in seen)
    for b, (x, _, _) in enumerate(seen):  # the trainer's batches are the streams' windows, pass after pass
        assert torch.equal(x, train[sampler.batch(b)][0])
    assert [s for _, s, _ in seen] == [b % 5 != 0 for b in range(12)]  # zero state where a pass begins
    assert sorted(load_file(full / "checkpoint" / "carry.safetensors")) == sorted(
        flatten_state(make("h3").default_state(4)))

    # stopped at step 4 (mid-pass: the next window needs the carried state), resumed: bitwise the same
    assert main(["train", *tiny_carry(text_file), f"--out_dir={cut}", "--max_steps=4"]) == 0
    assert main(["train", "--resume", str(cut)]) == 0
    _same_weights(full, cut)
    (cut / "checkpoint" / "carry.safetensors").unlink()
    assert main(["train", "--resume", str(cut)]) == 2  # a carry run whose checkpoint lost its state


def test_carry_state_refusals(tmp_path, text_file, capsys):
    capsys.readouterr()
    out = tmp_path / "r"
    assert main(["train", *tiny_carry(text_file), "--model.mixer=attention", "--model.attn_pos=learned",
                 "--data.kv_memory=8", f"--out_dir={out}"]) == 2
    assert "learned attention positions" in capsys.readouterr().err
    args = [a for a in tiny_carry(text_file) if a != "--data.carry_state=true"]
    assert main(["train", *args, "--data.kv_memory=8", f"--out_dir={out}"]) == 2
    assert "needs data.carry_state=true" in capsys.readouterr().err
    assert main(["train", *tiny_carry(text_file), "--batch_size=400", f"--out_dir={out}"]) == 2
    assert "fewer than one window" in capsys.readouterr().err


def test_load_carry_refuses_a_damaged_file_or_another_step(tmp_path):
    m = make("s4d")
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    d = ckpt_io.save_checkpoint(tmp_path, m, opt, {"step": 3}, carry={"0": torch.zeros(2, 3)})
    assert torch.equal(ckpt_io.load_carry(d)["0"], torch.zeros(2, 3))
    state = json.loads((d / "trainer_state.json").read_text())
    (d / "trainer_state.json").write_text(json.dumps({**state, "step": 5}))
    with pytest.raises(ValueError, match="from step 3"):
        ckpt_io.load_carry(d)
    (d / "carry.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot load the carried state"):
        ckpt_io.load_carry(d)
    d2 = ckpt_io.save_checkpoint(tmp_path / "b", m, opt, {"step": 1}, carry={})
    assert ckpt_io.load_carry(d2) == {}
    d3 = ckpt_io.save_checkpoint(tmp_path / "c", m, opt, {"step": 1})
    assert ckpt_io.load_carry(d3) is None
