"""Audio files and the speech datasets: WAV reading against the standard library's ``wave``,
resampling, per-clip normalization, checksum lists, a folder of recordings, and the FSDD splits
(on a small fake FSDD of generated WAVs with the real naming pattern)."""

from __future__ import annotations

import hashlib
import struct
import wave

import numpy as np
import pytest

from hippos.data.audio import (
    AudioDataConfig,
    load_audio_folder,
    normalize_clip,
    read_sums,
    read_wav,
    resample,
    verify_sums,
    write_wav,
)
from hippos.data.fsdd import FsddDataConfig, fsdd_split, load_fsdd, parse_name


def _stdlib_wav(path, frames: bytes, width: int, channels: int = 1, rate: int = 8000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def _riff(path, tag: int, channels: int, rate: int, bits: int, data: bytes, extensible: bool = False):
    """A WAV file written by hand: float (tag 3) or WAVE_FORMAT_EXTENSIBLE, which ``wave`` refuses on 3.11."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits)
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_read_wav_equals_the_int16_samples_written_by_wave(tmp_path):
    pcm = np.array([0, 1, -1, 32767, -32768, 12345, -2000], dtype="<i2")
    x, sr = read_wav(_stdlib_wav(tmp_path / "a.wav", pcm.tobytes(), 2, rate=8000))
    assert sr == 8000 and x.dtype == np.float32 and x.shape == (7,)
    np.testing.assert_array_equal(x, pcm.astype(np.float32) / 32768)
    assert x.min() == -1.0 and x.max() < 1.0

    stereo = np.array([[100, 300], [-32768, 32767], [0, 2]], dtype="<i2")  # channels are averaged
    x, sr = read_wav(_stdlib_wav(tmp_path / "s.wav", stereo.tobytes(), 2, channels=2, rate=16000))
    assert sr == 16000
    np.testing.assert_allclose(x, stereo.mean(axis=1) / 32768, rtol=0, atol=1e-7)

    u8 = np.array([128, 0, 255, 64], dtype=np.uint8)
    x, _ = read_wav(_stdlib_wav(tmp_path / "u8.wav", u8.tobytes(), 1))
    np.testing.assert_array_equal(x, (u8.astype(np.float32) - 128) / 128)

    i24 = np.array([0, 1, -1, 2**23 - 1, -(2**23), 4096], dtype=np.int64)
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in i24)
    x, _ = read_wav(_stdlib_wav(tmp_path / "i24.wav", raw, 3))
    np.testing.assert_allclose(x, i24 / 2**23, rtol=0, atol=1e-7)

    written = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 0.25])
    x, sr = read_wav(write_wav(tmp_path / "w.wav", written, 4000))
    assert sr == 4000
    np.testing.assert_allclose(x, np.round(written * 32767) / 32768, rtol=0, atol=1e-7)


def test_read_wav_float_and_extensible_files(tmp_path):
    f = np.array([0.0, 0.25, -0.75, 1.0], dtype="<f4")
    x, sr = read_wav(_riff(tmp_path / "f.wav", 3, 1, 22050, 32, f.tobytes()))
    assert sr == 22050
    np.testing.assert_array_equal(x, f)
    pcm = np.array([[1000, -1000], [0, 32767]], dtype="<i2")
    x, sr = read_wav(_riff(tmp_path / "ext.wav", 1, 2, 48000, 16, pcm.tobytes(), extensible=True))
    assert sr == 48000
    np.testing.assert_allclose(x, pcm.mean(axis=1) / 32768, rtol=0, atol=1e-7)


def test_read_wav_refuses_broken_files_naming_them(tmp_path):
    (tmp_path / "text.wav").write_text("not audio at all")
    with pytest.raises(ValueError, match="text.wav"):
        read_wav(tmp_path / "text.wav")
    with pytest.raises(ValueError, match="no samples"):
        read_wav(_stdlib_wav(tmp_path / "empty.wav", b"", 2))
    good = _stdlib_wav(tmp_path / "cut.wav", np.zeros(100, "<i2").tobytes(), 2)
    good.write_bytes(good.read_bytes()[:-50])  # a download cut short: the header promises 100 frames
    with pytest.raises(ValueError, match="cut short"):
        read_wav(good)
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "missing.wav")


def test_resample_methods_and_lengths():
    x = np.arange(11, dtype=np.float32)
    np.testing.assert_array_equal(resample(x, 0.5, "decimate"), x[::2])
    np.testing.assert_array_equal(resample(x, 1 / 3, "decimate"), x[::3])
    with pytest.raises(ValueError, match="1/k"):
        resample(x, 2, "decimate")
    up = resample(x, 2, "linear")
    assert len(up) == 22
    np.testing.assert_allclose(up[:21], np.arange(21) / 2)  # a ramp interpolates exactly; the last sample is held
    assert up[-1] == 10
    np.testing.assert_array_equal(resample(x, 1.0, "poly"), x)

    # poly is anti-aliased: a 300 Hz tone at 8 kHz becomes the same tone at 4 kHz and at 16 kHz (away from the ends)
    t8, t4, t16 = (np.arange(n) / sr for n, sr in ((800, 8000), (400, 4000), (1600, 16000)))
    tone = np.sin(2 * np.pi * 300 * t8).astype(np.float32)
    for rate, t in ((0.5, t4), (2, t16)):
        got = resample(tone, rate, "poly")
        assert len(got) == len(t)
        inner = slice(len(t) // 8, -len(t) // 8)
        np.testing.assert_allclose(got[inner], np.sin(2 * np.pi * 300 * t)[inner], atol=2e-3)
    # ... while a 3 kHz tone (above 4 kHz's Nyquist) is filtered out by poly and aliased by decimate
    high = np.sin(2 * np.pi * 3000 * t8).astype(np.float32)
    assert np.abs(resample(high, 0.5, "poly")[50:-50]).max() < 0.05
    assert np.abs(resample(high, 0.5, "decimate")).max() > 0.9


def test_normalize_clip():
    rng = np.random.default_rng(0)
    x = (3 + 0.1 * rng.standard_normal(500)).astype(np.float32)
    s = normalize_clip(x, "standard")
    assert abs(s.mean()) < 1e-5 and abs(s.std() - 1) < 1e-4
    p = normalize_clip(x - 3, "peak")
    assert abs(np.abs(p).max() - 1) < 1e-6
    np.testing.assert_array_equal(normalize_clip(x, "none"), x)
    silent = np.zeros(10, np.float32)
    np.testing.assert_array_equal(normalize_clip(silent, "standard"), silent)
    np.testing.assert_array_equal(normalize_clip(silent, "peak"), silent)


def _sums(folder, names) -> None:
    lines = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}" for n in names]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_checksums_refuse_a_changed_file_with_one_line_naming_it(tmp_path):
    names = []
    for i in range(3):
        write_wav(tmp_path / f"c{i}.wav", np.full(20, 0.1 * i), 8000)
        names.append(f"c{i}.wav")
    _sums(tmp_path, names)
    sums = read_sums(tmp_path / "SHA256SUMS")
    verify_sums(tmp_path, sums, names)
    write_wav(tmp_path / "c1.wav", np.full(20, 0.5), 8000)  # same size, other bytes
    with pytest.raises(ValueError) as e:
        verify_sums(tmp_path, sums, names)
    assert "c1.wav" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="not listed"):
        verify_sums(tmp_path, sums, ["other.wav"])


# ----------------------------------------------------------------------------- a folder of recordings


def _tone(freq: float, n: int, sr: int = 8000, phase: float = 0.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr + phase)


def test_audio_folder_labels_by_subfolder_or_pattern_and_splits_by_seed(tmp_path):
    for label, freq in (("high", 1500.0), ("low", 300.0)):
        (tmp_path / label).mkdir()
        for i in range(10):
            write_wav(tmp_path / label / f"{i}.wav", _tone(freq, 100 + 10 * i), 8000)
    cfg = AudioDataConfig(path=str(tmp_path), val_fraction=0.2, test_fraction=0.2, split_seed=3)
    s = load_audio_folder(cfg)
    assert s.classes == ["high", "low"] and s.sample_rate == 8000
    assert (len(s.train), len(s.val), len(s.test)) == (12, 4, 4)
    names = s.train.names + s.val.names + s.test.names
    assert sorted(names) == sorted(f"{c}/{i}.wav" for c in ("high", "low") for i in range(10))
    for clips in (s.train, s.val, s.test):
        assert all(clips.y[k] == (0 if n.startswith("high") else 1) for k, n in enumerate(clips.names))
    again = load_audio_folder(cfg)
    assert again.test.names == s.test.names and again.val.names == s.val.names  # a pure function of the seed

    flat = tmp_path / "flat"
    flat.mkdir()
    for d in (2, 10, 9):
        for i in range(3):
            write_wav(flat / f"{d}_x_{i}.wav", _tone(200.0 * (d + 1), 50), 8000)
    s = load_audio_folder(AudioDataConfig(path=str(flat), label_pattern=r"^(\d+)_"))
    assert s.classes == [2, 9, 10]  # integer labels sort as numbers
    with pytest.raises(ValueError, match="not in a subfolder"):
        load_audio_folder(AudioDataConfig(path=str(flat)))
    with pytest.raises(ValueError, match="does not match"):
        load_audio_folder(AudioDataConfig(path=str(flat), label_pattern=r"^z"))


def test_audio_folder_refuses_mixed_rates_unless_resampled(tmp_path):
    for label, sr in (("a", 8000), ("b", 16000)):
        (tmp_path / label).mkdir()
        for i in range(4):
            write_wav(tmp_path / label / f"{i}.wav", _tone(200.0, sr // 100), sr)
    with pytest.raises(ValueError) as e:
        load_audio_folder(AudioDataConfig(path=str(tmp_path)))
    msg = str(e.value)
    assert "8000 Hz (4 files" in msg and "16000 Hz (4 files" in msg and "--data.sample_rate" in msg
    s = load_audio_folder(AudioDataConfig(path=str(tmp_path), sample_rate=8000, val_fraction=0.25, test_fraction=0.25))
    assert s.sample_rate == 8000 and s.file_rates == [8000, 16000]
    assert all(len(x) == 80 for c in (s.train, s.val, s.test) for x in c.x)  # 10 ms each, now all at 8 kHz


# ----------------------------------------------------------------------------- FSDD


def make_fake_fsdd(root, digits=(0, 1, 2), speakers=("george", "jackson", "theo"), indices=range(8)):
    """A folder laid out as FSDD: ``recordings/{digit}_{speaker}_{index}.wav`` and ``SHA256SUMS``."""
    rec = root / "recordings"
    rec.mkdir(parents=True)
    names = []
    for d in digits:
        for s_i, s in enumerate(speakers):
            for k in indices:
                n = 60 + 7 * k + 3 * s_i
                write_wav(rec / f"{d}_{s}_{k}.wav", _tone(300.0 * (d + 1), n, phase=0.3 * k), 8000)
                names.append(f"recordings/{d}_{s}_{k}.wav")
    _sums(root, sorted(names))
    return root


def test_fsdd_official_split_is_index_0_to_4_for_test(tmp_path):
    root = make_fake_fsdd(tmp_path / "fsdd")
    cfg = FsddDataConfig(path=str(root), sums_sha256=None, val_fraction=0.25)
    s = load_fsdd(cfg)
    assert s.classes == [0, 1, 2] and s.sample_rate == 8000
    assert sorted(s.test.names) == sorted(
        f"recordings/{d}_{sp}_{k}.wav" for d in range(3) for sp in ("george", "jackson", "theo") for k in range(5)
    )
    pool = s.train.names + s.val.names
    assert sorted(pool) == sorted(
        f"recordings/{d}_{sp}_{k}.wav" for d in range(3) for sp in ("george", "jackson", "theo") for k in range(5, 8)
    )
    assert not set(s.train.names) & set(s.val.names) and len(s.val) == round(0.25 * len(pool))
    for clips in (s.train, s.val, s.test):
        assert [int(c) for c in clips.y] == [parse_name(n)[0] for n in clips.names]
    again = load_fsdd(cfg)
    assert (again.train.names, again.val.names, again.test.names) == (s.train.names, s.val.names, s.test.names)
    other_seed = load_fsdd(FsddDataConfig(path=str(root), sums_sha256=None, val_fraction=0.25, split_seed=1))
    assert other_seed.test.names == s.test.names and other_seed.val.names != s.val.names


def test_fsdd_speaker_split_holds_one_speaker_out(tmp_path):
    root = make_fake_fsdd(tmp_path / "fsdd")
    s = load_fsdd(FsddDataConfig(path=str(root), sums_sha256=None, split="speaker", test_speaker="jackson"))
    assert len(s.test) == 3 * 8 and all(parse_name(n)[1] == "jackson" for n in s.test.names)
    assert not any(parse_name(n)[1] == "jackson" for n in s.train.names + s.val.names)
    assert len(s.train) + len(s.val) == 2 * 3 * 8
    with pytest.raises(ValueError, match="not an FSDD speaker"):
        load_fsdd(FsddDataConfig(path=str(root), sums_sha256=None, split="speaker", test_speaker="nobody"))
    names = [f"recordings/{d}_theo_{k}.wav" for d in range(2) for k in (0, 4, 5, 49)]
    _, test = fsdd_split(names, "official")
    assert [names[i] for i in test] == [n for n in names if parse_name(n)[2] < 5]


def test_fsdd_checks_the_list_and_every_recording(tmp_path):
    root = make_fake_fsdd(tmp_path / "fsdd", digits=(0, 1), indices=range(6))
    with pytest.raises(ValueError, match="not the FSDD list"):  # the pinned SHA256SUMS is the real one's
        load_fsdd(FsddDataConfig(path=str(root)))
    digest = hashlib.sha256((root / "SHA256SUMS").read_bytes()).hexdigest()
    load_fsdd(FsddDataConfig(path=str(root), sums_sha256=digest))
    write_wav(root / "recordings" / "1_theo_3.wav", _tone(50.0, 60 + 21 + 6), 8000)  # same length, other samples
    with pytest.raises(ValueError) as e:
        load_fsdd(FsddDataConfig(path=str(root), sums_sha256=digest))
    assert "1_theo_3.wav" in str(e.value) and "SHA256SUMS" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="no SHA256SUMS"):
        load_fsdd(FsddDataConfig(path=str(tmp_path)))


def test_real_fsdd_if_present(data_dir):
    if not (data_dir / "fsdd" / "SHA256SUMS").is_file():
        pytest.skip("no FSDD in the shared data")
    s = load_fsdd(FsddDataConfig(), data_dir)
    assert (len(s.train) + len(s.val), len(s.test)) == (2700, 300) and s.classes == list(range(10))
    assert s.sample_rate == 8000 and s.file_rates == [8000]
    assert min(len(x) for x in s.test.x) == 1148
