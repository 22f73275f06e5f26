"""What a task optimizes and reports: ``loss_and_metrics(model, x, y, lengths) -> BatchResult``.

Every model returns ``(out, state)``; the objectives read ``out``. Four objectives, one contract:

* ``CLASSIFICATION``: ``model(x, lengths=...) -> (logits r(B C), _)``, cross-entropy against
  ``y: i64(B)``; ``acc`` is the fraction of correct classes.
* ``LAST_TOKEN``: a language model, ``model(tokens) -> (logits r(B L V), state)``; the loss is
  the cross-entropy over **all** positions (H3 arXiv 2212.14052 §3.1, the synthetic setups);
  ``acc`` reads the **last** position only (the H3 Table 2 metric, ``last_token_accuracy``).
* ``BITS_PER_CHAR``: the same loss over all positions; the reported metric is the loss in bits
  (``bpc = loss / ln 2``, lower is better) and ``acc`` is the next-character accuracy over all
  positions.

A batch's numbers come back as sums (``loss_sum = loss · n``, ``correct``) over ``n``
examples, so a trainer adds them across batches. For the language models every example of a
batch has the same length, so the mean of per-batch means weighted by ``n`` is the mean over
all tokens. ``correct`` may be fractional (``BITS_PER_CHAR`` counts an example's correct
fraction of characters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["BITS_PER_CHAR", "CLASSIFICATION", "LAST_TOKEN", "REGRESSION", "BatchResult", "Objective", "constant_answer_acc",
           "constant_answer_line"]


class BatchResult(NamedTuple):
    loss: torch.Tensor  # mean loss of the batch (with its graph, for backward)
    loss_sum: float  # loss · n
    correct: float  # examples counted correct (fractional for per-token accuracy)
    n: int  # examples in the batch
    state: object = None  # the model's state after the batch (only when asked with carry=True)


@dataclass(frozen=True)
class Objective:
    """``kind``: ``"classification"``, ``"last_token"``, ``"per_token"`` or ``"regression"``;
    ``metric``: the headline number (``"acc"``, higher is better; ``"bpc"`` or ``"loss"``, lower
    is better)."""

    kind: str
    metric: str

    def loss_and_metrics(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lengths=None, *,
                         state=None, carry: bool = False) -> BatchResult:
        """Forward ``x`` and score it against ``y`` (see the module docstring). ``carry``: a
        language model starts from ``state`` (None: from zero) and the result holds its state
        after the batch (``hippos.train.carry``)."""
        if carry and self.kind not in ("last_token", "per_token"):
            raise ValueError(f"only language models carry a state between batches, not a {self.kind} objective")
        if self.kind == "classification":
            logits, _ = model(x) if lengths is None else model(x, lengths=lengths)
            logits = logits.float()  # (B, C)
            loss = F.cross_entropy(logits, y)
            correct = (logits.argmax(-1) == y).sum().item()
            if not torch.is_grad_enabled():  # evaluation: the exact sum, as the trainer always reported it
                return BatchResult(loss, F.cross_entropy(logits, y, reduction="sum").item(), correct, len(y))
        elif self.kind == "regression":
            pred, _ = model(x)
            loss = F.mse_loss(pred.float(), y.float())  # every position and variable
            correct = 0.0
        else:
            logits, state = model(x, state, return_state=True) if carry else (model(x)[0], None)
            logits = logits.float()  # (B, L, V)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())  # every position
            if self.kind == "last_token":
                correct = (logits[:, -1].argmax(-1) == y[:, -1]).sum().item()
            else:
                correct = (logits.argmax(-1) == y).float().mean(1).sum().item()
        n = len(y)
        return BatchResult(loss, loss.item() * n, correct, n, state if carry else None)

    def summary(self, loss: float, acc: float) -> dict:
        """The numbers to report for a mean loss and accuracy: ``{"loss", "acc"}`` (+ ``"bpc"``)."""
        out = {"loss": loss, "acc": None if self.metric == "loss" else acc}
        if self.metric == "bpc":
            out["bpc"] = loss / math.log(2)
        return out

    def describe(self, m: dict) -> str:
        """One human phrase for a summary: ``loss 0.1234 acc 98.20%`` or ``bpc 1.874 (loss 1.2990)``."""
        if self.metric == "bpc":
            return f"bpc {m['bpc']:.4f} (loss {m['loss']:.4f}, char acc {100 * m['acc']:.2f}%)"
        if self.metric == "loss":
            return f"mse {m['loss']:.5f}"
        what = "last-token acc" if self.kind == "last_token" else "acc"
        return f"loss {m['loss']:.4f} {what} {100 * m['acc']:.2f}%"

    def better(self, m: dict, best_acc: float | None, best_loss: float | None) -> bool:
        """Is validation summary ``m`` better than the best so far? ``acc`` then loss; bpc: loss alone."""
        if best_loss is None:
            return True
        if self.metric in ("bpc", "loss"):
            return m["loss"] < best_loss
        return (m["acc"], -m["loss"]) > (best_acc, -best_loss)


CLASSIFICATION = Objective("classification", "acc")
LAST_TOKEN = Objective("last_token", "acc")
BITS_PER_CHAR = Objective("per_token", "bpc")
REGRESSION = Objective("regression", "loss")


def constant_answer_acc(ds) -> float | None:
    """The accuracy of always answering a classification dataset's commonest label: the floor a
    trained model must beat (50% on a balanced binary task; 17% on ListOps). Read from the
    dataset's labels, ``ds.y`` or ``ds.labels`` (one integer per example); None for a dataset
    that keeps them otherwise or is empty."""
    for name in ("y", "labels"):
        y = getattr(ds, name, None)
        if y is None:
            continue
        y = torch.as_tensor(y)
        if y.ndim != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or not 0 < len(y) == len(ds):
            return None
        _, counts = torch.unique(y, return_counts=True)
        return counts.max().item() / len(y)
    return None


def constant_answer_line(floors: dict[str, float]) -> str:
    """The log line of :func:`constant_answer_acc` per split: ``{"val": 0.5046, "test": 0.5052}`` ->
    ``a constant answer (the commonest label) scores 50.46% on val, 50.52% on test``."""
    return "a constant answer (the commonest label) scores " + ", ".join(
        f"{100 * acc:.2f}% on {split}" for split, acc in floors.items())
