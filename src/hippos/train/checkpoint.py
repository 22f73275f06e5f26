"""Checkpoints: ``<run>/checkpoint/`` = ``model.safetensors`` + ``optimizer.pt`` + ``trainer_state.json``.

* ``model.safetensors``: the model's ``state_dict`` (safetensors ``save_model``: shared
  tensors stored once), metadata ``{"format": FORMAT, "step": "<step>"}``;
* ``optimizer.pt``: ``{"format", "step", "optimizer": optimizer.state_dict()}`` (``torch.save``;
  read with ``weights_only=True``, which unpickles tensors and plain containers only);
* ``trainer_state.json``: step, epoch, batches consumed in the epoch, best validation
  accuracy, running metric sums, and the torch / CUDA / numpy / python RNG states;
* ``carry.safetensors`` (only when training carries a state between windows,
  ``hippos.train.carry``): that state's tensors by name.

Atomic: the three files are written into a fresh ``.checkpoint-tmp/``, then the old
``checkpoint/`` is renamed to ``.checkpoint-old/``, the new one into place, and the old one
removed. A kill at any moment leaves either ``checkpoint/`` or ``.checkpoint-old/`` whole;
``find_checkpoint`` takes whichever exists. A save that fails (a full disk, a read-only
filesystem, a second Ctrl-C) puts the previous checkpoint back in place, removes what it
wrote, and raises ``OSError(errno, "cannot write ...: <reason>")`` (or re-raises the
interrupt). ``best.safetensors`` beside it holds the weights of the best validation accuracy
(temp file then ``os.replace``).

Loading refuses a damaged file with one ``ValueError`` line naming it (``hippos train --resume``
prints it and exits with code 2): cut-off or overwritten weights, optimizer state or trainer
state, a trainer state without the keys the loop needs, an RNG state that does not restore.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import re
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
    "load_carry",
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
MODEL, OPTIMIZER, STATE, CARRY = "model.safetensors", "optimizer.pt", "trainer_state.json", "carry.safetensors"


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
    """Restore what :func:`get_rng_state` returned; a damaged state raises ``ValueError`` and
    leaves the RNGs as they were."""
    before = get_rng_state()
    try:
        _set_rng_state(state)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as e:
        _set_rng_state(before)
        raise ValueError(f"its RNG state does not restore ({type(e).__name__}: {_one_line(e)})") from e


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(_unb64(state["torch"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def _one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed), at most ``limit`` characters."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _write_error(e: BaseException, what: str, path) -> OSError | None:
    """A write failure as ``OSError(errno, "cannot write WHAT 'PATH': <reason>")``: ``e`` an
    ``OSError`` or safetensors' error wrapping one (``... (os error 28) ...``); None for others."""
    code = e.errno if isinstance(e, OSError) else None
    if code is None:
        m = re.search(r"\(os error (\d+)\)", str(e))
        code = int(m.group(1)) if m else None
    if code is None:
        return None
    return OSError(code, f"cannot write {what} {str(path)!r}: {os.strerror(code)}")


def _write_file(path: Path, data: bytes) -> None:
    """``data`` into a new file at ``path``, flushed to the disk (write errors raise ``OSError``)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, obj) -> None:
    _write_file(path, json.dumps(obj, indent=1).encode())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_weights(model: torch.nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """``model``'s state_dict as safetensors at ``path``, atomically; ``OSError`` naming ``path``
    when it cannot be written (the file there before, if any, is left as it was)."""
    from safetensors.torch import save_model

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    meta = {"format": FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    try:
        save_model(model, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)  # safetensors creates files readable by their owner only
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:  # a full disk, a read-only filesystem, Ctrl-C: no temp file left
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        err = _write_error(e, "weights", path)
        if err is None:
            raise
        raise err from e


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
        raise ValueError(f"cannot load weights {str(path)!r}: {_one_line(e)}") from None
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


def save_checkpoint(run_dir: str | os.PathLike, model, optimizer, trainer_state: dict,
                    carry: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``run_dir/checkpoint/`` atomically (see module docstring); return its path.
    ``carry``: the tensors of a carried state (``carry.safetensors``; None: no file).

    On any failure the previous checkpoint stays (or is put back) in ``checkpoint/`` and
    ``.checkpoint-tmp/`` is removed; a write error is raised as ``OSError`` naming the checkpoint."""
    run_dir = Path(run_dir)
    tmp, old, final = run_dir / _TMP, run_dir / _OLD, run_dir / CHECKPOINT
    step = int(trainer_state["step"])
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_weights(model, tmp / MODEL, {"step": step})
        buf = io.BytesIO()  # serialized in memory: torch.save's own file writer hides the OS error
        torch.save({"format": FORMAT, "step": step, "optimizer": optimizer.state_dict()}, buf)
        _write_file(tmp / OPTIMIZER, buf.getbuffer())
        _write_json(tmp / STATE, {"format": FORMAT, **trainer_state})
        if carry is not None:
            _save_tensors(carry, tmp / CARRY, step)
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException as e:
        if old.exists() and not final.exists():  # stopped between the two renames: the old one back
            with contextlib.suppress(OSError):
                os.replace(old, final)
        shutil.rmtree(tmp, ignore_errors=True)
        err = _write_error(e, "the checkpoint", final)
        if err is None:
            raise
        raise err from e
    shutil.rmtree(old, ignore_errors=True)  # the new one is complete; a leftover is removed by the next save
    return final


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, step: int) -> None:
    from safetensors.torch import save

    # safetensors has no complex128: complex tensors are stored as their real view (..., 2), named in the metadata
    out, complex_keys = {}, []
    for k, v in tensors.items():
        v = v.detach().cpu()
        if v.is_complex():
            complex_keys.append(k)
            v = torch.view_as_real(v)
        out[k] = v.contiguous()
    meta = {"format": FORMAT, "step": str(step), "complex": json.dumps(complex_keys)}
    _write_file(path, save(out, metadata=meta))


def load_carry(ckpt_dir: str | os.PathLike) -> dict[str, torch.Tensor] | None:
    """The carried-state tensors of a checkpoint (``carry.safetensors``), ``{}`` when the state
    was reset there, None when the checkpoint has no such file; a damaged file or one from
    another step raises ``ValueError`` naming it."""
    from safetensors import safe_open

    path = Path(ckpt_dir) / CARRY
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
        for k in json.loads(meta.get("complex", "[]")):
            tensors[k] = torch.view_as_complex(tensors[k])
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"cannot load the carried state {str(path)!r}: {_one_line(e)}") from None
    state = json.loads(_read_bytes(Path(ckpt_dir) / STATE, "checkpoint"))
    if _int_or_none(meta.get("step")) != _int_or_none(state.get("step")):
        raise ValueError(f"{str(path)!r} is from step {meta.get('step')}, the trainer state from {state.get('step')}")
    return tensors


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


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(path.parent)!r} holds no {what} ({path.name} missing)") from None


def _int_or_none(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def load_checkpoint(ckpt_dir: str | os.PathLike, model, optimizer=None, device="cpu", keys=(), rng: bool = False) -> dict:
    """Load weights (and optimizer state) from a checkpoint directory; return trainer_state.

    ``keys``: the trainer-state keys the caller needs (a missing one is refused). ``rng=True``:
    restore the RNG states it holds (and leave them out of the returned dict). A damaged or
    mismatched file raises ``ValueError`` naming it; an unreadable one ``OSError``."""
    ckpt_dir = Path(ckpt_dir)
    state_file, opt_file = ckpt_dir / STATE, ckpt_dir / OPTIMIZER
    text = _read_bytes(state_file, "checkpoint")
    try:
        state = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{str(state_file)!r} is damaged: {getattr(e, 'msg', None) or _one_line(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{str(ckpt_dir)!r}: unknown checkpoint format {found!r}, expected {FORMAT!r}")
    missing = [k for k in ("step", *keys, *(["rng"] if rng else [])) if k not in state]
    if missing or _int_or_none(state["step"]) is None:
        raise ValueError(f"{str(state_file)!r} is damaged: {'no ' + ', '.join(missing) if missing else 'its step is not a number'}")
    step = int(state["step"])
    meta = load_weights(model, ckpt_dir / MODEL, device)
    if _int_or_none(meta.get("step")) != step:
        raise ValueError(f"{str(ckpt_dir)!r}: weights are from step {meta.get('step')}, trainer state from {step}")
    if optimizer is not None:
        data = _read_bytes(opt_file, "optimizer state")
        try:  # weights_only: tensors and plain containers, nothing else is unpickled
            blob = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
        except Exception as e:  # cut off, overwritten, or not a torch.save file
            raise ValueError(f"cannot load optimizer state {str(opt_file)!r}: the file is damaged or was not written "
                             f"by hippos ({type(e).__name__})") from e
        if not (isinstance(blob, dict) and isinstance(blob.get("optimizer"), dict)):
            raise ValueError(f"cannot load optimizer state {str(opt_file)!r}: not a hippos optimizer state")
        if _int_or_none(blob.get("step")) != step:
            raise ValueError(f"{str(ckpt_dir)!r}: optimizer state is from step {blob.get('step')}, trainer state from {step}")
        try:  # a malformed state dict
            saved = _by_names(blob["optimizer"], optimizer, str(ckpt_dir))
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"cannot load optimizer state {str(opt_file)!r}: {type(e).__name__}: {_one_line(e)}") from e
        try:
            optimizer.load_state_dict(saved)
        except (KeyError, TypeError, IndexError, ValueError, RuntimeError) as e:
            raise ValueError(f"cannot load optimizer state {str(opt_file)!r}: {_one_line(e)}") from e
    if rng:
        try:
            set_rng_state(state.pop("rng"))
        except ValueError as e:
            raise ValueError(f"{str(state_file)!r} is damaged: {e}") from e
    return state
