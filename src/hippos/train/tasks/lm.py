"""The language-model tasks: ``ar``, ``ih`` (H3 Table 2) and ``charlm``.

=========  ==================================================================================
``ar``     Associative Recall, vocab 10, L 20 (``hippos.data.synthetic``), 200 epochs,
           10% linear warmup then linear decay
``ih``     Induction Head, vocab 20, L 30, 400 epochs, 10% warmup then cosine
``charlm`` next-character prediction on a text file (Tiny Shakespeare by default), scored in
           bits per character: train on the first 90% of the text, validate on the next 5%,
           test on the last 5% (``data.val_fraction``, ``data.test_fraction``); random windows,
           or with ``data.carry_state=true`` contiguous streams whose state is carried from
           batch to batch (truncated BPTT, ``hippos.train.carry``)
=========  ==================================================================================

The synthetic setups are H3 (arXiv 2212.14052) §3.1 / Table 2 with the configs of the authors'
code (REFERENCE.md §2): a 2-layer ``LanguageModel``, d_model 32, MLP 128, embedding dropout
0.1; H3 d_state 64 head_dim 1; S4D (``--model.mixer=s4d``) d_state 64, Inv init, ZOH, GELU;
attention (``--model.mixer=attention``) 1 head with learned positions; AdamW lr 5e-4, weight
decay 0.1, batch 32, no clipping; loss on all positions, accuracy on the last token. The
reference has no validation split: the test split serves as the validation split (model
selection on it is therefore optimistic; the final weights' test accuracy is the headline).

``model.vocab_size = 0`` (the default) means "the data's vocabulary size"; ``model.max_len =
none`` with learned attention positions means "the data's window length". Both are filled in
by :func:`fit_model_config` once the data is loaded, and ``config.json`` records the values
used. A nonzero ``vocab_size`` that disagrees with the data is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

from hippos.data.synthetic import SyntheticDataConfig
from hippos.data.text import TextDataConfig
from hippos.models.lm_config import LMConfig
from hippos.train.config import TrainConfig, require
from hippos.train.objectives import BITS_PER_CHAR, LAST_TOKEN
from hippos.train.task import Task, TaskData

__all__ = [
    "SYNTHETIC_NAMES",
    "VOCAB",
    "CharLMTask",
    "SyntheticLMTask",
    "ar_defaults",
    "charlm_defaults",
    "check_lm_config",
    "ih_defaults",
    "load_vocab",
    "resolved_synthetic_config",
    "tokens_of",
]

VOCAB = "vocab.json"  # the CharVocab of a charlm run, beside its checkpoint

#: trainer task name -> ``hippos.data.synthetic`` task name
SYNTHETIC_NAMES = {"ar": "associative_recall", "ih": "induction_head"}


# ----------------------------------------------------------------------------- defaults


def _synthetic_defaults(task: str, vocab_size: int, seq_len: int, epochs: int, schedule: str) -> TrainConfig:
    cfg = TrainConfig(
        task=task, epochs=epochs, batch_size=32, lr=5e-4, weight_decay=0.1, warmup_fraction=0.1, schedule=schedule,
        min_lr_ratio=0.0, grad_clip=0.0, log_every=50, num_threads=1,
    )
    cfg.data = SyntheticDataConfig(vocab_size=vocab_size, seq_len=seq_len)
    # s4_output="linear": the paper's S4D baseline is safari's standalone S4D layer, whose output map
    # is a plain linear layer (postact=None): SSM -> GELU -> Linear, no GLU gate. A GLU gate is a
    # multiplicative interaction, the very thing H3 adds; with it our 2-layer S4D solves induction
    # head (100%, see docs/synthetics.md).
    # attn_pos / attn_dropout: the reference Transformer baseline (safari's transformer.yaml for both
    # tasks): one learned position table at the input and attention dropout 0.1; the SSM models
    # have no attention layer, so neither applies to them.
    cfg.model = LMConfig(
        vocab_size=0, d_model=32, n_layers=2, mixer="h3", d_state=64, head_dim=1, mlp_expand=4, embed_dropout=0.1,
        dropout=0.0, n_heads=1, attn_pos="learned", max_len=None, s4_output="linear", attn_dropout=0.1,
    )
    return cfg


def ar_defaults() -> TrainConfig:
    return _synthetic_defaults("ar", vocab_size=10, seq_len=20, epochs=200, schedule="linear")


def ih_defaults() -> TrainConfig:
    return _synthetic_defaults("ih", vocab_size=20, seq_len=30, epochs=400, schedule="cosine")


def charlm_defaults() -> TrainConfig:
    # Ours (the H3 paper's LM runs are 125M+ models on OpenWebText): a ~100K-parameter H3 LM
    # that trains on 2 CPU cores, nanoGPT's shakespeare-char recipe for the optimizer.
    cfg = TrainConfig(
        task="charlm", epochs=10, batch_size=32, lr=2e-3, weight_decay=0.1, warmup_steps=100, schedule="cosine",
        min_lr_ratio=0.1, grad_clip=1.0, log_every=50, num_threads=1,
    )
    cfg.data = TextDataConfig()
    cfg.model = LMConfig(vocab_size=0, d_model=64, n_layers=2, mixer="h3", d_state=64, head_dim=1, mlp_expand=4,
                         embed_dropout=0.0, dropout=0.0, n_heads=1, attn_pos="none", max_len=None)
    return cfg


# ----------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=4)
def _synthetic_splits(name: str, vocab_size: int, seq_len: int, n_train: int, n_test: int, seed: int):
    from hippos.data.synthetic import SyntheticTask, make_synthetic_splits

    return make_synthetic_splits(SyntheticTask(name, vocab_size, seq_len, n_train, n_test), seed)




@functools.lru_cache(maxsize=2)
def _text_ids(path: str | None, data_dir: str | None, stamp, val_fraction: float, test_fraction: float):
    """``(vocab, (train, val, test))``: the ids of the three parts of the text (test None when
    ``test_fraction`` is 0)."""
    from hippos.data.text import (
        CharVocab,
        load_text,
        split_train_val_test,
        tinyshakespeare,
    )

    text = load_text(path) if path else tinyshakespeare(data_dir)
    # The whole text, as before the test split (so vocab.json of older runs still matches): every
    # val and test character can be encoded and scored. What this tells the model about the
    # held-out text is only which characters exist (an embedding row, untrained if unseen).
    vocab = CharVocab.from_text(text)
    parts = split_train_val_test(text, val_fraction, test_fraction)
    return vocab, tuple(vocab.encode(p) if p else None for p in parts)


def _stamp(path: str | None, data_dir: str | None):
    """What identifies the file's contents for the cache (a changed file is read again)."""
    from hippos.data.text import ENV_VAR

    p = Path(path) if path else Path(data_dir or os.environ.get(ENV_VAR, "")) / "tinyshakespeare" / "input.txt"
    try:
        st = p.stat()
    except OSError:
        return None
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


# ----------------------------------------------------------------------------- model config and vocabulary


def _data_vocab_size(cfg: TrainConfig) -> int | None:
    return cfg.data.vocab_size if isinstance(cfg.data, SyntheticDataConfig) else None


def _window_len(cfg: TrainConfig) -> int:
    d = cfg.data
    if isinstance(d, SyntheticDataConfig):
        return d.seq_len + (2 if cfg.task == "ar" else 1)
    return d.seq_len


def _resolved(cfg: TrainConfig, vocab_size: int) -> LMConfig:
    m = cfg.model
    if m.vocab_size not in (0, vocab_size):
        raise ValueError(
            f"model.vocab_size={m.vocab_size} does not match the data's vocabulary of {vocab_size} tokens "
            "(leave it at 0 to take it from the data)"
        )
    max_len = m.max_len
    if max_len is None and m.attn_pos == "learned" and "attention" in m.layer_mixers():
        max_len = _window_len(cfg)
    return dataclasses.replace(m, vocab_size=vocab_size, max_len=max_len)


def _learned_positions(cfg: TrainConfig) -> bool:
    m = cfg.model
    return m.attn_pos == "learned" and "attention" in m.layer_mixers()


def check_lm_config(cfg: TrainConfig) -> None:
    """Everything about the LM config that can be checked before the data is loaded."""
    if not isinstance(cfg.model, LMConfig):
        raise TypeError(f"task {cfg.task!r} trains a LanguageModel: its model section must be an LMConfig")
    resolved = _resolved(cfg, _data_vocab_size(cfg) or cfg.model.vocab_size or 1)
    resolved.validate()
    if resolved.max_len is not None and "attention" in resolved.layer_mixers() and resolved.max_len < _window_len(cfg):
        raise ValueError(f"model.max_len={resolved.max_len} is shorter than the training windows ({_window_len(cfg)} tokens)")


def resolved_synthetic_config(cfg: TrainConfig) -> TrainConfig:
    """A copy of an ``ar`` / ``ih`` config with the model section filled in as training will
    (the synthetic vocabulary is known without generating the data)."""
    out = dataclasses.replace(cfg)
    out.model = _resolved(cfg, cfg.data.vocab_size)
    return out


def load_vocab(run_dir: Path):
    """The ``CharVocab`` saved beside a charlm run."""
    from hippos.data.text import CharVocab

    return CharVocab.load(Path(run_dir) / VOCAB)


def tokens_of(cfg: TrainConfig, run_dir: Path):
    """The vocabulary of a (saved) LM run: its ``CharVocab`` or the synthetic ``Vocab``."""
    from hippos.data.synthetic import Vocab

    if isinstance(cfg.data, SyntheticDataConfig):
        return Vocab(cfg.data.vocab_size)
    return load_vocab(run_dir)


# ----------------------------------------------------------------------------- the tasks


class _LMTask(Task):
    def check(self, cfg: TrainConfig) -> None:
        check_lm_config(cfg)

    def fit_config(self, cfg: TrainConfig, data: TaskData) -> TrainConfig:
        """``model.vocab_size`` (and ``max_len`` for learned positions) taken from the data."""
        cfg.model = _resolved(cfg, len(data.train.vocab))
        return cfg


class SyntheticLMTask(_LMTask):
    """``ar`` / ``ih``: the H3 synthetic tasks (module docstring); the test split is also the val split."""

    objective = LAST_TOKEN

    def __init__(self, name: str):
        self.name = name
        self.description = {
            "ar": "H3 associative recall: language model, last-token accuracy (vocab 10, L 20)",
            "ih": "H3 induction head: language model, last-token accuracy (vocab 20, L 30)",
        }[name]

    def defaults(self) -> TrainConfig:
        return ar_defaults() if self.name == "ar" else ih_defaults()

    def check(self, cfg: TrainConfig) -> None:
        for key in ("vocab_size", "seq_len", "n_train", "n_test"):
            require(cfg, getattr(cfg.data, key) >= 1, f"data.{key}", ">= 1")
        require(cfg, cfg.data.seed >= 0, "data.seed", ">= 0")
        super().check(cfg)

    def load_data(self, cfg: TrainConfig) -> TaskData:
        d = cfg.data
        splits = _synthetic_splits(SYNTHETIC_NAMES[self.name], d.vocab_size, d.seq_len, d.n_train, d.n_test, d.seed)
        return TaskData(splits["train"], splits["test"], splits["test"])


class CharLMTask(_LMTask):
    """``charlm``: next-character prediction, bits per character; ``vocab.json`` beside the run."""

    name = "charlm"
    description = "character-level language model, bits per character (Tiny Shakespeare or --data.path)"
    objective = BITS_PER_CHAR

    def defaults(self) -> TrainConfig:
        return charlm_defaults()

    def check(self, cfg: TrainConfig) -> None:
        d = cfg.data
        require(cfg, d.seq_len >= 1, "data.seq_len", ">= 1")
        require(cfg, 0 < d.val_fraction < 1, "data.val_fraction", "in (0, 1)")
        require(cfg, 0 <= d.test_fraction < 1, "data.test_fraction", "in [0, 1) (0: no test text)")
        if d.val_fraction + d.test_fraction >= 1:
            raise ValueError(f"data.val_fraction + data.test_fraction must be below 1 (something left to train on), "
                             f"got {d.val_fraction} + {d.test_fraction}")
        require(cfg, cfg.data.steps_per_epoch >= 1, "data.steps_per_epoch", ">= 1")
        require(cfg, isinstance(d.carry_state, bool), "data.carry_state", "true or false")
        super().check(cfg)
        from hippos.train.carry import check_kv_memory

        check_kv_memory(d.kv_memory, _learned_positions(cfg))
        if d.kv_memory and not d.carry_state:
            raise ValueError("data.kv_memory is the attention memory carried between windows: it needs data.carry_state=true")

    def load_data(self, cfg: TrainConfig) -> TaskData:
        """``TextWindows`` (with ``.vocab``, the ``CharVocab`` of the whole text) of the three parts
        of ``split_train_val_test``. ``data.test_fraction = 0`` (charlm runs saved before the test
        split are read that way): no test text, the test split is the validation split."""
        from hippos.data.text import TextWindows

        d = cfg.data
        vocab, parts = _text_ids(d.path, cfg.data_dir, _stamp(d.path, cfg.data_dir), d.val_fraction, d.test_fraction)
        out = []
        remedy = {"training": "", "validation": ", raise data.val_fraction", "test": ", raise data.test_fraction"}
        for what, ids in zip(("training", "validation", "test"), parts):
            if ids is None:
                continue
            if len(ids) < d.seq_len + 1:
                raise ValueError(
                    f"the {what} text has {len(ids)} characters, too few for one window of data.seq_len={d.seq_len} "
                    f"(need seq_len + 1): lower data.seq_len{remedy[what]} or use a longer text"
                )
            ds = TextWindows(ids, d.seq_len)
            ds.vocab = vocab
            out.append(ds)
        test = out[2] if len(out) == 3 else out[1]
        return TaskData(out[0], out[1], test, artifacts={VOCAB: vocab.to_json() + "\n"})

    def extra_metrics(self, model, data: TaskData, cfg: TrainConfig, split: str) -> dict:
        """The split's text read as one stream, every layer's state carried from window to window
        (``hippos.train.stream_eval``; attention keeps ``data.kv_memory`` tokens): ``stream_bpc``
        beside the independent windows' bpc. Without a test text (``data.test_fraction = 0``)
        the "test" numbers are the validation text's: said in ``results.json`` and printed."""
        from hippos.train.stream_eval import stream_loss

        ds = data.split(split)
        r = stream_loss(model, ds.ids, chunk=cfg.data.seq_len, kv_memory=cfg.data.kv_memory)
        out = {"stream_bpc": r["bpc"], "stream_tokens": r["tokens"], "stream_chunk": cfg.data.seq_len,
               "kv_memory": cfg.data.kv_memory}
        if split == "test" and cfg.data.test_fraction == 0:
            out.update({"no_test_split": True, "scored": "val"})
        return out

    def describe_extra(self, extra: dict) -> list[str]:
        lines = []
        if "stream_bpc" in extra:
            attn = f", attention keeps {extra['kv_memory']} tokens" if extra["kv_memory"] else ""
            lines.append(f"read as one stream ({extra['stream_tokens']:,} characters in windows of {extra['stream_chunk']}, "
                         f"state carried{attn}): bpc {extra['stream_bpc']:.4f}")
        if extra.get("no_test_split"):
            lines.append("no test split in this run (data.test_fraction=0, as in charlm runs from before the test split): "
                         "the 'test' numbers above are the validation text's, the text the best weights were chosen on")
        return lines

    def state_carry(self, cfg: TrainConfig):
        """With ``data.carry_state``: the state carried between training windows (truncated BPTT)."""
        from hippos.train.carry import StateCarry

        return StateCarry(cfg.data.kv_memory) if cfg.data.carry_state else None

    def batches(self, ds, cfg: TrainConfig, epoch: int, start: int, train: bool):
        """Training draws ``data.steps_per_epoch`` random-window batches per epoch (batch ``b`` of
        the run a pure function of ``(seed, b)``), or with ``data.carry_state`` the next windows of
        ``batch_size`` contiguous streams (``StreamWindowSampler``: pass after pass over the text,
        each pass shifted); evaluation walks the non-overlapping windows once."""
        from hippos.data.text import (
            RandomWindowSampler,
            SequentialWindowSampler,
            StreamWindowSampler,
        )

        if not train:
            return SequentialWindowSampler(ds, cfg.batch_size)
        spe = cfg.data.steps_per_epoch
        if cfg.data.carry_state:
            return StreamWindowSampler(ds, cfg.batch_size, start=epoch * spe + start, n_batches=(epoch + 1) * spe,
                                       seed=cfg.seed)
        return RandomWindowSampler(len(ds), cfg.batch_size, n_batches=(epoch + 1) * spe, seed=cfg.seed,
                                   start=epoch * spe + start)
