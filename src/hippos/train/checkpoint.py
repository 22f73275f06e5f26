"""Checkpoints: ``<run>/checkpoint/`` = ``model.safetensors`` + ``optimizer.pt`` + ``trainer_state.json``.

* ``model.safetensors``: the model's ``state_dict`` (safetensors ``save_model``: shared
  tensors stored once), metadata ``{"format": FORMAT, "step": "<step>"}``;
* ``optimizer.pt``: ``optimizer.state_dict()`` (``torch.save``; read with ``weights_only``);
* ``trainer_state.json``: step, epoch, batches consumed in the epoch, best validation
  accuracy, running metric sums, and the torch / CUDA / numpy / python RNG states.

Atomic: the three files are written into a fresh ``.checkpoint-tmp/``, then the old
``checkpoint/`` is renamed to ``.checkpoint-old/``, the new one into place, and the old one
removed. A kill at any moment leaves either ``checkpoint/`` or ``.checkpoint-old/`` whole;
``find_checkpoint`` takes whichever exists. ``best.safetensors`` beside it holds the weights
of the best validation accuracy (temp file then ``os.replace``).
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "BEST",
    "CHECKPOINT",
    "FORMAT",
    "find_checkpoint",
    "get_rng_state",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_weights",
    "set_rng_state",
]

FORMAT = "hippos-checkpoint-1"
CHECKPOINT = "checkpoint"
BEST = "best.safetensors"
_TMP, _OLD = ".checkpoint-tmp", ".checkpoint-old"
MODEL, OPTIMIZER, STATE = "model.safetensors", "optimizer.pt", "trainer_state.json"


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def get_rng_state() -> dict:
    """The torch (CPU and CUDA), numpy and python global RNG states, as JSON values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": _b64(torch.get_rng_state()),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(_unb64(state["torch"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def _write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_weights(model: torch.nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """``model``'s state_dict as safetensors at ``path``, atomically."""
    from safetensors.torch import save_model

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    meta = {"format": FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    save_model(model, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # safetensors creates files readable by their owner only
    _fsync(tmp)
    os.replace(tmp, path)


def load_weights(model: torch.nn.Module, path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Load safetensors weights into ``model`` (strict); return the file's metadata.

    Weights saved before the one-``Block`` models (``blocks.0.layer.*``, ``norm1``/``norm2``)
    are renamed by :func:`hippos.models.upgrade_state_dict` on the way in."""
    from safetensors import safe_open
    from safetensors.torch import load_file, load_model

    from hippos.models.keymap import upgrade_state_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
        if upgrade_state_dict(dict.fromkeys(keys)).keys() == set(keys):
            missing, unexpected = load_model(model, str(path), strict=False, device=str(device))
        else:  # an old checkpoint: rename, then load
            missing, unexpected = model.load_state_dict(upgrade_state_dict(load_file(str(path), device=str(device))), strict=False)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"cannot load weights {str(path)!r}: {e}") from None
    if missing or unexpected:
        raise ValueError(
            f"weights {str(path)!r} do not fit the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return meta


def _by_names(saved: dict, optimizer: torch.optim.Optimizer, where: str) -> dict:
    """The saved optimizer state re-indexed for ``optimizer`` by parameter names (the groups of
    ``hippos.train.optim.param_groups`` carry ``param_names``), old names upgraded: a model whose
    parameters are registered in another order than when it was saved gets its own moments back."""
    from hippos.models.keymap import upgrade_key

    current = optimizer.param_groups
    if not all("param_names" in g for g in (*saved["param_groups"], *current)):
        return saved  # not built by param_groups: positions are all there is
    index, i = {}, 0
    for g in current:
        for name in g["param_names"]:
            index[name] = i
            i += 1
    state, groups = {}, []
    unmatched = list(current)
    for sg in saved["param_groups"]:
        names = [upgrade_key(n) for n in sg["param_names"]]
        cg = next((g for g in unmatched if sorted(g["param_names"]) == sorted(names)), None)
        if cg is None:
            raise ValueError(f"{where}: the optimizer state does not fit the model (group {sg.get('name')!r} of "
                             f"{len(names)} parameters has no counterpart)")
        unmatched.remove(cg)
        saved_id = dict(zip(names, sg["params"]))
        groups.append({**sg, "param_names": list(cg["param_names"]), "params": [index[n] for n in cg["param_names"]]})
        for n in cg["param_names"]:
            if saved_id[n] in saved["state"]:
                state[index[n]] = saved["state"][saved_id[n]]
    groups.sort(key=lambda g: min(g["params"], default=0))  # the current groups' order
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: str | os.PathLike, model, optimizer, trainer_state: dict) -> Path:
    """Write ``run_dir/checkpoint/`` atomically (see module docstring); return its path."""
    run_dir = Path(run_dir)
    tmp, old, final = run_dir / _TMP, run_dir / _OLD, run_dir / CHECKPOINT
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    step = int(trainer_state["step"])
    save_weights(model, tmp / MODEL, {"step": step})
    with open(tmp / OPTIMIZER, "wb") as f:
        torch.save({"format": FORMAT, "step": step, "optimizer": optimizer.state_dict()}, f)
        f.flush()
        os.fsync(f.fileno())
    _write_json(tmp / STATE, {"format": FORMAT, **trainer_state})
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


def find_checkpoint(path: str | os.PathLike) -> Path | None:
    """The checkpoint directory of a run directory (or ``path`` itself if it is one), else None."""
    path = Path(path)
    if (path / STATE).is_file() and (path / MODEL).is_file():
        return path
    for name in (CHECKPOINT, _OLD):  # _OLD: killed between the two renames of a save
        d = path / name
        if (d / STATE).is_file() and (d / MODEL).is_file():
            return d
    return None


def load_checkpoint(ckpt_dir: str | os.PathLike, model, optimizer=None, device="cpu") -> dict:
    """Load weights (and optimizer state) from a checkpoint directory; return trainer_state."""
    ckpt_dir = Path(ckpt_dir)
    try:
        state = json.loads((ckpt_dir / STATE).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(ckpt_dir)!r} holds no checkpoint ({STATE} missing)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(ckpt_dir / STATE)!r} is damaged: {e.msg}") from None
    if state.get("format") != FORMAT:
        raise ValueError(f"{str(ckpt_dir)!r}: unknown checkpoint format {state.get('format')!r}, expected {FORMAT!r}")
    meta = load_weights(model, ckpt_dir / MODEL, device)
    if int(meta.get("step", -1)) != int(state["step"]):
        raise ValueError(f"{str(ckpt_dir)!r}: weights are from step {meta.get('step')}, trainer state from {state['step']}")
    if optimizer is not None:
        try:
            blob = torch.load(ckpt_dir / OPTIMIZER, map_location=device, weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"{str(ckpt_dir)!r} holds no optimizer state ({OPTIMIZER} missing)") from None
        if int(blob.get("step", -1)) != int(state["step"]):
            raise ValueError(f"{str(ckpt_dir)!r}: optimizer state is from step {blob.get('step')}, trainer state from {state['step']}")
        optimizer.load_state_dict(_by_names(blob["optimizer"], optimizer, str(ckpt_dir)))
    return state
