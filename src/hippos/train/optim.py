"""AdamW with parameter groups, and the learning-rate schedule (linear warmup, then cosine,
linear or constant).

The S4 papers (arXiv 2111.00396 §4, 2206.11893) train the SSM parameters (A, B, Δ, and P of
DPLR) at a smaller learning rate (≤ 1e-3) without weight decay; layers mark such a parameter
with the hint ``param._optim = {"lr": ..., "weight_decay": 0.0}``. Here (the one place the SSM
rate is decided):

* a hinted parameter whose hint lr is ``None`` (or absent: not set by the user) gets
  ``min(base lr, SSM_LR_DEFAULT)``, ``SSM_LR_DEFAULT = 1e-3`` (the papers' setting); a hint lr
  that is a number is used exactly as given (no cap: ``--model.ssm_lr=4e-3`` means 4e-3). Either
  way the hint's weight decay (default 0);
* biases, norm weights and every other parameter with fewer than 2 dimensions get no weight
  decay;
* the rest get the base learning rate and weight decay.

Each group remembers its peak rate as ``group["initial_lr"]``; ``set_lr`` scales all of them
by the schedule factor of the current step, so the schedule is a pure function of the step.
"""

from __future__ import annotations

import math

import torch

__all__ = ["SSM_LR_DEFAULT", "build_optimizer", "lr_factor", "param_groups", "set_lr"]

#: Learning rate of the SSM parameters whose hint leaves it unset: ``min(base lr, SSM_LR_DEFAULT)``.
SSM_LR_DEFAULT = 1e-3

_NORMS = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase)
if hasattr(torch.nn, "RMSNorm"):
    _NORMS = _NORMS + (torch.nn.RMSNorm,)


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Parameter groups for ``torch.optim.AdamW``; every trainable parameter in exactly one.

    Groups are keyed by ``(lr, weight_decay)`` and named (``"name"``) for logging; their
    order and membership depend only on the model, so an optimizer state saved from one run
    loads into another built the same way.
    """
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    groups: dict[tuple[float, float], dict] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        hint = getattr(p, "_optim", None)
        if hint is not None:
            if not isinstance(hint, dict):
                raise TypeError(f"parameter {name!r}: _optim must be a dict, got {type(hint).__name__}")
            g_lr = _ssm_lr(name, hint.get("lr"), lr)
            g_wd = float(hint.get("weight_decay", 0.0))
            label = "ssm"
        elif p.dim() < 2 or id(p) in norm_params:
            g_lr, g_wd, label = lr, 0.0, "no_decay"
        else:
            g_lr, g_wd, label = lr, weight_decay, "decay"
        key = (g_lr, g_wd)
        if key not in groups:
            groups[key] = {"params": [], "lr": g_lr, "initial_lr": g_lr, "weight_decay": g_wd, "name": label, "param_names": []}
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return list(groups.values())


def _ssm_lr(name: str, hint_lr, lr: float) -> float:
    """The SSM rule: ``None`` -> ``min(lr, SSM_LR_DEFAULT)``; a finite number > 0 -> itself."""
    if hint_lr is None:
        return min(lr, SSM_LR_DEFAULT)
    if isinstance(hint_lr, bool) or not isinstance(hint_lr, (int, float)) or not math.isfinite(hint_lr) or hint_lr <= 0:
        raise ValueError(f"parameter {name!r}: _optim lr must be None or a finite number > 0, got {hint_lr!r}")
    return float(hint_lr)


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``param_groups(model, lr, weight_decay)`` (betas 0.9, 0.999)."""
    groups = param_groups(model, lr, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0, schedule: str = "cosine") -> float:
    """Multiplier of the peak learning rate for optimizer step ``step`` (0-based).

    Warmup: ``(step + 1) / (warmup_steps + 1)`` for ``step < warmup_steps``, so the first
    step already moves. Then, with ``p = (step - warmup) / (total - warmup)`` (capped at 1),
    from 1 at ``step = warmup_steps`` down to ``min_ratio`` at ``step = total_steps``:

    * ``"cosine"``: ``min_ratio + (1 - min_ratio) · ½ (1 + cos(π p))``;
    * ``"linear"``: ``min_ratio + (1 - min_ratio) · (1 - p)``;
    * ``"constant"``: 1 (no decay).
    """
    if schedule not in ("cosine", "linear", "constant"):
        raise ValueError(f"schedule must be 'cosine', 'linear' or 'constant', got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = total_steps - warmup_steps
    if span <= 0 or schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "linear":
        return min_ratio + (1.0 - min_ratio) * (1.0 - progress)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's ``lr`` to ``initial_lr · factor``; return the base (largest) one."""
    top = 0.0
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor
        top = max(top, g["lr"])
    return top
