"""The Free Spoken Digit Dataset (FSDD): 3,000 recordings of the digits 0-9 by 6 speakers, 8 kHz.

Source: github.com/Jakobovski/free-spoken-digit-dataset (CC BY-SA 4.0), read from
``<data_dir>/fsdd/`` (``--data-dir``, else ``$HIPPOS_DATA``) or ``--data.path=FOLDER``: the
files ``recordings/{digit}_{speaker}_{index}.wav`` (mono, 8,000 Hz, 16-bit) and ``SHA256SUMS``.
Every recording listed in ``SHA256SUMS`` is checked against it, and the list itself against
``FSDD_SUMS_SHA256`` (the list of the copy described in ``fsdd/SOURCE.md``; set
``--data.sums_sha256=none`` for another version of the dataset). Nothing is downloaded.

Splits (``--data.split``), a pure function of the file names (and ``split_seed`` for validation):

* ``official`` (the dataset's README): index 0-4 of each digit and speaker are the test split
  (300 clips), 5-49 the training clips (2,700);
* ``speaker``: every clip of one speaker (``--data.test_speaker``, default ``theo``) is the test
  split (500 clips), the other five speakers' clips (all indices) the training clips (2,500): a
  test on a voice never heard, which the official split (every speaker in both) does not measure.

In both, ``val_fraction`` (10%) of the training clips, drawn by ``split_seed``, validate.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hippos.data.audio import (
    AudioSplits,
    Clips,
    check_audio_options,
    read_clips,
    read_sums,
    verify_sums,
)

__all__ = [
    "ENV_VAR",
    "FSDD_SUMS_SHA256",
    "SPEAKERS",
    "SPLITS",
    "FsddDataConfig",
    "fsdd_dir",
    "fsdd_names",
    "fsdd_split",
    "load_fsdd",
    "parse_name",
]

ENV_VAR = "HIPPOS_DATA"

#: SHA-256 of the ``SHA256SUMS`` list of the FSDD copy in ``shared/data/fsdd`` (its ``SOURCE.md``).
FSDD_SUMS_SHA256 = "04e1baae96c6a26e39c623f2b01d0182ddae627ba0ac02a3cdc17ba2af99fd9b"
#: The six speakers of FSDD (from its metadata).
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
SPLITS = ("official", "speaker")
#: Indices below this are the official test split.
OFFICIAL_TEST_INDICES = 5

_NAME = re.compile(r"(?:.*/)?(\d)_([A-Za-z]+)_(\d+)\.wav")


@dataclass
class FsddDataConfig:
    """The ``data`` section of ``hippos train fsdd`` (``--data.key=value``)."""

    path: str | None = None  # the FSDD folder (recordings/, SHA256SUMS); none: <data_dir>/fsdd
    split: str = "official"  # official (index 0-4 test) | speaker (one speaker's clips test)
    test_speaker: str = "theo"  # the held-out speaker of split=speaker
    val_fraction: float = 0.1  # of the training clips, for validation (by split_seed)
    split_seed: int = 0
    sample_rate: int | None = None  # train at this rate (Hz), resampled from 8000; none: 8000
    resample: str = "poly"  # how to resample to sample_rate: poly (anti-aliased), decimate, linear
    normalize: str = "standard"  # per clip: standard (zero mean, unit variance), peak, none
    sums_sha256: str | None = FSDD_SUMS_SHA256  # the SHA256SUMS list's own SHA-256; none: not checked


def parse_name(name: str) -> tuple[int, str, int]:
    """``recordings/7_theo_12.wav`` -> ``(7, "theo", 12)``; ``ValueError`` for another name."""
    m = _NAME.fullmatch(name)
    if m is None:
        raise ValueError(f"{name!r} is not an FSDD recording name ({{digit}}_{{speaker}}_{{index}}.wav)")
    return int(m.group(1)), m.group(2), int(m.group(3))


def fsdd_dir(data_dir: str | os.PathLike | None = None, path: str | os.PathLike | None = None) -> Path:
    """The FSDD folder: ``path`` if given, else ``<data_dir>/fsdd`` (``data_dir`` defaults to ``$HIPPOS_DATA``)."""
    if path is not None and str(path) != "":
        folder = Path(path).expanduser()
    else:
        if data_dir is None or str(data_dir) == "":
            data_dir = os.environ.get(ENV_VAR, "")
            if not data_dir:
                raise FileNotFoundError(
                    f"no data directory: pass --data-dir DIR or set ${ENV_VAR} (FSDD is read from DIR/fsdd), "
                    "or --data.path=FOLDER"
                )
        folder = Path(data_dir).expanduser() / "fsdd"
    if not (folder / "SHA256SUMS").is_file():
        raise FileNotFoundError(f"{str(folder)!r} is not an FSDD folder: no SHA256SUMS there (see docs/speech.md)")
    return folder


def fsdd_names(folder: Path, sums_sha256: str | None = FSDD_SUMS_SHA256) -> tuple[list[str], dict[str, str]]:
    """The recordings listed in ``folder/SHA256SUMS`` (sorted) and the list, the list checked
    against ``sums_sha256`` first (unless None)."""
    from hippos.data.idx import file_sha256

    sums_file = folder / "SHA256SUMS"
    if sums_sha256 is not None:
        digest = file_sha256(sums_file)
        if digest != sums_sha256.strip().lower():
            raise ValueError(
                f"{str(sums_file)!r} is not the FSDD list this hippos knows (SHA-256 {digest[:16]}..., expected "
                f"{sums_sha256[:16]}...): another version of the dataset? --data.sums_sha256=none uses it as it is"
            )
    sums = read_sums(sums_file)
    names = sorted(n for n in sums if n.lower().endswith(".wav"))
    if not names:
        raise ValueError(f"{str(sums_file)!r} lists no .wav files")
    for n in names:
        parse_name(n)
    return names, sums


def fsdd_split(names: list[str], split: str = "official", test_speaker: str = "theo") -> tuple[np.ndarray, np.ndarray]:
    """``(pool, test)``: sorted indices into ``names`` of the training clips (train + val) and of
    the test clips, for ``split`` (see the module docstring)."""
    parsed = [parse_name(n) for n in names]
    if split == "official":
        test = [i for i, (_, _, k) in enumerate(parsed) if k < OFFICIAL_TEST_INDICES]
    elif split == "speaker":
        speakers = sorted({s for _, s, _ in parsed})
        if test_speaker not in speakers:
            raise ValueError(f"--data.test_speaker {test_speaker!r} is not an FSDD speaker here ({', '.join(speakers)})")
        test = [i for i, (_, s, _) in enumerate(parsed) if s == test_speaker]
    else:
        raise ValueError(f"--data.split must be one of {', '.join(SPLITS)}, got {split!r}")
    test = np.array(test, dtype=np.int64)
    pool = np.setdiff1d(np.arange(len(names)), test)
    if len(test) == 0 or len(pool) == 0:
        raise ValueError(f"the {split} split leaves {len(pool)} training and {len(test)} test clips: both must be > 0")
    return pool, test


def load_fsdd(cfg: FsddDataConfig, data_dir: str | os.PathLike | None = None) -> AudioSplits:
    """Checked, split and read FSDD: ``AudioSplits`` with classes the digits present (0-9)."""
    from hippos.data.user_classify import split_indices

    if not isinstance(cfg, FsddDataConfig):
        raise TypeError(f"cfg must be an FsddDataConfig, got {type(cfg).__name__}")
    check_audio_options(cfg.sample_rate, cfg.resample, cfg.normalize)
    folder = fsdd_dir(data_dir, cfg.path)
    names, sums = fsdd_names(folder, cfg.sums_sha256)
    pool, test = fsdd_split(names, cfg.split, cfg.test_speaker)
    verify_sums(folder, sums, names, list_name=repr(str(folder / "SHA256SUMS")))
    digits = np.array([parse_name(n)[0] for n in names], dtype=np.int64)
    classes = sorted(set(digits.tolist()))
    y = np.searchsorted(classes, digits).astype(np.int64)
    x, sr, file_rates = read_clips(folder, names, cfg.sample_rate, cfg.resample)
    everything = Clips(x, y, names)
    train_i, val_i, _ = split_indices(len(pool), cfg.val_fraction, 0.0, cfg.split_seed)
    return AudioSplits(everything.subset(pool[train_i]), everything.subset(pool[val_i]), everything.subset(test),
                       classes, sr, file_rates)
