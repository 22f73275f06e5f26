"""``RunDir``: one run's folder, its file names, atomic writes, its lock, and loading it back.

::

    config.json          the resolved TrainConfig (written first)
    metrics.csv          step, epoch, split (train / val / test / test_best), loss, acc, lr, samples/s
    curves.png           loss and accuracy against the step
    checkpoint/          model.safetensors, optimizer.pt, trainer_state.json (``checkpoint.py``)
    best.safetensors     weights of the best validation score so far
    results.json         final validation and test numbers
    <artifacts>          the task's files (vocab.json of charlm, normalizer.json of classify, ...)
    .artifacts.json      the names of those files, so ``--force`` knows them as the run's own
    tb/                  TensorBoard events, when tensorboard is installed
    .lock                held (``flock``) by the process training the run

``hippos train``, ``--resume``, ``hippos eval`` and ``hippos generate`` all open a run through
this class. **The lock**: a run being trained holds an exclusive ``fcntl.flock`` on ``.lock``
(the file records the holder's pid and host); a second writer is refused at once with one line.
The kernel drops the lock when its process dies, however it dies, so a stale ``.lock`` left by a
killed run is recognized (nobody holds it) and taken over. Where ``flock`` is unavailable
(Windows), the pid in the file is checked instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

from hippos.train import checkpoint as ckpt_io

__all__ = ["RunDir", "RunInUseError", "init_weights_file"]


class RunInUseError(ValueError):
    """Another process is writing this run."""


class RunDir:
    CONFIG, METRICS, CURVES, RESULTS, TB, LOCK = "config.json", "metrics.csv", "curves.png", "results.json", "tb", ".lock"
    ARTIFACTS = ".artifacts.json"
    BEST, CHECKPOINT = ckpt_io.BEST, ckpt_io.CHECKPOINT
    #: What a run writes besides the task's artifacts (``--force`` removes these and the artifacts).
    OWN = (CONFIG, METRICS, CURVES, RESULTS, TB, LOCK, ARTIFACTS, ckpt_io.BEST, ckpt_io.CHECKPOINT, ckpt_io._TMP, ckpt_io._OLD,
           ".metrics.csv.tmp", ".config.json.tmp", ".results.json.tmp", f".{ckpt_io.BEST}.tmp", ".curves.tmp.png")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ finding a run
    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """The run at ``path`` (a run directory, or its ``checkpoint/`` directory)."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"{str(p)!r} does not exist")
        root = p if (p / cls.CONFIG).is_file() else p.parent
        if not (root / cls.CONFIG).is_file():
            raise FileNotFoundError(f"{str(p)!r} is not a hippos run directory ({cls.CONFIG} missing)")
        return cls(root)

    def config_dict(self) -> dict:
        from hippos.train.config import load_config

        return load_config(self.path / self.CONFIG)

    def weights(self, which: str = "last") -> Path:
        """The weights file of the last checkpoint or of the best validation score."""
        if which == "best":
            f = self.path / self.BEST
            if not f.is_file():
                raise FileNotFoundError(f"{str(self.path)!r} has no {self.BEST} (no validation was run yet)")
            return f
        if which != "last":
            raise ValueError(f"weights must be 'last' or 'best', got {which!r}")
        found = ckpt_io.find_checkpoint(self.path)
        if found is None:
            raise FileNotFoundError(f"{str(self.path)!r} holds no checkpoint")
        return found / ckpt_io.MODEL

    def checkpoint(self) -> Path | None:
        return ckpt_io.find_checkpoint(self.path)

    # ------------------------------------------------------------------ a fresh run
    def check_fresh(self, force: bool, artifacts=()) -> None:
        """Refuse (before anything is written) an out_dir that holds something else."""
        p = self.path
        if not p.exists():
            return
        if not p.is_dir():
            raise ValueError(f"out_dir {str(p)!r} is a file")
        entries = [e.name for e in p.iterdir() if e.name != self.LOCK]
        if not entries:
            return
        if not (p / self.CONFIG).exists():
            raise ValueError(f"out_dir {str(p)!r} is not empty and holds no hippos run; choose another out_dir")
        if not force:
            raise ValueError(
                f"out_dir {str(p)!r} already holds a run; pass --resume {p} to continue it or --force to start over"
            )
        known = {*self.OWN, *artifacts, *self._recorded_artifacts()}
        foreign = [e for e in entries if e not in known]
        if foreign:
            raise ValueError(f"out_dir {str(p)!r} holds files that are not part of a run ({', '.join(sorted(foreign)[:3])}); not removing them")

    def clear(self, artifacts=()) -> None:
        """Remove what a run wrote (``--force``), except the lock this process holds."""
        for name in (*self._recorded_artifacts(), *self.OWN, *artifacts):
            if name == self.LOCK:
                continue
            f = self.path / name
            if f.is_dir():
                shutil.rmtree(f)
            elif f.exists():
                f.unlink()

    # ------------------------------------------------------------------ writing
    def write_text(self, name: str, text: str) -> Path:
        """Write ``name`` atomically (a temp file beside it, then ``os.replace``). On failure the
        temp file is removed, the old file stays, and a write error is ``OSError`` naming ``name``."""
        f = self.path / name
        tmp = f.with_name(f".{f.name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, f)
        except BaseException as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(e, OSError) and e.errno is not None:
                raise OSError(e.errno, f"cannot write {str(f)!r}: {os.strerror(e.errno)}") from e
            raise
        return f

    def write_json(self, name: str, obj) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2) + "\n")

    def save_config(self, cfg) -> None:
        from hippos.train.config import config_to_dict

        self.write_json(self.CONFIG, config_to_dict(cfg))

    def write_artifacts(self, artifacts: dict[str, str]) -> None:
        for name, text in artifacts.items():
            self.write_text(name, text)
        self.write_json(self.ARTIFACTS, sorted(artifacts))

    def _recorded_artifacts(self) -> list[str]:
        """The artifact names an earlier run here recorded (none for runs older than the record)."""
        f = self.path / self.ARTIFACTS
        try:
            names = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        # only plain names inside the run: a damaged record must not point --force elsewhere
        return [n for n in names if isinstance(n, str) and n and "/" not in n and "\\" not in n and n not in (".", "..")]

    def check_artifacts(self, artifacts: dict[str, str]) -> None:
        """A resumed or evaluated run must find the data's artifacts as the run saved them."""
        for name, text in artifacts.items():
            f = self.path / name
            if not f.is_file():
                raise FileNotFoundError(f"{str(f)!r} is missing: the run saved it when it started")
            if f.read_text(encoding="utf-8") != text:
                raise ValueError(
                    f"the data no longer matches the run: {str(f)!r} differs from what the data gives now "
                    "(a changed data file or option); evaluate or resume with the run's data"
                )

    def read_artifact(self, name: str) -> str:
        f = self.path / name
        if not f.is_file():
            raise FileNotFoundError(f"{str(f)!r} is missing")
        return f.read_text(encoding="utf-8")

    # ------------------------------------------------------------------ the lock
    def lock(self) -> RunDir:
        """Take the run's lock (creating the directory); ``RunInUseError`` if another process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        f = self.path / self.LOCK
        fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            holder = _try_lock(fd, f)
        except BaseException:
            os.close(fd)
            raise
        if holder is not None:
            os.close(fd)
            raise RunInUseError(
                f"{str(self.path)!r} is being written by another hippos process ({holder}); wait for it, or choose "
                "another --out-dir"
            )
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        self._lock_fd = fd
        return self

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing releases the flock

    def __enter__(self) -> RunDir:
        return self.lock()

    def __exit__(self, *exc) -> None:
        self.unlock()


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if "pid" in info:
        return f"pid {info['pid']} on {info.get('host', '?')}"
    return "a process"


def _try_lock(fd: int, path: Path) -> str | None:
    """Lock ``fd`` exclusively without waiting: None on success, else who holds it."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): a live pid in the file means the run is in use
        info_text = _holder(path)
        try:
            info = json.loads(path.read_text() or "{}")
            pid = int(info["pid"])
            if pid != os.getpid() and info.get("host") == socket.gethostname():
                os.kill(pid, 0)
                return info_text
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no holder, or a stale file of a dead process: take it over
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(path)
    return None


def init_weights_file(path: str | os.PathLike) -> Path:
    """The weights ``TrainConfig.init_path`` names: a ``.safetensors`` file, or a run directory's
    best weights (``best.safetensors``, the checkpoint of the best validation score)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return RunDir.open(p).weights("best")
    if not p.is_file():
        raise FileNotFoundError(f"init_path: no weights file or run directory {str(p)!r}")
    return p

