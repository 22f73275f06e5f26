"""Training configuration: ``TrainConfig`` (with nested ``model`` and ``data`` sections),
``--key=value`` overrides type-checked against the dataclass fields, JSON in and out.

Keys are dotted paths into the dataclasses: ``lr``, ``model.d_model``, ``data.length``.
The *type* of a section is that of the value it holds, which the task's defaults choose
(``Task.defaults()``): ``model`` is a ``ModelConfig`` for the classifier and forecasting tasks
and an ``LMConfig`` for the language-model tasks; ``data`` is the task's own data config, defined
beside its loader (``DelayDataConfig`` in ``hippos.data.generated``, ``TextDataConfig`` in
``hippos.data.text``, ...), holding only the fields that loader reads. So ``--model.mixer=s4d``
is checked against ``LMConfig`` for ``hippos train ar`` and refused (with suggestions) for
``hippos train delay``, and ``--data.noise`` is refused for ``hippos train smnist``.
This module knows no task: turning a saved dict into a config (which needs the task's defaults)
is ``hippos.train.task.config_from_dict``.
Values from the command line are strings parsed by the field's type (``bool`` accepts
true/false/yes/no/on/off/1/0; ``int`` refuses ``1.5``; ``X | None`` accepts ``none``);
values from a JSON file must already have the field's type. Every mistake raises
``ValueError`` or ``TypeError`` naming the key, which the CLI prints as one line.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from hippos.data.generated import DelayDataConfig
from hippos.models.config import ModelConfig
from hippos.models.lm_config import LMConfig

__all__ = [
    "CONFIG_VERSION",
    "RESUME_MUTABLE",
    "TrainConfig",
    "all_keys",
    "apply_overrides",
    "config_to_dict",
    "get_value",
    "load_config",
    "parse_override_args",
    "require",
    "save_config",
    "set_value",
    "update_from_dict",
    "validate",
]


@dataclass
class TrainConfig:
    """Everything a run depends on. Saved as ``config.json`` beside the run.

    Steps are optimizer steps (one batch each). The learning-rate schedule is a function of
    ``epochs`` and the number of batches per epoch only, so cutting a run short with
    ``max_steps`` and resuming it later reproduces the uninterrupted run.
    """

    task: str = "delay"
    task_module: str | None = None  # a user's Python file (or module name) that registers the task
    config_version: int = 2  # 1 (absent in old config.json files): before per-task data sections
    data_dir: str | None = None  # data root (MNIST in <data_dir>/mnist); default $HIPPOS_DATA
    out_dir: str | None = None  # default runs/<task>-<date>-<time>
    seed: int = 0  # model init, dropout and data order
    init_path: str | None = None  # start from these weights (a .safetensors file, or a run directory: its best weights)
    epochs: int = 10
    batch_size: int = 50
    lr: float = 1e-3  # peak learning rate of AdamW
    weight_decay: float = 0.01  # AdamW, on weight matrices only (not norms, biases, SSM params)
    warmup_steps: int = 0  # linear warmup from 0, then decay (schedule) to min_lr_ratio * lr
    warmup_fraction: float = 0.0  # warmup as a fraction of all steps (instead of warmup_steps)
    schedule: str = "cosine"  # decay after the warmup: "cosine", "linear" or "constant"
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping
    accumulate: int = 1  # micro-batches per step: the batch is run in this many parts, gradients added up
    eval_every: int = 0  # steps between extra validations; the val set is always run each epoch
    checkpoint_every: int = 0  # steps between checkpoints; one is always written each epoch
    checkpoint_minutes: float = 10.0  # also a checkpoint once this many minutes passed since the last (0: off)
    log_every: int = 50  # steps between training rows of metrics.csv
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in total
    num_workers: int = 0  # DataLoader worker processes
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto"
    num_threads: int = 0  # torch CPU threads (torch.set_num_threads); 0 leaves torch's default
    precision: str = "32"  # "32", "bf16" or "16": autocast of projections, MLPs, attention (SSM kernels, FFTs stay float32)
    dist_backend: str | None = None  # under torchrun: None picks gloo (CPU) or nccl (CUDA)
    tensorboard: bool = True  # also log to TensorBoard when it is installed
    model: ModelConfig | LMConfig = field(default_factory=ModelConfig)  # the task's defaults pick the type
    data: object = field(default_factory=DelayDataConfig)  # the task's data config (its defaults pick the type)


#: Keys a resumed run may change: they affect logging, speed or stopping, not the model's math
#: (``device`` and ``num_threads`` may change float rounding, ``precision`` more than that: the weights
#: stay float32 in every precision, so a run may continue in another one; see docs/training.md).
RESUME_MUTABLE = frozenset(
    {"task_module", "data_dir", "out_dir", "max_steps", "num_workers", "device", "num_threads", "precision", "dist_backend", "tensorboard",
     "log_every", "eval_every", "checkpoint_every", "checkpoint_minutes"}
)

SCHEDULES = ("cosine", "linear", "constant")
#: ``TrainConfig.precision``: float32, or autocast to bfloat16 / float16 (float16 with a gradient scaler).
PRECISIONS = ("32", "bf16", "16")
#: ``TrainConfig.dist_backend`` under torchrun (None: gloo for the CPU, nccl for CUDA).
BACKENDS = ("gloo", "nccl")

#: The config format written by this version (``config_version``); older ones are upgraded on load.
CONFIG_VERSION = 2

_NoneType = type(None)


def _fields(obj_or_cls) -> dict[str, tuple[dataclasses.Field, object]]:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _is_section(value) -> bool:
    """A nested config (a dataclass instance): its type is the instance's, not the annotation's."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def all_keys(cfg=TrainConfig, prefix: str = "") -> list[str]:
    """Every settable dotted key of ``cfg`` (an instance, or a class: its defaults), e.g.
    ``["task", ..., "model.d_model", ...]``."""
    if isinstance(cfg, type):
        cfg = cfg()
    keys = []
    for name in _fields(cfg):
        value = getattr(cfg, name)
        if _is_section(value):
            keys += all_keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _unknown(key: str, cfg) -> ValueError:
    head = key.split(".", 1)[0]
    section = getattr(cfg, head, None) if "." in key else None
    if _is_section(section) and not _fields(section):
        task = getattr(cfg, "task", None)
        return ValueError(f"unknown config key {key!r}: the {task + ' ' if task else ''}{head} section has no keys "
                          f"({type(section).__name__})")
    keys = all_keys(cfg)
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    if not close:  # try the last component alone: "d_model" -> "model.d_model"
        tail = key.rsplit(".", 1)[-1]
        close = [k for k in keys if k.rsplit(".", 1)[-1] == tail] or difflib.get_close_matches(
            tail, keys, n=3, cutoff=0.6
        )
    hint = f"; did you mean {' or '.join(repr(k) for k in close)}?" if close else " (see `hippos train --print-config`)"
    return ValueError(f"unknown config key {key!r}{hint}")


def _split_optional(tp):
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not _NoneType]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
        raise TypeError(f"unsupported config field type {tp}")
    return tp, False


def _type_name(tp) -> str:
    base, optional = _split_optional(tp)
    if typing.get_origin(base) is typing.Literal:
        name = "one of " + ", ".join(repr(a) for a in typing.get_args(base))
    else:
        name = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}.get(base, str(base))
    return name + (" or none" if optional else "")


def _check_literal(key: str, value, tp):
    base, _ = _split_optional(tp)
    if value is not None and typing.get_origin(base) is typing.Literal and value not in typing.get_args(base):
        raise ValueError(f"{key} must be {_type_name(tp)}, got {value!r}")
    return value


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _from_text(key: str, text: str, tp):
    base, optional = _split_optional(tp)
    if optional and text.strip().lower() in ("none", "null"):
        return None
    bad = TypeError(f"--{key} expects {_type_name(tp)}, got {text!r}")
    if base is bool:
        t = text.strip().lower()
        if t in _TRUE:
            return True
        if t in _FALSE:
            return False
        raise bad
    if base is int:
        try:
            return int(text)
        except ValueError:
            pass
        try:
            v = float(text)  # "1e4" is an integer; "1.5" is not
        except ValueError:
            raise bad from None
        if math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
            return int(v)
        raise bad
    if base is float:
        try:
            v = float(text)
        except ValueError:
            raise bad from None
        if not math.isfinite(v):
            raise ValueError(f"--{key} must be finite, got {text!r}")
        return v
    if base is str or typing.get_origin(base) is typing.Literal:
        return _check_literal(key, text, tp)
    try:  # anything else (lists, tuples): JSON text
        return _from_json(key, json.loads(text), tp)
    except json.JSONDecodeError:
        raise bad from None


def _from_json(key: str, value, tp):
    base, optional = _split_optional(tp)
    if value is None:
        if optional:
            return None
        raise TypeError(f"{key!r} expects {_type_name(tp)}, got null")
    bad = TypeError(f"{key!r} expects {_type_name(tp)}, got {json.dumps(value)}")
    if base is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if isinstance(value, bool):
        raise bad
    if base is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if base is float:
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        raise bad
    if base is str or typing.get_origin(base) is typing.Literal:
        if isinstance(value, str):
            return _check_literal(key, value, tp)
        raise bad
    origin = typing.get_origin(base) or base
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        return origin(value)
    if isinstance(origin, type) and isinstance(value, origin):
        return value
    raise bad


def _locate(cfg, key: str):
    """(dataclass instance holding the leaf, leaf name, leaf type) for a dotted key."""
    parts = key.split(".")
    obj = cfg
    for i, part in enumerate(parts):
        fields = _fields(obj)
        if part not in fields:
            raise _unknown(key, cfg)
        tp, value = fields[part][1], getattr(obj, part)
        if i == len(parts) - 1:
            if _is_section(value):
                example = next(iter(_fields(value)), None)
                hint = f"; set its keys, e.g. {key}.{example}" if example else " with no keys to set"
                raise ValueError(f"{key!r} is a section{hint}")
            return obj, part, tp
        if not _is_section(value):
            raise _unknown(key, cfg)
        obj = value
    raise _unknown(key, cfg)  # pragma: no cover


def get_value(cfg: TrainConfig, key: str):
    obj, name, _ = _locate(cfg, key)
    return getattr(obj, name)


def set_value(cfg: TrainConfig, key: str, value, *, from_text: bool = True) -> None:
    """Set dotted ``key`` in place; ``value`` is parsed from text or type-checked as JSON."""
    obj, name, tp = _locate(cfg, key)
    setattr(obj, name, _from_text(key, value, tp) if from_text else _from_json(key, value, tp))


def parse_override_args(tokens: list[str]) -> list[tuple[str, str]]:
    """``["--lr=1e-3", "--model.d_model", "256"]`` -> ``[("lr", "1e-3"), ("model.d_model", "256")]``.

    A bare ``--flag`` (no ``=`` and followed by another ``--`` token or nothing) means ``true``.
    """
    out = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise ValueError(f"unexpected argument {tok!r}; overrides look like --key=value")
        body = tok[2:]
        if "=" in body:
            key, value = body.split("=", 1)
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            key, value = body, tokens[i + 1]
            i += 1
        else:
            key, value = body, "true"
        out.append((key.replace("-", "_"), value))
        i += 1
    return out


def apply_overrides(cfg: TrainConfig, overrides: list[tuple[str, str]]) -> TrainConfig:
    """Return a copy of ``cfg`` with the ``(key, text)`` overrides applied, in order."""
    cfg = _copy(cfg)
    for key, text in overrides:
        set_value(cfg, key, text, from_text=True)
    return cfg


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if not isinstance(k, str):
            raise TypeError(f"config keys must be strings, got {k!r}")
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((prefix + k, v))
    return out


def flat_config(d: dict) -> dict:
    """A nested config dict as ``{"model.d_model": 64, ...}``."""
    return dict(_flatten(d))


def update_from_dict(cfg: TrainConfig, d: dict) -> TrainConfig:
    """A copy of ``cfg`` updated from a nested (or dotted-key) dict of JSON values."""
    if not isinstance(d, dict):
        raise TypeError(f"a config must be a JSON object, got {type(d).__name__}")
    cfg = _copy(cfg)
    for key, value in _flatten(d):
        set_value(cfg, key, value, from_text=False)
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def _copy(cfg: TrainConfig) -> TrainConfig:
    return copy.deepcopy(cfg)


def load_config(path: str | os.PathLike) -> dict:
    """Read a JSON config file into a dict (not yet applied)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {str(path)!r} not found") from None
    except OSError as e:
        raise ValueError(f"cannot read config file {str(path)!r}: {e.strerror}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"config file {str(path)!r} is not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(d, dict):
        raise TypeError(f"config file {str(path)!r} must hold a JSON object")
    return d


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write ``cfg`` as indented JSON, atomically (temp file then ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")
    os.replace(tmp, path)


def is_path_key(name: str) -> bool:
    """Config keys that hold a file or folder: ``data_dir``, ``data.path``, ``data.labels_path``, ..."""
    return name in ("path", "data_dir") or name.endswith("_path")


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """A copy of ``cfg`` whose relative data paths (``data_dir`` and the data section's ``path`` /
    ``*_path`` keys) are made absolute against the current directory, ``~`` expanded: the run's
    ``config.json`` then finds its data from any directory (``hippos eval``, ``--resume``)."""
    cfg = _copy(cfg)

    def fix(obj):
        for name in _fields(obj):
            value = getattr(obj, name)
            if is_path_key(name) and isinstance(value, str) and value:
                setattr(obj, name, str(Path(value).expanduser().absolute()))

    fix(cfg)
    if _is_section(cfg.data):
        fix(cfg.data)
    return cfg


def require(cfg: TrainConfig, ok: bool, key: str, what: str) -> None:
    """Raise ``ValueError("<key> must be <what>, got <value>")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{key} must be {what}, got {get_value(cfg, key)!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Range checks of the trainer's own keys (the task checks its model and data sections:
    ``Task.check``)."""

    def need(ok: bool, key: str, what: str):
        require(cfg, ok, key, what)

    need(cfg.epochs >= 1, "epochs", ">= 1")
    need(cfg.batch_size >= 1, "batch_size", ">= 1")
    need(cfg.lr > 0, "lr", "> 0")
    need(cfg.weight_decay >= 0, "weight_decay", ">= 0")
    need(cfg.warmup_steps >= 0, "warmup_steps", ">= 0")
    need(0 <= cfg.warmup_fraction < 1, "warmup_fraction", "in [0, 1)")
    need(not (cfg.warmup_steps and cfg.warmup_fraction), "warmup_fraction", "0 when warmup_steps is set (give one of them)")
    need(cfg.schedule in SCHEDULES, "schedule", "one of " + ", ".join(repr(s) for s in SCHEDULES))
    need(0 <= cfg.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]")
    need(cfg.grad_clip >= 0, "grad_clip", ">= 0 (0 disables clipping)")
    need(cfg.accumulate >= 1, "accumulate", ">= 1")
    need(cfg.eval_every >= 0, "eval_every", ">= 0")
    need(cfg.checkpoint_every >= 0, "checkpoint_every", ">= 0")
    need(math.isfinite(cfg.checkpoint_minutes) and cfg.checkpoint_minutes >= 0, "checkpoint_minutes", "a number >= 0")
    need(cfg.log_every >= 1, "log_every", ">= 1")
    need(cfg.max_steps is None or cfg.max_steps >= 1, "max_steps", ">= 1 or none")
    need(cfg.num_workers >= 0, "num_workers", ">= 0")
    need(cfg.num_threads >= 0, "num_threads", ">= 0 (0: torch's default)")
    need(cfg.precision in PRECISIONS, "precision", "one of " + ", ".join(repr(s) for s in PRECISIONS))
    need(cfg.dist_backend in (None, *BACKENDS), "dist_backend", "none or " + ", ".join(repr(b) for b in BACKENDS))
    need(cfg.seed >= 0, "seed", ">= 0")
    return cfg
