"""Write the example data sets of docs/your-data.md into OUT_DIR (keep it outside the repository).

One per input format of ``hippos train classify`` (idx, variable-length npz, ragged CSV) and one
for ``hippos train forecast``.

    python scripts/make_example_data.py /work/example-data [--data-dir ../shared/data] [--seed 0]

No downloads. The two real data sets are read from ``--data-dir`` (default ``$HIPPOS_DATA``, else
``../shared/data`` beside the repository) and checked against their SHA-256 lists first:

* ``cifar-gray/`` (idx): the CIFAR-10 subset of ``cifar10-subset/`` (PNG batches of 1,000 RGB
  images of 32x32, one image per PNG row; ``labels.txt``), converted to grayscale uint8 with
  LRA's luminance weights ``round(0.2989 R + 0.5870 G + 0.1140 B)`` and written in MNIST's own
  idx format, gzipped: ``train-images-idx3-ubyte.gz`` (4000, 32, 32) u8,
  ``train-labels-idx1-ubyte.gz`` (4000,) u8, ``t10k-images-idx3-ubyte.gz`` (1000, 32, 32),
  ``t10k-labels-idx1-ubyte.gz`` (1000,). Classes 0 airplane, 1 automobile, 2 bird, 3 cat,
  4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
* ``fsdd.npz`` (variable-length npz): the Free Spoken Digit Dataset (``fsdd/recordings``, WAV
  8 kHz mono 16-bit), decimated by ``--decimate`` (default 8: 1 kHz) with the mean of each block
  of that many samples as a simple anti-alias filter (a trailing partial block is dropped), then
  scaled to [-1, 1] (``--fsdd-scale peak``: each recording divided by its largest absolute
  value; ``int16``: divided by 32768). ``x``, ``x_test``: object arrays of float32 ``(L_i,)``;
  ``y``, ``y_test``: int64 digits. The official split: recordings 0-4 of each digit and speaker
  are the test split (300), 5-49 the training data (2,700).

and three generated ones (numpy PCG64, seeded by ``--seed``; byte-identical for the same seed):

* ``shapes.csv`` (ragged CSV): ``--n-shapes`` (default 1500) waveforms of lengths 40-200, one
  per row: a header ``shape,t0,...,t199``; column ``shape`` holds the class as an integer,
  **0 = sine, 1 = square, 2 = sawtooth**; then the values, a shorter sequence ending in empty
  cells. Each wave has a random period (8-40 steps), phase, amplitude (0.5-2), offset
  (-0.5..0.5) and Gaussian noise (standard deviation 0.05-0.3 times the amplitude).
* ``monthly.csv`` (forecasting): 240 months, 2005-01 .. 2024-12, columns ``month`` (YYYY-MM),
  ``sales`` = 200 + 0.8 t + 25 sin(2 pi t/12) + 8 cos(4 pi t/12) + N(0, 6^2) and ``visitors``
  = 1000 + 2 t + 120 sin(2 pi (t - 3)/12) + N(0, 30^2), t = 0..239 (month index).

Also writes ``SHA256SUMS`` (``sha256sum -c SHA256SUMS`` inside OUT_DIR) and prints every file's
digest: the values to pass as ``--data.sha256``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import os
import re
import struct
import sys
import time
import wave
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GRAY = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale, as LRA's Image task
SHAPES = ("sine", "square", "sawtooth")  # the integer label of each is its index


def log(msg: str) -> None:
    print(msg, flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fail(msg: str) -> None:
    sys.exit(f"make_example_data.py: error: {msg}")


def check_sums(root: Path, sums: dict[str, str], what: str) -> None:
    """Every ``name -> sha256`` of ``sums`` must match the file ``root / name``."""
    bad = []
    for name, digest in sums.items():
        p = root / name
        if not p.is_file():
            fail(f"{what}: missing file {str(p)!r}")
        if sha256(p) != digest:
            bad.append(name)
    if bad:
        fail(f"{what}: {len(bad)} file(s) do not match their SHA-256: {', '.join(bad[:5])}")
    log(f"  {what}: {len(sums)} file(s) match their SHA-256")


# ----------------------------------------------------------------------------- writers


def write_gzip(path: Path, data: bytes) -> None:
    """gzip with no file name and mtime 0, so the bytes depend on the data only."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(data)


def idx_bytes(a: np.ndarray) -> bytes:
    """An idx file of a uint8 array: magic 0x00 0x00 0x08 ndim, ndim big-endian uint32 sizes, data."""
    assert a.dtype == np.uint8
    return struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez`` but with fixed zip timestamps, so the bytes depend on the arrays only."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for key, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(a), allow_pickle=a.dtype == object)
            z.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())


# ----------------------------------------------------------------------------- CIFAR-10 -> idx


def read_png_rgb(path: Path) -> np.ndarray:
    """``u8(H W 3)``: Pillow when installed, else matplotlib (floats in [0, 1], exact for 8-bit PNGs)."""
    try:
        from PIL import Image
    except ImportError:
        import matplotlib.image

        a = matplotlib.image.imread(path)  # f32 in [0, 1] for an 8-bit PNG: k / 255 exactly
        a = np.rint(a[..., :3].astype(np.float64) * 255).astype(np.uint8)
    else:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"))
    return a


def cifar_table(source_md: Path) -> dict[str, str]:
    """``file -> sha256`` from the table of SOURCE.md (rows ``| name | bytes | sha256 | ... |``)."""
    out = {}
    for line in source_md.read_text().splitlines():
        m = re.match(r"\|\s*([\w.]+)\s*\|\s*\d+\s*\|\s*([0-9a-f]{64})\s*\|", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def make_cifar(data_dir: Path, out: Path) -> None:
    src = data_dir / "cifar10-subset"
    log(f"cifar-gray: {src}")
    table = cifar_table(src / "SOURCE.md")
    if not table:
        fail(f"no SHA-256 table found in {str(src / 'SOURCE.md')!r}")
    check_sums(src, table, "cifar10-subset (SOURCE.md table)")
    labels = np.array([int(s) for s in (src / "labels.txt").read_text().split()], dtype=np.int64)
    if len(labels) != 51000:
        fail(f"{str(src / 'labels.txt')!r}: expected 51,000 labels, got {len(labels)}")
    out.mkdir(parents=True, exist_ok=True)
    for split, batches in (("train", (0, 1, 2, 3)), ("t10k", (50,))):
        images, ys = [], []
        for b in batches:
            rgb = read_png_rgb(src / f"cifar10_batch_{b}.png")  # (1000, 1024, 3): one image per row
            if rgb.shape != (1000, 1024, 3):
                fail(f"cifar10_batch_{b}.png: expected 1000 x 1024 RGB, got {rgb.shape}")
            rgb = rgb.reshape(1000, 32, 32, 3).astype(np.float64)
            gray = np.clip(np.rint(rgb @ np.array(GRAY)), 0, 255).astype(np.uint8)  # (1000, 32, 32)
            images.append(gray)
            ys.append(labels[1000 * b : 1000 * b + 1000])
            log(f"  batch {b}: 1000 images, mean gray {gray.mean():.1f}")
        x, y = np.concatenate(images), np.concatenate(ys).astype(np.uint8)
        write_gzip(out / f"{split}-images-idx3-ubyte.gz", idx_bytes(x))
        write_gzip(out / f"{split}-labels-idx1-ubyte.gz", idx_bytes(y))
        counts = np.bincount(y, minlength=10)
        log(f"  {split}: images {x.shape} uint8, labels {y.shape}; per class {counts.tolist()}")


# ----------------------------------------------------------------------------- FSDD -> npz


def read_wav(path: Path) -> np.ndarray:
    """``i16(L)`` samples of a mono 16-bit 8 kHz WAV file."""
    with wave.open(str(path), "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, 8000):
            fail(f"{str(path)!r}: expected mono 16-bit 8000 Hz, got {w.getnchannels()} channel(s), "
                 f"{8 * w.getsampwidth()}-bit, {w.getframerate()} Hz")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def make_fsdd(data_dir: Path, out_file: Path, decimate: int, scale: str) -> None:
    src = data_dir / "fsdd"
    log(f"fsdd: {src} (decimate by {decimate}: {8000 // decimate} Hz; scale {scale})")
    sums = {}
    for line in (src / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    check_sums(src, sums, "fsdd (SHA256SUMS)")
    pattern = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")
    files = []
    for p in (src / "recordings").iterdir():
        m = pattern.fullmatch(p.name)
        if m:
            files.append((int(m.group(1)), m.group(2), int(m.group(3)), p))
    files.sort()  # digit, speaker, index: a fixed order
    split = {"train": ([], []), "test": ([], [])}
    for k, (digit, _speaker, index, p) in enumerate(files):
        s = read_wav(p).astype(np.float64)
        n = len(s) // decimate
        s = s[: n * decimate].reshape(n, decimate).mean(axis=1)  # block mean: anti-alias, then keep one
        s = s / max(np.abs(s).max(), 1e-12) if scale == "peak" else s / 32768.0
        xs, ys = split["test" if index < 5 else "train"]
        xs.append(s.astype(np.float32))
        ys.append(digit)
        if (k + 1) % 500 == 0:
            log(f"  {k + 1}/{len(files)} recordings")
    arrays = {}
    for name, suffix in (("train", ""), ("test", "_test")):
        xs, ys = split[name]
        obj = np.empty(len(xs), dtype=object)
        obj[:] = xs
        arrays["x" + suffix], arrays["y" + suffix] = obj, np.array(ys, dtype=np.int64)
        lengths = np.array([len(a) for a in xs])
        log(f"  {name}: {len(xs)} sequences, lengths {lengths.min()}-{lengths.max()} (median {int(np.median(lengths))})")
    write_npz(out_file, arrays)


# ----------------------------------------------------------------------------- generated


def make_shapes(out_file: Path, n: int, seed: int) -> None:
    log(f"shapes.csv: {n} generated waveforms (0 sine, 1 square, 2 sawtooth), lengths 40-200, seed {seed}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 1])))
    L_MAX = 200
    with open(out_file, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["shape"] + [f"t{t}" for t in range(L_MAX)])
        counts = [0, 0, 0]
        for _ in range(n):
            label = int(rng.integers(3))
            L = int(rng.integers(40, L_MAX + 1))
            period = rng.uniform(8, 40)
            phase = rng.uniform(0, 1)
            amp = rng.uniform(0.5, 2.0)
            offset = rng.uniform(-0.5, 0.5)
            noise = rng.uniform(0.05, 0.3) * amp
            u = (np.arange(L) / period + phase) % 1.0  # position within the cycle, [0, 1)
            if label == 0:
                wave_ = np.sin(2 * np.pi * u)
            elif label == 1:
                wave_ = np.where(u < 0.5, 1.0, -1.0)
            else:
                wave_ = 2 * u - 1
            x = offset + amp * wave_ + noise * rng.standard_normal(L)
            w.writerow([label] + [f"{v:.4f}" for v in x] + [""] * (L_MAX - L))
            counts[label] += 1
    log(f"  rows per class: {counts}")


def make_monthly(out_file: Path, seed: int) -> None:
    log(f"monthly.csv: 240 generated months 2005-01..2024-12 (trend + yearly season + noise), seed {seed}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 2])))
    t = np.arange(240)
    sales = 200 + 0.8 * t + 25 * np.sin(2 * np.pi * t / 12) + 8 * np.cos(4 * np.pi * t / 12) + 6 * rng.standard_normal(240)
    visitors = 1000 + 2 * t + 120 * np.sin(2 * np.pi * (t - 3) / 12) + 30 * rng.standard_normal(240)
    with open(out_file, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["month", "sales", "visitors"])
        for i in t:
            w.writerow([f"{2005 + i // 12}-{i % 12 + 1:02d}", f"{sales[i]:.1f}", f"{visitors[i]:.0f}"])
    log(f"  sales {sales.min():.1f}..{sales.max():.1f}, visitors {visitors.min():.0f}..{visitors.max():.0f}")


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path, help="where to write (created; keep it outside the repository)")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="the shared data root (default: $HIPPOS_DATA, else ../shared/data beside the repository)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated data sets (default 0)")
    ap.add_argument("--decimate", type=int, default=8, help="FSDD: keep one sample in this many, block means (default 8: 1 kHz)")
    ap.add_argument("--fsdd-scale", choices=("peak", "int16"), default="peak",
                    help="FSDD: scale each recording by its peak (default) or by 32768")
    ap.add_argument("--n-shapes", type=int, default=1500, help="rows of shapes.csv (default 1500)")
    ap.add_argument("--only", choices=("cifar", "fsdd", "shapes", "monthly"), action="append",
                    help="make only these (repeatable; default all)")
    args = ap.parse_args()
    if args.decimate < 1 or args.n_shapes < 3 or args.seed < 0:
        fail("--decimate must be >= 1, --n-shapes >= 3 and --seed >= 0")
    data_dir = args.data_dir or Path(os.environ.get("HIPPOS_DATA") or REPO.parent / "shared" / "data")
    data_dir = data_dir.expanduser().resolve()
    out = args.out_dir.expanduser().resolve()
    if out == REPO or REPO in out.parents:
        log(f"note: {out} is inside the repository; the files are large, keep them out of git")
    only = set(args.only or ("cifar", "fsdd", "shapes", "monthly"))
    if only & {"cifar", "fsdd"} and not data_dir.is_dir():
        fail(f"no data directory {str(data_dir)!r}: set --data-dir or $HIPPOS_DATA")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if "cifar" in only:
        make_cifar(data_dir, out / "cifar-gray")
    if "fsdd" in only:
        make_fsdd(data_dir, out / "fsdd.npz", args.decimate, args.fsdd_scale)
    if "shapes" in only:
        make_shapes(out / "shapes.csv", args.n_shapes, args.seed)
    if "monthly" in only:
        make_monthly(out / "monthly.csv", args.seed)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{sha256(p)}  {p.relative_to(out).as_posix()}" for p in files]
    (out / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    log(f"wrote {out} in {time.perf_counter() - t0:.1f} s; SHA-256 (for --data.sha256), also in SHA256SUMS:")
    for p, line in zip(files, lines):
        log(f"  {line}   {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
