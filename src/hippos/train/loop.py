"""The training loop: read it top to bottom in ``train``.

One run lives in one directory (``out_dir``)::

    config.json          the resolved TrainConfig (written first)
    metrics.csv          step, epoch, split (train / val / test / test_best), loss, acc, lr, samples/s
    curves.png           loss and accuracy against the step, redrawn at epoch ends (at most every
                         PLOT_EVERY_S seconds) and at the end
    checkpoint/          model.safetensors, optimizer.pt, trainer_state.json (see checkpoint.py)
    best.safetensors     weights of the best validation accuracy so far
    results.json         final validation and test numbers
    vocab.json           the CharVocab of a charlm run (decodes what its model writes)
    tb/                  TensorBoard events, when tensorboard is installed

The task decides what a batch is scored on (``hippos.train.objectives``: classification,
last-token accuracy of the synthetic LM tasks, bits per character of charlm) and, for charlm,
the batch order (random windows, ``data.steps_per_epoch`` batches per epoch).

Reproducibility: the global torch / numpy / python RNGs are seeded with ``cfg.seed`` before
the model is built; the order of the training examples in epoch ``e`` is a pure function of
``(seed, e)``; every DataLoader draws its worker seeds from its own generator, not the global
one. A checkpoint stores the step, the position in the epoch and the RNG states, so
``train(cfg, resume=True)`` after a kill continues exactly where the run stood and, on the
same machine and thread count, ends bitwise where the uninterrupted run would have (charlm:
batch ``b`` of the run is a pure function of ``(seed, b)``, so the same holds).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hippos.train import checkpoint as ckpt_io
from hippos.train.config import TrainConfig, save_config, validate
from hippos.train.lm_tasks import VOCAB, write_or_check_vocab
from hippos.train.optim import build_optimizer, lr_factor, set_lr
from hippos.train.plots import plot_curves
from hippos.train.tasks import (
    build_model,
    check_task_model,
    fit_model_config,
    get_task,
    load_dataset,
)

__all__ = ["METRICS_FIELDS", "EpochBatches", "default_out_dir", "epoch_order", "evaluate", "resolve_device", "train"]

METRICS_FIELDS = ("step", "epoch", "split", "loss", "acc", "lr", "samples_per_s", "elapsed_s")
CONFIG, METRICS, CURVES, RESULTS, TB = "config.json", "metrics.csv", "curves.png", "results.json", "tb"
PLOT_EVERY_S = 30.0  # drawing costs ~0.2-1 s: short epochs (the synthetic tasks: ~2 s) must not wait on it
_ARTIFACTS = (CONFIG, METRICS, CURVES, RESULTS, TB, VOCAB, ckpt_io.BEST, ckpt_io.CHECKPOINT, ckpt_io._TMP, ckpt_io._OLD)


# ----------------------------------------------------------------------------- data order


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``range(n)`` used in epoch ``epoch``: a pure function of its arguments."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), 0x5EED])))
    return torch.from_numpy(rng.permutation(n))


class EpochBatches(torch.utils.data.Sampler):
    """Index batches of one epoch, from batch ``start`` on (a resumed epoch skips those done)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.epoch, self.start, self.shuffle = n, batch_size, seed, epoch, start, shuffle

    def __len__(self) -> int:
        return max(0, math.ceil(self.n / self.batch_size) - self.start)

    def __iter__(self):
        order = epoch_order(self.n, self.seed, self.epoch) if self.shuffle else torch.arange(self.n)
        for b in range(self.start, math.ceil(self.n / self.batch_size)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]


def _sampler(ds, cfg: TrainConfig, epoch: int, start: int, train: bool):
    """The index batches of one epoch from batch ``start`` on: the task's own order, else
    ``EpochBatches`` (a permutation per epoch for training, in order for evaluation)."""
    batches = get_task(cfg.task).batches
    if batches is not None:
        return batches(ds, cfg, epoch, start, train)
    return EpochBatches(len(ds), cfg.batch_size, cfg.seed, epoch, start, shuffle=train)


def _loader(ds, cfg: TrainConfig, epoch: int, start: int, shuffle: bool, device: torch.device):
    # batch_size=None: the sampler yields whole index batches and ``ds[indices]`` builds the batch.
    return torch.utils.data.DataLoader(
        ds,
        sampler=_sampler(ds, cfg, epoch, start, shuffle),
        batch_size=None,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch),  # not the global RNG
    )


def _unpack(batch, device: torch.device):
    x, y, *rest = batch
    lengths = rest[0].to(device) if rest else None
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True), lengths


# ----------------------------------------------------------------------------- helpers


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def default_out_dir(task: str) -> str:
    return os.path.join("runs", f"{task}-{time.strftime('%Y%m%d-%H%M%S')}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: torch.nn.Module, ds, cfg: TrainConfig, device: torch.device) -> dict:
    """Mean loss and accuracy of ``model`` over ``ds`` by the task's objective (eval mode; the
    RNGs untouched): ``{"loss", "acc", "n", "samples_per_s"}``, plus ``"bpc"`` for charlm.
    LM tasks: the loss is over all positions, ``acc`` is the last-token accuracy (ar, ih) or the
    next-character accuracy (charlm, over non-overlapping windows)."""
    objective = get_task(cfg.task).objective
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0.0, 0
    t0 = time.perf_counter()
    for batch in _loader(ds, cfg, epoch=0, start=0, shuffle=False, device=device):
        x, y, lengths = _unpack(batch, device)
        r = objective.loss_and_metrics(model, x, y, lengths)
        loss_sum, correct, n = loss_sum + r.loss_sum, correct + r.correct, n + r.n
    model.train(was_training)
    out = objective.summary(loss_sum / max(n, 1), correct / max(n, 1))
    return {**out, "n": n, "samples_per_s": n / (time.perf_counter() - t0)}


class _Metrics:
    """Appends rows to metrics.csv (and TensorBoard); on resume drops rows past the checkpoint."""

    def __init__(self, run_dir: Path, keep_until_step: int | None, tensorboard: bool):
        self.path = run_dir / METRICS
        if keep_until_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until_step and not r["split"].startswith("test")]
            tmp = self.path.with_name(f".{METRICS}.tmp")
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, METRICS_FIELDS)
                w.writeheader()
                w.writerows(rows)
            os.replace(tmp, self.path)
        if not self.path.exists():
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(METRICS_FIELDS)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # tensorboard not installed: CSV and PNG only
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(str(run_dir / TB), purge_step=keep_until_step or None)

    def write(self, step: int, epoch: float, split: str, loss: float, acc: float, lr=None, sps=None, elapsed=None):
        row = [step, f"{epoch:.4f}", split, f"{loss:.6g}", f"{acc:.6g}", "" if lr is None else f"{lr:.6g}",
               "" if sps is None else f"{sps:.1f}", "" if elapsed is None else f"{elapsed:.1f}"]
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)
        if self.tb is not None:
            self.tb.add_scalar(f"{split}/loss", loss, step)
            self.tb.add_scalar(f"{split}/acc", acc, step)
            if lr is not None:
                self.tb.add_scalar("train/lr", lr, step)
            if sps is not None and split == "train":
                self.tb.add_scalar("train/samples_per_s", sps, step)

    def close(self):
        if self.tb is not None:
            self.tb.close()


def _check_fresh_dir(run_dir: Path, force: bool) -> None:
    """Refuse (before anything is written) an out_dir that holds something else."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ValueError(f"out_dir {str(run_dir)!r} is a file")
    entries = list(run_dir.iterdir())
    if not entries:
        return
    if not (run_dir / CONFIG).exists():
        raise ValueError(f"out_dir {str(run_dir)!r} is not empty and holds no hippos run; choose another out_dir")
    foreign = [e.name for e in entries if e.name not in _ARTIFACTS]
    if not force:
        raise ValueError(
            f"out_dir {str(run_dir)!r} already holds a run; pass --resume {run_dir} to continue it or --force to start over"
        )
    if foreign:
        raise ValueError(f"out_dir {str(run_dir)!r} holds files that are not part of a run ({', '.join(sorted(foreign)[:3])}); not removing them")


def _clear_run(run_dir: Path) -> None:
    for name in _ARTIFACTS:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _log(msg: str, progress: bool, log=None) -> None:
    if log is not None:
        log(msg)
        return
    if progress:
        try:
            from tqdm.auto import tqdm

            tqdm.write(msg, file=sys.stdout)
            return
        except ImportError:
            pass
    print(msg, flush=True)


def _bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True, file=sys.stderr)


def _fresh_state() -> dict:
    return {
        "step": 0,
        "epoch": 0,  # epochs completed
        "batch_in_epoch": 0,  # batches of the current epoch done
        "best_val_acc": None,
        "best_val_loss": None,
        "best_step": None,
        "epoch_sums": [0.0, 0, 0],  # loss·n, correct, n over the current epoch
        "window_sums": [0.0, 0, 0],  # the same since the last train row of metrics.csv
        "elapsed_s": 0.0,  # training wall time so far, over all sessions of the run
    }


# ----------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, *, resume: bool = False, force: bool = False, progress: bool = True, log=None,
          on_epoch=None) -> dict:
    """Train ``cfg`` into ``cfg.out_dir`` (or resume the run there); return the results dict.

    Everything that can fail on bad input (config values, the task, data files, the model
    config, the out_dir) is checked before the first file is written. ``log(msg)`` replaces
    printing the progress lines; ``on_epoch(info)`` is called after each epoch's validation
    with ``{"epoch", "epochs", "step", "train": {...}, "val": {...}, "elapsed_s"}``.
    """
    cfg = validate(copy.deepcopy(cfg))
    check_task_model(cfg)
    objective = get_task(cfg.task).objective
    device = resolve_device(cfg.device)
    threads_before = torch.get_num_threads()
    try:
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        return _train(cfg, objective, device, resume, force, progress, log, on_epoch)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: TrainConfig, objective, device, resume: bool, force: bool, progress: bool, log, on_epoch) -> dict:
    if not cfg.out_dir:
        cfg.out_dir = default_out_dir(cfg.task)
    run_dir = Path(cfg.out_dir)
    found = None
    if resume:
        found = ckpt_io.find_checkpoint(run_dir)
        if found is None:
            raise FileNotFoundError(f"{str(run_dir)!r} holds no checkpoint to resume from")
    else:
        _check_fresh_dir(run_dir, force)

    # 1. data and model (seeded: the model's init is a function of cfg.seed)
    seed_everything(cfg.seed)
    train_ds, val_ds, test_ds = (load_dataset(cfg, split) for split in ("train", "val", "test"))
    cfg = fit_model_config(cfg, train_ds)
    model = build_model(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay)
    steps_per_epoch = len(_sampler(train_ds, cfg, epoch=0, start=0, train=True))
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = cfg.warmup_steps or round(cfg.warmup_fraction * total_steps)
    vocab = getattr(train_ds, "vocab", None)

    # 2. the run directory: a fresh one, or the state of the checkpoint
    if resume:
        write_or_check_vocab(run_dir, vocab, resume=True)
        state = ckpt_io.load_checkpoint(found, model, optimizer, device)
        ckpt_io.set_rng_state(state.pop("rng"))
        state.pop("format", None)
    else:
        if force:
            _clear_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_or_check_vocab(run_dir, vocab, resume=False)
        state = _fresh_state()
    save_config(cfg, run_dir / CONFIG)
    metrics = _Metrics(run_dir, state["step"] if resume else None, cfg.tensorboard)
    n_params = sum(p.numel() for p in model.parameters())
    _log(
        f"{'resuming' if resume else 'training'} {cfg.task}: {n_params:,} parameters, {len(train_ds)} train / "
        f"{len(val_ds)} val / {len(test_ds)} test, {steps_per_epoch} steps per epoch x {cfg.epochs} epochs, "
        f"{'at step ' + str(state['step']) + ', ' if resume else ''}device {device}, run in {run_dir}",
        progress,
        log,
    )

    def save():
        ckpt_io.save_checkpoint(run_dir, model, optimizer, {**state, "rng": ckpt_io.get_rng_state()})

    def validate_now(epoch_float: float) -> dict:
        val = evaluate(model, val_ds, cfg, device)
        metrics.write(state["step"], epoch_float, "val", val["loss"], val["acc"], sps=val["samples_per_s"], elapsed=state["elapsed_s"])
        if objective.better(val, state["best_val_acc"], state["best_val_loss"]):  # accuracy then loss; bpc: loss
            state["best_val_acc"], state["best_val_loss"], state["best_step"] = val["acc"], val["loss"], state["step"]
            ckpt_io.save_weights(model, run_dir / ckpt_io.BEST, {"step": state["step"], "val_acc": val["acc"]})
        return val

    # 3. epochs of steps
    stopped = False
    last_plot = -math.inf
    session_t0 = time.perf_counter()
    elapsed_at_start = state["elapsed_s"]
    try:
        while state["epoch"] < cfg.epochs and not stopped:
            epoch = state["epoch"]
            bar = _bar(steps_per_epoch, state["batch_in_epoch"], f"epoch {epoch + 1}/{cfg.epochs}", progress)
            model.train()
            t_window, n_window = time.perf_counter(), 0
            for batch in _loader(train_ds, cfg, epoch, state["batch_in_epoch"], True, device):
                x, y, lengths = _unpack(batch, device)
                lr = set_lr(optimizer, lr_factor(state["step"], total_steps, warmup_steps, cfg.min_lr_ratio, cfg.schedule))
                r = objective.loss_and_metrics(model, x, y, lengths)
                loss = r.loss
                if not torch.isfinite(loss):
                    raise ValueError(
                        f"training diverged: loss {loss.item()} at step {state['step'] + 1} (try a lower lr or grad_clip)"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()

                b, loss_b, correct_b = r.n, r.loss_sum, r.correct
                for sums in (state["epoch_sums"], state["window_sums"]):
                    sums[0] += loss_b
                    sums[1] += correct_b
                    sums[2] += b
                state["step"] += 1
                state["batch_in_epoch"] += 1
                state["elapsed_s"] = elapsed_at_start + time.perf_counter() - session_t0
                n_window += b
                step, epoch_float = state["step"], epoch + state["batch_in_epoch"] / steps_per_epoch
                sps = n_window / max(time.perf_counter() - t_window, 1e-9)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_b / b:.3f}", lr=f"{lr:.2e}", samples_per_s=f"{sps:.0f}", refresh=False)
                if step % cfg.log_every == 0:
                    wl, wc, wn = state["window_sums"]
                    metrics.write(step, epoch_float, "train", wl / wn, wc / wn, lr, sps, state["elapsed_s"])
                    state["window_sums"] = [0.0, 0, 0]
                    t_window, n_window = time.perf_counter(), 0
                end_of_epoch = state["batch_in_epoch"] == steps_per_epoch
                if cfg.eval_every and step % cfg.eval_every == 0 and not end_of_epoch:
                    validate_now(epoch_float)
                stopped = cfg.max_steps is not None and step >= cfg.max_steps
                if end_of_epoch:
                    break
                if stopped or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                    save()
                if stopped:
                    break
            if bar is not None:
                bar.close()

            if state["batch_in_epoch"] == steps_per_epoch:  # end of an epoch: validate, checkpoint, plot
                el, ec, en = state["epoch_sums"]
                val = validate_now(epoch + 1.0)
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
                state["epoch_sums"] = [0.0, 0, 0]
                save()
                if time.perf_counter() - last_plot >= PLOT_EVERY_S:  # the last one is drawn after the test
                    plot_curves(run_dir / METRICS, run_dir / CURVES, title=f"{cfg.task} ({run_dir.name})")
                    last_plot = time.perf_counter()
                train_m = objective.summary(el / en, ec / en)
                _log(
                    f"epoch {state['epoch']}/{cfg.epochs}  step {state['step']}  train {objective.describe(train_m)}  "
                    f"val {objective.describe(val)}  ({state['elapsed_s']:.0f} s)",
                    progress,
                    log,
                )
                if on_epoch is not None:
                    on_epoch({"epoch": state["epoch"], "epochs": cfg.epochs, "step": state["step"], "train": train_m,
                              "val": val, "elapsed_s": state["elapsed_s"]})
                stopped = stopped or (cfg.max_steps is not None and state["step"] >= cfg.max_steps)
    finally:
        metrics.close()

    results = {
        "task": cfg.task,
        "run_dir": str(run_dir),
        "step": state["step"],
        "epoch": state["epoch"],
        "complete": state["epoch"] >= cfg.epochs,
        "best_val_acc": state["best_val_acc"],
        "best_step": state["best_step"],
        "train_time_s": round(state["elapsed_s"], 1),
        "n_params": n_params,
    }
    if objective.metric == "bpc" and state["best_val_loss"] is not None:
        results["best_val_bpc"] = objective.summary(state["best_val_loss"], 0.0)["bpc"]
    if not results["complete"]:
        _log(f"stopped at step {state['step']} (max_steps); continue with: hippos train --resume {run_dir}", progress, log)
        return results

    # 4. test: the final weights, then the weights of the best validation accuracy
    test = evaluate(model, test_ds, cfg, device)
    results["test_loss"], results["test_acc"] = test["loss"], test["acc"]
    if "bpc" in test:
        results["test_bpc"] = test["bpc"]
    with open(run_dir / METRICS, "a", newline="") as f:
        csv.writer(f).writerow([state["step"], f"{state['epoch']:.4f}", "test", f"{test['loss']:.6g}", f"{test['acc']:.6g}", "", "", ""])
    if (run_dir / ckpt_io.BEST).exists() and state["best_step"] != state["step"]:
        ckpt_io.load_weights(model, run_dir / ckpt_io.BEST, device)
        best = evaluate(model, test_ds, cfg, device)
        results["test_acc_best_val"] = best["acc"]
        if "bpc" in best:
            results["test_bpc_best_val"] = best["bpc"]
        with open(run_dir / METRICS, "a", newline="") as f:
            csv.writer(f).writerow([state["best_step"], "", "test_best", f"{best['loss']:.6g}", f"{best['acc']:.6g}", "", "", ""])
    else:
        results["test_acc_best_val"] = test["acc"]
        if "bpc" in test:
            results["test_bpc_best_val"] = test["bpc"]
    (run_dir / RESULTS).write_text(json.dumps(results, indent=2) + "\n")
    plot_curves(run_dir / METRICS, run_dir / CURVES, title=f"{cfg.task} ({run_dir.name})")
    if objective.metric == "bpc":
        headline = f"{results['test_bpc']:.4f} bpc (final weights), {results['test_bpc_best_val']:.4f} bpc"
    else:
        headline = f"{100 * results['test_acc']:.2f}% (final weights), {100 * results['test_acc_best_val']:.2f}%"
    _log(
        f"done: test {headline} (best val, step {state['best_step']}); {state['elapsed_s']:.0f} s of training; "
        f"run in {run_dir}",
        progress,
        log,
    )
    return results
