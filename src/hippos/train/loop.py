"""The training loop: ``train(cfg, model=None)``, read top to bottom.

1. the task (looked up once), the data, the model, the optimizer and the schedule;
2. the run directory (``RunDir``: locked for the whole run), fresh or from its checkpoint;
3. epochs of steps: forward/backward, a row of ``metrics.csv`` every ``log_every`` steps,
   validation (each epoch, and every ``eval_every`` steps), a checkpoint each epoch (and every
   ``checkpoint_every`` steps, and at ``max_steps``);
4. the test: the final weights, then the best-validation weights; ``results.json``, ``curves.png``.

Stopping: ``max_steps``, or Ctrl-C (SIGINT): the first one lets the current step finish, writes a
checkpoint there and raises ``KeyboardInterrupt`` (the CLI exits with code 130); a second one
stops at once and the last checkpoint stands. Either way the ``--resume`` command is printed.
Without a progress bar (stderr not a terminal) a line of progress is printed every
``PROGRESS_EVERY_S`` seconds besides the line of each epoch.

The task decides everything task-specific (``hippos.train.task``): the data and the batch
order, the model, the objective, the run's artifacts, extra metrics, and whether a state is
carried from batch to batch (``task.state_carry``: truncated BPTT for the language models with
``data.carry_state``; the carried state is checkpointed with the rest, ``hippos.train.carry``).

Reproducibility: the global torch / numpy / python RNGs are seeded with ``cfg.seed`` before
the model is built; the order of the training examples in epoch ``e`` is a pure function of
``(seed, e)``; every DataLoader draws its worker seeds from its own generator, not the global
one. A checkpoint stores the step, the position in the epoch and the RNG states, so
``train(cfg, resume=True)`` after a kill continues exactly where the run stood and, on the
same machine and thread count, ends bitwise where the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import signal
import sys
import threading
import time

import numpy as np
import torch

from hippos.train import checkpoint as ckpt_io
from hippos.train.config import TrainConfig, absolute_paths, validate
from hippos.train.cpu_share import machine_hint
from hippos.train.distributed import (
    SINGLE,
    Dist,
    all_sum,
    barrier,
    from_env,
    gather_rows,
    loss_scale,
    shard,
    shutdown,
)
from hippos.train.heap import HeapTrimmer
from hippos.train.metrics import METRICS_FIELDS, MetricsLog
from hippos.train.objectives import constant_answer_acc, constant_answer_line
from hippos.train.optim import build_optimizer, lr_factor, set_lr
from hippos.train.plots import plot_curves
from hippos.train.precision import autocast, grad_scaler
from hippos.train.registry import get_task, import_task_module
from hippos.train.rundir import RunDir, init_weights_file
from hippos.train.task import EpochBatches, Task, epoch_order

__all__ = ["METRICS_FIELDS", "EpochBatches", "default_out_dir", "epoch_order", "evaluate", "resolve_device",
           "seed_everything", "train"]

PLOT_EVERY_S = 30.0  # drawing costs ~0.2-1 s: short epochs (the synthetic tasks: ~2 s) must not wait on it
MAX_BAD_GRADS = 10  # non-finite gradients in a row (each update skipped) before a run is stopped as diverged
PROGRESS_EVERY_S = 10.0  # without a progress bar: a line of progress at most this often (0: none)


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


def resolve_task(cfg: TrainConfig) -> Task:
    """The config's task, importing its ``task_module`` first when it names one. A task
    registered from Python without one gets the module that defines it recorded (so that the
    CLI finds it again), unless that module is a script being run (``__main__``)."""
    if cfg.task_module:
        cfg.task_module = import_task_module(cfg.task_module)
    task = get_task(cfg.task)
    module = type(task).__module__
    if not cfg.task_module and not module.startswith("hippos.") and module != "__main__":
        cfg.task_module = module
    return task


@contextlib.contextmanager
def threads(n: int):
    """``torch.set_num_threads(n)`` for the block (n = 0: unchanged), restored after."""
    before = torch.get_num_threads()
    try:
        if n:
            torch.set_num_threads(n)
        yield
    finally:
        torch.set_num_threads(before)


class _Shares(torch.utils.data.Sampler):
    """This rank's share of every index batch of ``sampler`` (``hippos.train.distributed.shard``)."""

    def __init__(self, sampler, d: Dist):
        self.sampler, self.d = sampler, d

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for idx in self.sampler:
            mine = shard(torch.as_tensor(idx), self.d)
            if len(mine):  # empty only for an evaluation batch smaller than the job (training checks)
                yield mine

    def __getattr__(self, name):  # resets_at and the rest of the sampler's own interface
        if name == "sampler":
            raise AttributeError(name)
        return getattr(self.sampler, name)


def _loader(ds, sampler, cfg: TrainConfig, epoch: int, device: torch.device, d: Dist = SINGLE):
    # batch_size=None: the sampler yields whole index batches and ``ds[indices]`` builds the batch.
    if d.active:
        sampler = _Shares(sampler, d)
    return torch.utils.data.DataLoader(
        ds,
        sampler=sampler,
        batch_size=None,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch),  # not the global RNG
    )


def _unpack(batch, device: torch.device):
    x, y, *rest = batch
    lengths = rest[0].to(device) if rest else None
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True), lengths


def line_printer(progress: bool, log=None):
    """``say(line)``: to ``log`` when given, else above a tqdm bar (``progress``), else stdout."""
    def say(msg: str) -> None:
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

    return say


def _bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True, file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """The run stopped on SIGTERM (a scheduler's preemption, ``kill``), with a checkpoint: exit 143."""


class _StopOnCtrlC:
    """From ``install()`` to ``restore()``, the first Ctrl-C (SIGINT) or SIGTERM (``kill PID``, a
    job scheduler's preemption) only sets ``requested``: the loop finishes the step, writes a
    checkpoint and stops. A second Ctrl-C raises ``KeyboardInterrupt`` at once; a second SIGTERM
    ends the process at once. Installed only in the main thread and over the default handlers (a
    handler of the caller's, or a signal ignored, e.g. SIGINT in a background job, is left alone)."""

    def __init__(self):
        self.requested = False
        self.signal = None  # "SIGINT" or "SIGTERM", the one that asked
        self._before = {}

    @classmethod
    def install(cls) -> _StopOnCtrlC:
        self = cls()
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._before[signal.SIGINT] = signal.signal(signal.SIGINT, self._handle)
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self._before[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.signal = self.signal or signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            note = b"\nstopping after this step, with a checkpoint (Ctrl-C again: at once, without)\n"
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            note = b"\nSIGTERM: stopping after this step, with a checkpoint (a second SIGTERM: at once, without)\n"
        with contextlib.suppress(OSError, ValueError):  # os.write: safe inside a signal handler, unlike print
            os.write(sys.stderr.fileno(), note)

    def restore(self) -> None:
        for signum, before in self._before.items():
            signal.signal(signum, before)
        self._before = {}


class _NoMetrics:
    """The metrics log of a rank other than 0 (rank 0 alone writes the run directory)."""

    def write(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _accumulate(trained, objective, x, y, lengths, cfg: TrainConfig, d: Dist, device, scaler, state, carry=None) -> tuple:
    """Forward and backward of this rank's share of the batch in ``cfg.accumulate`` micro-batches
    (rows split evenly), each loss weighted ``rows_j · world / rows_global`` so that the gradients
    add up (over micro-batches here, over ranks in DDP's average) to the gradient of the global
    batch's mean loss (exact when an objective's count is proportional to rows, as every built-in
    one is). DDP synchronizes on the last micro-batch only. Returns the global batch's
    ``(loss_sum, correct, n, next_state)``: ``next_state`` the model's state after the rows when a
    state is carried (``carry``: one micro-batch, this rank's streams), else None; a non-finite
    loss on any rank stops the run on every rank."""
    chunks = [c for c in torch.tensor_split(torch.arange(x.shape[0], device=x.device), cfg.accumulate) if len(c)]
    row_weight = loss_scale(x.shape[0], d, device) / x.shape[0]  # world / rows_global
    sums = [0.0, 0.0, 0.0, 0.0]  # loss_sum, correct, n, non-finite losses
    for j, rows in enumerate(chunks):
        sync = j == len(chunks) - 1 or not d.active
        with (contextlib.nullcontext() if sync else trained.no_sync()), autocast(cfg.precision, device):
            if carry is None:
                r = objective.loss_and_metrics(trained, x[rows], y[rows], None if lengths is None else lengths[rows])
            else:  # accumulate == 1: rows is the whole share
                r = objective.loss_and_metrics(trained, x, y, lengths, state=carry.state, carry=True)
        scaler.scale(r.loss * (len(rows) * row_weight)).backward()  # every rank, even a NaN: DDP's all-reduce
        sums = [sums[0] + r.loss_sum, sums[1] + r.correct, sums[2] + r.n, sums[3] + (not bool(torch.isfinite(r.loss)))]
    loss_sum, correct, n, bad = all_sum(sums, d, device)
    if bad:
        raise ValueError(f"training diverged: a non-finite loss at step {state['step'] + 1} (try a lower lr or grad_clip)")
    return loss_sum, correct, (int(n) if float(n).is_integer() else n), r.state


def _time_to_save(cfg: TrainConfig, t_saved: float, d: Dist, device) -> bool:
    """``checkpoint_minutes`` have passed since the last checkpoint (rank 0's clock decides for all:
    a checkpoint is a collective when the carried state is gathered)."""
    if not cfg.checkpoint_minutes:
        return False
    due = time.perf_counter() - t_saved >= 60 * cfg.checkpoint_minutes
    if d.active:
        due = all_sum([due if d.main else 0], d, device)[0] > 0
    return due


def _check_shares(task: Task, data, cfg: TrainConfig, d: Dist) -> None:
    """Refuse, before anything is written, what several processes cannot do (yet)."""
    smallest = min((len(b) for b in task.batches(data.train, cfg, 0, 0, True)), default=0)
    if smallest < d.world:
        raise ValueError(f"a training batch of {smallest} examples cannot be shared by {d.world} processes "
                         f"(batch_size={cfg.batch_size} is the global batch; with {len(data.train)} examples the last "
                         "batch of an epoch is the remainder): choose batch_size so that every batch has at least "
                         "one example per process")


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


@torch.no_grad()
def evaluate(model: torch.nn.Module, ds, cfg: TrainConfig, device: torch.device, task: Task | None = None,
             d: Dist = SINGLE) -> dict:
    """Mean loss and metric of ``model`` over ``ds`` by the task's objective (eval mode; the RNGs
    untouched): ``{"loss", "acc", "n", "samples_per_s"}`` (+ ``"bpc"`` for charlm; ``acc`` None
    for regression)."""
    task = task or get_task(cfg.task)
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0.0, 0
    t0 = time.perf_counter()
    for batch in _loader(ds, task.batches(ds, cfg, 0, 0, False), cfg, 0, device, d):  # this rank's share
        x, y, lengths = _unpack(batch, device)
        with autocast(cfg.precision, device):
            r = task.objective.loss_and_metrics(model, x, y, lengths)
        loss_sum, correct, n = loss_sum + r.loss_sum, correct + r.correct, n + r.n
    loss_sum, correct, n = all_sum([loss_sum, correct, n], d, device)  # the whole split, every rank
    n = int(n)
    model.train(was_training)
    out = task.objective.summary(loss_sum / max(n, 1), correct / max(n, 1))
    return {**out, "n": n, "samples_per_s": n / (time.perf_counter() - t0)}


# ----------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, *, model: torch.nn.Module | None = None, resume: bool = False, force: bool = False,
          progress: bool = True, log=None, on_epoch=None) -> dict:
    """Train ``cfg`` into ``cfg.out_dir`` (or resume the run there); return the results dict.

    ``model``: train this module instead of the one the task builds from ``cfg.model`` (it must
    return ``(out, state)`` like hippos models; pass the same kind of module again on resume).
    Everything that can fail on bad input (config values, the task, data files, the model
    config, the out_dir) is checked before the first file is written. ``log(msg)`` replaces
    printing the progress lines; ``on_epoch(info)`` is called after each epoch's validation
    with ``{"epoch", "epochs", "step", "train": {...}, "val": {...}, "elapsed_s"}``.

    Ctrl-C (in the main thread) stops after the current step with a checkpoint, prints the
    ``--resume`` command and raises ``KeyboardInterrupt``. A checkpoint that cannot be written
    (full disk, read-only filesystem) raises ``OSError`` naming it; the previous one is kept.
    """
    cfg = validate(copy.deepcopy(cfg))
    task = resolve_task(cfg)
    task.check(cfg)
    d, device_name = from_env(cfg.device, cfg.dist_backend)  # under torchrun: this rank; else SINGLE
    device = resolve_device(device_name)
    say = line_printer(progress and d.main, log) if d.main else (lambda msg: None)  # rank 0 alone speaks
    if type(task).__module__ == "__main__" and not cfg.task_module:
        say(f"note: task {cfg.task!r} is defined in the script being run: `hippos eval` and `--resume` of this run "
            "need --task-module SCRIPT.py (or register it in a module of its own)")
    finished = False
    try:
        with threads(cfg.num_threads):
            results = _train(cfg, task, model, device, resume, force, say, progress and d.main, on_epoch, d)
        finished = True
        return results
    finally:
        shutdown(d, finished)


def _train(cfg: TrainConfig, task: Task, model, device, resume: bool, force: bool, say, progress: bool, on_epoch,
           d: Dist = SINGLE) -> dict:
    if not resume:
        cfg = absolute_paths(cfg)  # config.json finds the data from any directory
    run = RunDir(cfg.out_dir or default_out_dir(cfg.task))
    cfg.out_dir = str(run.path)
    found = run.checkpoint() if resume else None
    if resume and found is None:
        raise FileNotFoundError(f"{str(run.path)!r} holds no checkpoint to resume from")
    if not resume:
        run.check_fresh(force)  # read-only: fail before loading anything
    # the weights a fresh run starts from (a resumed run's come from its checkpoint), found before the data loads
    init_file = init_weights_file(cfg.init_path) if cfg.init_path and not resume else None

    # 1. data, model, optimizer, schedule (seeded: the model's init is a function of cfg.seed)
    seed_everything(cfg.seed)
    data = task.load_data(cfg)
    cfg = task.fit_config(cfg, data)
    model = (task.build_model(cfg) if model is None else model).to(device)
    if init_file is not None:
        ckpt_io.load_weights(model, init_file, device)
        say(f"initialized from {init_file}")
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay)
    carry = task.state_carry(cfg)  # None, or the state carried between windows (hippos.train.carry)
    if carry is not None and cfg.accumulate > 1:
        raise ValueError("accumulate > 1 does not go with data.carry_state=true (the carried state is per row of the "
                         "whole batch): use accumulate=1")
    if d.active:
        _check_shares(task, data, cfg, d)
    steps_per_epoch = len(task.batches(data.train, cfg, 0, 0, True))
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = cfg.warmup_steps or round(cfg.warmup_fraction * total_steps)

    # 2. the run directory, locked while we write it (rank 0 alone writes it): a fresh run, or the
    # state of the checkpoint
    barrier(d)  # every rank has checked the directory before rank 0 writes into it
    created = not run.path.exists()
    if d.main:
        run.lock()
    try:
        if resume:
            run.check_artifacts(data.artifacts)
            state = ckpt_io.load_checkpoint(found, model, optimizer, device, keys=_fresh_state(), rng=True)
            state.pop("format", None)
            carried = ckpt_io.load_carry(found) if carry is not None else None
            if carry is not None:
                if carried is None:
                    raise ValueError(f"{str(found)!r} holds no carried state ({ckpt_io.CARRY}), but the run carries one")
                mine = shard(torch.arange(cfg.batch_size), d)  # this rank's streams of the checkpoint's batch
                carry.load({k: v[mine] for k, v in carried.items()}, model.default_state(len(mine)))
        else:
            if d.main:
                run.check_fresh(force, data.artifacts)
                if force:
                    run.clear(data.artifacts)
                run.write_artifacts(data.artifacts)
            state = _fresh_state()
        if d.main:
            run.save_config(cfg)
    except BaseException:
        if d.main:
            run.unlock()
        if d.main and created and not resume:
            (run / RunDir.LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run.path.rmdir()
        raise
    try:
        return _epochs_then_test(cfg, task, data, model, optimizer, state, run, device, steps_per_epoch, total_steps,
                                 warmup_steps, resume, say, progress, on_epoch, carry, d)
    finally:
        if d.main:
            run.unlock()


def _epochs_then_test(cfg, task, data, model, optimizer, state, run, device, steps_per_epoch, total_steps,
                      warmup_steps, resume, say, progress, on_epoch, carry=None, d: Dist = SINGLE) -> dict:
    objective = task.objective
    metrics = MetricsLog(run / RunDir.METRICS, state["step"] if resume else None,
                         (run / RunDir.TB) if cfg.tensorboard else None) if d.main else _NoMetrics()
    # the module that trains: DDP averages the gradients over the ranks in backward
    trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if d.active else model
    n_params = sum(p.numel() for p in model.parameters())
    say(
        f"{'resuming' if resume else 'training'} {cfg.task}: {n_params:,} parameters, {len(data.train)} train / "
        f"{len(data.val)} val / {len(data.test)} test, {steps_per_epoch} steps per epoch x {cfg.epochs} epochs, "
        f"{'at step ' + str(state['step']) + ', ' if resume else ''}device {device}"
        f"{f' ({torch.get_num_threads()} threads)' if device.type == 'cpu' else ''}, run in {run.path}"
    )
    if objective.kind == "classification" and d.main:
        floors = {name: constant_answer_acc(ds) for name, ds in (("val", data.val), ("test", data.test))}
        if all(v is not None for v in floors.values()):
            say(constant_answer_line(floors))
    hint = machine_hint(torch.get_num_threads()) if device.type == "cpu" and d.main else None
    if hint:
        say(hint)

    saved_at = state["step"] if resume else None  # the step of the last checkpoint on disk
    scaler = grad_scaler(cfg.precision, device, state.get("grad_scaler"))  # enabled for float16 only

    t_saved = time.perf_counter()  # when the last checkpoint was written (or this session began)

    def save():
        nonlocal saved_at, t_saved
        t_saved = time.perf_counter()
        # the carried state of every stream (a collective: all ranks gather, rank 0 writes)
        carried = None if carry is None else gather_rows(carry.tensors(), d, cfg.batch_size)
        if not d.main:  # rank 0 alone writes; every rank knows where the run stands
            saved_at = state["step"]
            return
        ckpt_io.save_checkpoint(run.path, model, optimizer, {**state, "rng": ckpt_io.get_rng_state()}, carry=carried)
        saved_at = state["step"]

    def plot():
        if not d.main:
            return
        plot_curves(run / RunDir.METRICS, run / RunDir.CURVES, title=f"{cfg.task} ({run.path.name})",
                    loss_name="mean squared error" if objective.metric == "loss" else "cross-entropy")

    def validate_now(epoch_float: float) -> dict:
        val = evaluate(model, data.val, cfg, device, task, d)  # the same numbers on every rank
        metrics.write(state["step"], epoch_float, "val", val["loss"], val["acc"], elapsed=state["elapsed_s"])
        if objective.better(val, state["best_val_acc"], state["best_val_loss"]):
            state["best_val_acc"], state["best_val_loss"], state["best_step"] = val["acc"], val["loss"], state["step"]
            if d.main:
                ckpt_io.save_weights(model, run / RunDir.BEST, {"step": state["step"], "val_loss": val["loss"]})
        return val

    # 3. epochs of steps
    stopped = False
    last_plot = -math.inf
    session_t0, elapsed_at_start = time.perf_counter(), state["elapsed_s"]
    t_note, n_note = session_t0, 0  # progress lines without a bar: time and samples since the last
    ctrl_c = _StopOnCtrlC.install()  # until the finally below: the first Ctrl-C stops at the end of a step
    heap = HeapTrimmer()  # varying batch shapes fragment glibc's heap: give freed pages back (train/heap.py)
    try:
        while state["epoch"] < cfg.epochs and not stopped:
            epoch = state["epoch"]
            bar = _bar(steps_per_epoch, state["batch_in_epoch"], f"epoch {epoch + 1}/{cfg.epochs}", progress)
            model.train()
            t_window, n_window = time.perf_counter(), 0
            sampler = task.batches(data.train, cfg, epoch, state["batch_in_epoch"], True)
            bad_grads = 0  # updates skipped in a row for a non-finite gradient
            for i, batch in enumerate(_loader(data.train, sampler, cfg, epoch, device, d)):  # this rank's share
                x, y, lengths = _unpack(batch, device)
                factor = lr_factor(state["step"], total_steps, warmup_steps, cfg.min_lr_ratio, cfg.schedule)
                lr = set_lr(optimizer, factor)
                if carry is not None and sampler.resets_at(i):
                    carry.reset()  # truncated BPTT: the state of the row's previous window, detached; none where streams begin
                optimizer.zero_grad(set_to_none=True)
                if cfg.accumulate == 1 and not d.active:  # one forward and backward of the whole batch
                    with autocast(cfg.precision, device):
                        if carry is None:
                            r = objective.loss_and_metrics(trained, x, y, lengths)
                        else:
                            r = objective.loss_and_metrics(trained, x, y, lengths, state=carry.state, carry=True)
                    if not torch.isfinite(r.loss):
                        raise ValueError(f"training diverged: loss {r.loss.item()} at step {state['step'] + 1} "
                                         "(try a lower lr or grad_clip)")
                    scaler.scale(r.loss).backward()  # float16: the loss times the scale (else as is)
                    loss_sum, correct, n, next_state = r.loss_sum, r.correct, r.n, r.state
                else:  # micro-batches and/or several processes: the gradient of the global batch's mean loss
                    loss_sum, correct, n, next_state = _accumulate(trained, objective, x, y, lengths, cfg, d, device,
                                                                   scaler, state, carry)
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                if scaler.is_enabled():  # float16: an overflowed step is skipped and the scale lowered
                    scaler.step(optimizer)
                    scaler.update()
                    state["grad_scaler"] = scaler.state_dict()
                elif torch.isfinite(grad_norm):
                    optimizer.step()
                    bad_grads = 0
                else:  # one inf/NaN gradient would poison every parameter through AdamW's moments: skip the update
                    bad_grads += 1
                    say(f"step {state['step'] + 1}: non-finite gradient norm ({grad_norm.item()}), update skipped "
                        f"({bad_grads} in a row)")
                    if bad_grads >= MAX_BAD_GRADS:
                        raise ValueError(f"training diverged: {bad_grads} non-finite gradients in a row at step "
                                         f"{state['step'] + 1} (try a lower lr or grad_clip)")
                if carry is not None:
                    carry.keep(next_state)

                for sums in (state["epoch_sums"], state["window_sums"]):
                    sums[0], sums[1], sums[2] = sums[0] + loss_sum, sums[1] + correct, sums[2] + n
                state["step"] += 1
                state["batch_in_epoch"] += 1
                state["elapsed_s"] = elapsed_at_start + time.perf_counter() - session_t0
                n_window, n_note = n_window + n, n_note + n
                heap.maybe()
                step, epoch_float = state["step"], epoch + state["batch_in_epoch"] / steps_per_epoch
                sps = n_window / max(time.perf_counter() - t_window, 1e-9)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_sum / n:.3f}", lr=f"{lr:.2e}", samples_per_s=f"{sps:.0f}", refresh=False)
                if step % cfg.log_every == 0:
                    wl, wc, wn = state["window_sums"]
                    train_m = objective.summary(wl / wn, wc / wn)
                    metrics.write(step, epoch_float, "train", train_m["loss"], train_m["acc"], lr, sps, state["elapsed_s"])
                    state["window_sums"] = [0.0, 0, 0]
                    t_window, n_window = time.perf_counter(), 0
                end_of_epoch = state["batch_in_epoch"] == steps_per_epoch
                if cfg.eval_every and step % cfg.eval_every == 0 and not end_of_epoch:
                    validate_now(epoch_float)
                now = time.perf_counter()
                if bar is None and PROGRESS_EVERY_S and now - t_note >= PROGRESS_EVERY_S and not end_of_epoch:
                    el, ec, en = state["epoch_sums"]  # the epoch so far
                    say(f"epoch {epoch + 1}/{cfg.epochs}  step {state['batch_in_epoch']}/{steps_per_epoch}  "
                        f"train {objective.describe(objective.summary(el / en, ec / en))}  "
                        f"{n_note / (now - t_note):.1f} samples/s  ({state['elapsed_s']:.0f} s)")
                    t_note, n_note = now, 0
                # the step is complete here: a stop (max_steps, Ctrl-C) checkpoints this point
                stopped = (cfg.max_steps is not None and step >= cfg.max_steps) or ctrl_c.requested
                if end_of_epoch:
                    break
                due = _time_to_save(cfg, t_saved, d, device)  # every step on every rank (a collective)
                if stopped or due or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                    save()
                if stopped:
                    break
            if bar is not None:
                bar.close()

            if state["batch_in_epoch"] == steps_per_epoch:  # end of an epoch: validate, checkpoint, plot
                el, ec, en = state["epoch_sums"]
                val = validate_now(epoch + 1.0)
                heap.now()
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
                state["epoch_sums"] = [0.0, 0, 0]
                save()
                if time.perf_counter() - last_plot >= PLOT_EVERY_S:  # the last one is drawn after the test
                    plot()
                    last_plot = time.perf_counter()
                train_m = objective.summary(el / en, ec / en)
                say(f"epoch {state['epoch']}/{cfg.epochs}  step {state['step']}  train {objective.describe(train_m)}  "
                    f"val {objective.describe(val)}  ({state['elapsed_s']:.0f} s)")
                t_note, n_note = time.perf_counter(), 0
                if on_epoch is not None:
                    on_epoch({"epoch": state["epoch"], "epochs": cfg.epochs, "step": state["step"], "train": train_m,
                              "val": val, "elapsed_s": state["elapsed_s"]})
                stopped = stopped or (cfg.max_steps is not None and state["step"] >= cfg.max_steps) or ctrl_c.requested
    except KeyboardInterrupt:  # a second Ctrl-C (or one the handler did not see): this moment is not saved
        say(f"interrupted at step {state['step']}; " + (
            f"continue from the checkpoint of step {saved_at} with: hippos train --resume {run.path}"
            if saved_at is not None else "no checkpoint was written yet, nothing to resume"))
        raise
    finally:
        ctrl_c.restore()
        metrics.close()
    if ctrl_c.requested:  # the first Ctrl-C or SIGTERM: stopped at a step boundary, saved there
        why = "terminated" if ctrl_c.signal == "SIGTERM" else "interrupted"
        say(f"stopped at step {state['step']} ({why}); continue with: hippos train --resume {run.path}")
        raise Terminated if ctrl_c.signal == "SIGTERM" else KeyboardInterrupt

    results = {
        "task": cfg.task,
        "run_dir": str(run.path),
        "step": state["step"],
        "epoch": state["epoch"],
        "complete": state["epoch"] >= cfg.epochs,
        "best_val_acc": state["best_val_acc"],
        "best_step": state["best_step"],
        "train_time_s": round(state["elapsed_s"], 1),
        "n_params": n_params,
    }
    if objective.metric != "acc" and state["best_val_loss"] is not None:
        key = "best_val_bpc" if objective.metric == "bpc" else "best_val_loss"
        results[key] = objective.summary(state["best_val_loss"], 0.0).get("bpc", state["best_val_loss"])
    if not results["complete"]:
        say(f"stopped at step {state['step']} (max_steps); continue with: hippos train --resume {run.path}")
        return results

    # 4. test: the final weights, then the weights of the best validation score
    metrics = MetricsLog(run / RunDir.METRICS, None) if d.main else _NoMetrics()
    test = evaluate(model, data.test, cfg, device, task, d)
    results.update(_test_numbers(objective, test, ""))
    metrics.write(state["step"], state["epoch"], "test", test["loss"], test["acc"])
    extra = task.extra_metrics(model, data, cfg, "test")
    if extra:
        results["test_extra"] = extra
    barrier(d)  # rank 0 has written the best weights
    if (run / RunDir.BEST).exists() and state["best_step"] != state["step"]:
        ckpt_io.load_weights(model, run / RunDir.BEST, device)
        best = evaluate(model, data.test, cfg, device, task, d)
        metrics.write(state["best_step"], None, "test_best", best["loss"], best["acc"])
    else:
        best = test
    results.update(_test_numbers(objective, best, "_best_val"))
    if d.main:
        run.write_json(RunDir.RESULTS, results)
    plot()
    say(f"done: test {_headline(objective, results)} (best val, step {state['best_step']}); "
        f"{state['elapsed_s']:.0f} s of training; run in {run.path}")
    for line in task.describe_extra(extra):
        say(line)
    return results


def _test_numbers(objective, m: dict, suffix: str) -> dict:
    """``test_acc`` / ``test_bpc`` / ``test_loss`` (+ suffix) of one evaluation."""
    out = {}
    if not suffix:
        out["test_loss"] = m["loss"]
    if objective.metric == "acc":
        out[f"test_acc{suffix}"] = m["acc"]
    if objective.metric == "bpc":
        out[f"test_acc{suffix}"] = m["acc"]
        out[f"test_bpc{suffix}"] = m["bpc"]
    if objective.metric == "loss" and suffix:
        out[f"test_loss{suffix}"] = m["loss"]
    return out


def _headline(objective, r: dict) -> str:
    if objective.metric == "bpc":
        return f"{r['test_bpc']:.4f} bpc (final weights), {r['test_bpc_best_val']:.4f} bpc"
    if objective.metric == "loss":
        return f"mse {r['test_loss']:.5f} (final weights), {r['test_loss_best_val']:.5f}"
    return f"{100 * r['test_acc']:.2f}% (final weights), {100 * r['test_acc_best_val']:.2f}%"
