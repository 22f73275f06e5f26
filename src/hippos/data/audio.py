"""Audio for the speech tasks: WAV files, resampling, per-clip normalization, SHA256SUMS lists,
and a folder of labelled recordings (the data side of ``hippos train audio``).

No audio library is needed: WAV files are read with the standard library's ``wave`` and NumPy
(PCM of 8, 16, 24 or 32 bits; 32/64-bit float and WAVE_FORMAT_EXTENSIBLE files, which ``wave``
refuses before Python 3.12, by a small RIFF reader here). Resampling by ``resample_poly``
(anti-aliased, polyphase FIR) needs SciPy, imported only then.

* ``read_wav(path) -> (x: f32(L), sample_rate)``: mono (channels averaged), integers scaled to
  [-1, 1] (int16: ``v / 32768``); ``write_wav(path, x, sample_rate)``: 16-bit PCM.
* ``resample(x, rate, method)``: ``rate`` = new samples per second / old (0.5: half as many);
  ``decimate`` keeps every k-th sample (``x[::k]``, rate = 1/k, no filter: what the S4 reference
  does for its 0.5× test), ``poly`` is SciPy's ``resample_poly`` (any rational rate), ``linear``
  interpolates linearly (any rate; meant for upsampling). Output length ``ceil(L * rate)``.
* ``normalize_clip(x, how)``: ``standard`` (zero mean, unit variance over the clip), ``peak``
  (``x / max|x|``) or ``none``.
* ``read_sums(path)`` / ``verify_sums(root, sums, names)``: a ``sha256sum`` list and the check of
  files against it (a mismatch is one line naming the file).
* ``load_audio_folder(cfg: AudioDataConfig) -> AudioSplits``: every ``.wav`` under a folder,
  labelled by subfolder or by a regex on the file name, at one sample rate (or resampled to
  ``sample_rate``), split train / val / test by seed like ``hippos train classify``.
* ``clips_dataset(clips, normalize) -> VarLenSequences``: padded per batch, masked by ``lengths``.
"""

from __future__ import annotations

import math
import os
import re
import struct
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from hippos.data.buckets import VarLenSequences
from hippos.data.idx import file_sha256

__all__ = [
    "NORMALIZE",
    "RESAMPLE",
    "AudioDataConfig",
    "AudioSplits",
    "Clips",
    "check_audio_options",
    "clips_dataset",
    "load_audio_folder",
    "normalize_clip",
    "read_clips",
    "read_sums",
    "read_wav",
    "resample",
    "resample_clips",
    "sort_labels",
    "verify_sums",
    "write_wav",
]

#: Values of ``--data.normalize`` (per clip) and of the resampling methods.
NORMALIZE = ("standard", "peak", "none")
RESAMPLE = ("decimate", "poly", "linear")

_MIN_STD = 1e-8


# ----------------------------------------------------------------------------- WAV files


def _pcm_to_float(raw: bytes, width: int, channels: int, where: str) -> np.ndarray:
    """Interleaved little-endian PCM -> ``f32(L, channels)`` in [-1, 1]."""
    if width == 1:  # unsigned 8-bit
        a = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        a = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:  # 24-bit: three bytes, sign from the top one
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        a = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    elif width == 4:
        a = (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        raise ValueError(f"{where}: {8 * width}-bit PCM is not supported (8, 16, 24 or 32 bits)")
    return a.reshape(-1, channels)


def _read_riff(path: Path, where: str) -> tuple[np.ndarray, int]:
    """The chunks of a RIFF/WAVE file that ``wave`` refuses (float, extensible): ``(f32(L, C), rate)``."""
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{where} is not a WAV file (no RIFF/WAVE header)")
    fmt = samples = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            samples = body
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16 or samples is None:
        raise ValueError(f"{where}: a WAV file needs a 'fmt ' and a 'data' chunk")
    tag, channels, rate, _, block, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
        tag = struct.unpack("<H", fmt[24:26])[0]
    if channels < 1 or rate < 1 or block < 1:
        raise ValueError(f"{where}: invalid WAV header ({channels} channels, {rate} Hz)")
    samples = samples[: len(samples) // block * block]
    if tag == 1:
        return _pcm_to_float(samples, bits // 8, channels, where), rate
    if tag == 3 and bits in (32, 64):
        a = np.frombuffer(samples, "<f4" if bits == 32 else "<f8").astype(np.float32).reshape(-1, channels)
        return a, rate
    raise ValueError(f"{where}: WAV format tag {tag} ({bits} bits) is not supported: PCM or 32/64-bit float only")


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """``(x: f32(L), sample_rate)`` of a WAV file: mono (the mean of its channels), in [-1, 1].

    PCM integers are scaled by their full range (8-bit unsigned ``(v - 128) / 128``, 16-bit
    ``v / 32768``, 24- and 32-bit alike); float files are returned as stored. ``ValueError``
    names the file when it is not a WAV file, is cut short, is empty or holds non-finite values;
    ``FileNotFoundError`` when it is missing.
    """
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {where}")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
        if len(raw) < n * width * channels:
            raise ValueError(f"{where} is cut short: its header promises {n} frames, it holds {len(raw) // (width * channels)}")
        a = _pcm_to_float(raw, width, channels, where)
    except (wave.Error, EOFError) as e:
        if "unknown format" not in str(e):
            raise ValueError(f"{where} is not a readable WAV file: {e}") from None
        a, rate = _read_riff(path, where)
    if a.shape[0] == 0:
        raise ValueError(f"{where} holds no samples")
    x = a[:, 0] if a.shape[1] == 1 else a.mean(axis=1, dtype=np.float64).astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{where} holds non-finite samples (NaN or inf)")
    return np.ascontiguousarray(x, dtype=np.float32), int(rate)


def write_wav(path: str | os.PathLike, x, sample_rate: int) -> Path:
    """Write ``x: f(L)`` (mono, in [-1, 1]; clipped) as 16-bit PCM with the standard library's ``wave``:
    ``round(x * 32767)``. The inverse of :func:`read_wav` up to that rounding."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise ValueError(f"write_wav expects a finite 1-D clip, got shape {x.shape}")
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767).astype("<i2")
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return path


# ----------------------------------------------------------------------------- resampling


def _ratio(rate) -> Fraction:
    """``rate`` as an exact fraction (a float is matched to a fraction with denominator <= 10000)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, Fraction)):
        raise TypeError(f"rate must be a number, got {type(rate).__name__}")
    if not (math.isfinite(float(rate)) and rate > 0):
        raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
    r = Fraction(rate).limit_denominator(10000)
    if abs(float(r) - float(rate)) > 1e-9 * float(rate):
        raise ValueError(f"rate {rate!r} is not a ratio of integers up to 10000")
    return r


def resample(x: np.ndarray, rate, method: str = "poly") -> np.ndarray:
    """``x: f(L)`` at ``rate`` times as many samples per second: ``f32(ceil(L * rate))``.

    ``decimate``: ``x[::k]`` for ``rate = 1/k`` (no anti-alias filter); ``poly``:
    ``scipy.signal.resample_poly(x, up, down)`` with ``rate = up/down`` (Kaiser-windowed FIR,
    anti-aliased); ``linear``: ``np.interp`` at times ``j / rate`` (the last sample held).
    """
    if method not in RESAMPLE:
        raise ValueError(f"resampling method must be one of {', '.join(RESAMPLE)}, got {method!r}")
    r = _ratio(rate)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample expects a 1-D clip, got shape {x.shape}")
    if r == 1:
        return x.copy()
    n_out = max(1, math.ceil(len(x) * r))
    if method == "decimate":
        if r.numerator != 1:
            raise ValueError(
                f"--resample=decimate keeps every k-th sample: the rate must be 1/k (0.5, 0.25, ...), got {float(r):g}; "
                "use poly or linear"
            )
        return np.ascontiguousarray(x[:: r.denominator])
    if method == "linear":
        t = np.arange(n_out, dtype=np.float64) * (r.denominator / r.numerator)
        return np.interp(t, np.arange(len(x)), x).astype(np.float32)
    try:
        from scipy.signal import resample_poly
    except ImportError:
        raise ValueError("resampling by poly needs SciPy (pip install scipy); decimate and linear need nothing") from None
    return resample_poly(x.astype(np.float64), r.numerator, r.denominator)[:n_out].astype(np.float32)


def normalize_clip(x: np.ndarray, how: str) -> np.ndarray:
    """One clip normalized: ``standard`` ``(x - mean) / std`` (a silent clip is only centred),
    ``peak`` ``x / max|x|`` (a silent clip unchanged), ``none``."""
    if how not in NORMALIZE:
        raise ValueError(f"--data.normalize must be one of {', '.join(NORMALIZE)}, got {how!r}")
    x = np.asarray(x, dtype=np.float64)
    if how == "standard":
        std = x.std()
        x = (x - x.mean()) / (std if std > _MIN_STD else 1.0)
    elif how == "peak":
        peak = np.abs(x).max()
        x = x / (peak if peak > 0 else 1.0)
    return x.astype(np.float32)


# ----------------------------------------------------------------------------- checksums


def read_sums(path: str | os.PathLike) -> dict[str, str]:
    """A ``sha256sum`` list (``<64 hex>  <name>`` per line, ``*name`` for binary mode) ->
    ``{name: digest}``; names as written (relative to the list's folder)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checksum list: {str(path)!r}")
    out = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.rstrip("\r\n"))
        if m is None:
            raise ValueError(f"{str(path)!r} line {i} is not '<sha256>  <file>': {line[:60]!r}")
        out[m.group(2).removeprefix("./")] = m.group(1).lower()
    return out


# (resolved path, size, mtime_ns, digest) of files that matched in this process
_verified: set[tuple[str, int, int, str]] = set()


def verify_sums(root: str | os.PathLike, sums: dict[str, str], names, list_name: str = "SHA256SUMS") -> None:
    """Check that every file ``root/name`` (``names``) is in ``sums`` and has that SHA-256.

    A file is hashed once per process (remembered by path, size and modification time).
    ``ValueError`` naming the file when it is not listed or differs; ``FileNotFoundError`` when
    it is missing.
    """
    root = Path(root)
    for name in names:
        path = root / name
        if name not in sums:
            raise ValueError(f"{str(path)!r} is not listed in {list_name}")
        try:
            st = path.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"missing data file {str(path)!r} (listed in {list_name})") from None
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, sums[name])
        if key in _verified:
            continue
        digest = file_sha256(path)
        if digest != sums[name]:
            raise ValueError(
                f"{str(path)!r} does not match {list_name}: SHA-256 {digest[:16]}..., expected {sums[name][:16]}..."
            )
        _verified.add(key)


# ----------------------------------------------------------------------------- clips and splits


@dataclass
class Clips:
    """Labelled clips at one sample rate: ``x[i]: f32(L_i)``, ``y: i64(n)`` class indices,
    ``names[i]`` the file (relative to the data folder)."""

    x: list
    y: np.ndarray
    names: list

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx) -> Clips:
        idx = [int(i) for i in idx]
        return Clips([self.x[i] for i in idx], np.asarray(self.y)[idx].astype(np.int64), [self.names[i] for i in idx])


@dataclass
class AudioSplits:
    """What a speech loader gives: train / val / test clips (raw, at ``sample_rate``), the class
    labels (``classes[c]`` of class index c) and the rate of the files before any resampling."""

    train: Clips
    val: Clips
    test: Clips
    classes: list
    sample_rate: int  # of the clips (after --data.sample_rate resampling)
    file_rates: list = field(default_factory=list)  # the files' own rates (sorted, distinct)

    def split(self, name: str) -> Clips:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
        return getattr(self, name)


def clips_dataset(clips: Clips, normalize: str) -> VarLenSequences:
    """``VarLenSequences`` of the clips, each normalized on its own: ``ds[idx] -> (x: f32(B L 1),
    y: i64(B), lengths: i64(B))``, zero-padded to the batch's longest clip."""
    return VarLenSequences([normalize_clip(x, normalize) for x in clips.x], np.asarray(clips.y, dtype=np.int64))


def resample_clips(clips: Clips, rate, method: str) -> Clips:
    """Every clip resampled by ``rate`` (``resample``), labels and names kept."""
    return Clips([resample(x, rate, method) for x in clips.x], clips.y, clips.names)


def sort_labels(labels) -> list:
    """The distinct labels, sorted: as integers when every label is one (``"10"`` after ``"9"``)."""
    distinct = set(labels)
    if all(isinstance(v, str) and re.fullmatch(r"-?\d+", v) for v in distinct):
        return sorted({int(v) for v in distinct})
    return sorted(distinct)


# ----------------------------------------------------------------------------- a folder of recordings


@dataclass
class AudioDataConfig:
    """The ``data`` section of ``hippos train audio`` (``--data.key=value``)."""

    path: str | None = None  # the folder of .wav files (searched recursively); required
    label_pattern: str | None = None  # regex on the file name; group 'label' or 1 is the label; none: the subfolder
    sample_rate: int | None = None  # resample every file to this rate (Hz); none: the files' one rate
    resample: str = "poly"  # how files are resampled to sample_rate: poly, decimate or linear
    normalize: str = "standard"  # per clip: standard (zero mean, unit variance), peak, none
    sums_path: str | None = None  # a sha256sum list of the files (as `sha256sum` writes it), checked when given
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0


def _label_of(rel: Path, pattern: re.Pattern | None, root: Path) -> str:
    if pattern is None:
        if len(rel.parts) < 2:
            raise ValueError(
                f"{str(root / rel)!r} is not in a subfolder: put each class's files in DIR/<label>/, "
                "or label them by name with --data.label_pattern=REGEX"
            )
        return rel.parts[0]
    m = pattern.search(rel.name)
    if m is None:
        raise ValueError(f"{str(root / rel)!r}: --data.label_pattern {pattern.pattern!r} does not match its name")
    if "label" in pattern.groupindex:
        label = m.group("label")
    else:
        label = m.group(1) if pattern.groups else m.group(0)
    if not label:
        raise ValueError(f"{str(root / rel)!r}: --data.label_pattern {pattern.pattern!r} gives an empty label")
    return label


def _rate_summary(rates: dict[int, list[str]]) -> str:
    return "; ".join(f"{r} Hz ({len(n)} file{'s' if len(n) > 1 else ''}, e.g. {n[0]})" for r, n in sorted(rates.items()))


def read_clips(root: Path, names: list[str], target_rate: int | None, method: str) -> tuple[list, int, list]:
    """``(clips, sample_rate, file_rates)`` of ``root/name`` for each name: one rate, or every
    file resampled to ``target_rate``. Mixed rates without a target are refused, listing them."""
    clips, by_rate = [], {}
    for name in names:
        x, sr = read_wav(root / name)
        clips.append(x)
        by_rate.setdefault(sr, []).append(name)
    if target_rate is None:
        if len(by_rate) > 1:
            raise ValueError(
                f"the recordings have mixed sample rates: {_rate_summary(by_rate)}; "
                "resample them all to one with --data.sample_rate=HZ"
            )
        return clips, next(iter(by_rate)), sorted(by_rate)
    rate_of = {name: sr for sr, ns in by_rate.items() for name in ns}
    out = [x if rate_of[n] == target_rate else resample(x, Fraction(target_rate, rate_of[n]), method)
           for x, n in zip(clips, names)]
    return out, int(target_rate), sorted(by_rate)


def check_audio_options(sample_rate, method: str, normalize: str) -> None:
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1):
        raise ValueError(f"--data.sample_rate must be an integer >= 1 (Hz) or none, got {sample_rate!r}")
    if method not in RESAMPLE:
        raise ValueError(f"--data.resample must be one of {', '.join(RESAMPLE)}, got {method!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"--data.normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")


def load_audio_folder(cfg: AudioDataConfig) -> AudioSplits:
    """Every ``.wav`` under ``cfg.path`` (hidden files and folders skipped), labelled, at one rate,
    split train / val / test by ``split_seed`` (``hippos.data.user_classify.split_indices``)."""
    from hippos.data.user_classify import split_indices

    if not isinstance(cfg, AudioDataConfig):
        raise TypeError(f"cfg must be an AudioDataConfig, got {type(cfg).__name__}")
    if cfg.path is None:
        raise ValueError("no data: give --data.path=DIR, a folder of .wav files (one subfolder per class)")
    check_audio_options(cfg.sample_rate, cfg.resample, cfg.normalize)
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--data.path: no such folder {str(root)!r}")
    try:
        pattern = re.compile(cfg.label_pattern) if cfg.label_pattern is not None else None
    except re.error as e:
        raise ValueError(f"--data.label_pattern {cfg.label_pattern!r} is not a valid regular expression: {e}") from None
    rels = sorted(
        p.relative_to(root) for p in root.rglob("*")
        if p.suffix.lower() == ".wav" and p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )
    if not rels:
        raise ValueError(f"{str(root)!r} holds no .wav files")
    names = [r.as_posix() for r in rels]
    labels = [_label_of(r, pattern, root) for r in rels]
    if cfg.sums_path is not None:
        verify_sums(root, read_sums(cfg.sums_path), names, list_name=repr(str(cfg.sums_path)))
    classes = sort_labels(labels)
    if len(classes) < 2:
        raise ValueError(f"{str(root)!r}: classification needs at least 2 classes, every file is labelled {labels[0]!r}")
    index = {str(c): i for i, c in enumerate(classes)}
    y = np.array([index[str(int(v)) if isinstance(classes[0], int) else v] for v in labels], dtype=np.int64)
    x, sr, file_rates = read_clips(root, names, cfg.sample_rate, cfg.resample)
    everything = Clips(x, y, names)
    train, val, test = split_indices(len(everything), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    return AudioSplits(everything.subset(train), everything.subset(val), everything.subset(test), classes, sr, file_rates)
