"""Character-level text data: vocabulary round trip, checksums, the split, windows and samplers."""

from __future__ import annotations

import hashlib
import math
import re

import pytest
import torch

from hippos.data import text
from hippos.data.text import (
    CharVocab,
    RandomWindowSampler,
    SequentialWindowSampler,
    TextWindows,
    bits_per_char,
    load_text,
    split_text,
    split_train_val_test,
    tinyshakespeare,
)

SAMPLE = "First Citizen:\nBefore we proceed, hear me speak.\r\n\tÉtat — naïve? 'Yes'!\n"


def test_vocab_round_trip(tmp_path):
    v = CharVocab.from_text(SAMPLE)
    assert v.chars == "".join(sorted(set(SAMPLE))) and len(v) == len(set(SAMPLE))
    ids = v.encode(SAMPLE)
    assert ids.dtype == torch.long and ids.shape == (len(SAMPLE),)
    assert v.decode(ids) == SAMPLE and v.decode(ids.tolist()) == SAMPLE
    assert [v.chars[i] for i in ids[:5].tolist()] == list("First")
    # JSON: a string and a file, exactly
    assert CharVocab.from_json(v.to_json()) == v
    path = v.save(tmp_path / "vocab.json")
    w = CharVocab.load(path)
    assert w == v and w.decode(v.encode(SAMPLE)) == SAMPLE
    # ids keep the saved order, even when it is not sorted
    u = CharVocab("ba\n")
    assert u.encode("ab\n").tolist() == [1, 0, 2] and CharVocab.from_json(u.to_json()).chars == "ba\n"


def test_vocab_errors(tmp_path):
    v = CharVocab.from_text("abc")
    with pytest.raises(ValueError, match=r"'z' at position 1"):
        v.encode("azb")
    with pytest.raises(ValueError, match="0 .. 2"):
        v.decode([0, 3])
    with pytest.raises(ValueError, match="distinct"):
        CharVocab("aba")
    with pytest.raises(ValueError, match="empty"):
        CharVocab.from_text("")
    with pytest.raises(ValueError, match="not a CharVocab"):
        CharVocab.from_json('{"chars": "abc"}')
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json"):
        CharVocab.load(bad)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CharVocab.load(tmp_path / "nope.json")


def test_load_text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(SAMPLE.encode("utf-8"))
    assert load_text(p) == SAMPLE  # \r\n kept: characters as stored
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_text(tmp_path / "missing.txt")
    p.write_bytes(b"ok \xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_text(p)


def _fake_corpus(tmp_path, content: bytes):
    d = tmp_path / "tinyshakespeare"
    d.mkdir()
    (d / "input.txt").write_bytes(content)
    return tmp_path


def test_tinyshakespeare_checksum_mismatch(tmp_path):
    size = text.TINYSHAKESPEARE[1]
    root = _fake_corpus(tmp_path, b"x" * size)  # right size, wrong content
    with pytest.raises(ValueError, match=r"corrupt data file .*input.txt.*SHA-256"):
        tinyshakespeare(root)
    (root / "tinyshakespeare" / "input.txt").write_bytes(b"to be or not")
    with pytest.raises(ValueError, match=f"12 bytes, expected {size}"):
        tinyshakespeare(root)
    with pytest.raises(FileNotFoundError, match="missing data file"):
        tinyshakespeare(tmp_path / "tinyshakespeare")  # a data dir without the corpus
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tinyshakespeare(tmp_path / "absent")


def test_tinyshakespeare_accepts_matching_checksum(tmp_path, monkeypatch):
    content = SAMPLE.encode("utf-8")
    monkeypatch.setattr(text, "TINYSHAKESPEARE", (hashlib.sha256(content).hexdigest(), len(content)))
    monkeypatch.setenv("HIPPOS_DATA", str(_fake_corpus(tmp_path, content)))
    assert tinyshakespeare() == SAMPLE


def test_tinyshakespeare_real_file(data_dir):
    source = (data_dir / "tinyshakespeare" / "SOURCE.md").read_text()
    assert re.search(r"sha256: ([0-9a-f]{64})", source).group(1) == text.TINYSHAKESPEARE[0]
    s = tinyshakespeare(data_dir)
    assert len(s) == 1_115_394 and len(CharVocab.from_text(s)) == 65
    train, val = split_text(s)
    assert (len(train), len(val)) == (1_003_854, 111_540) and train + val == s
    train3, val3, test3 = split_train_val_test(s)  # the defaults: 5% val, then the last 5% test
    assert (len(train3), len(val3), len(test3)) == (1_003_854, 55_770, 55_770) and train3 == train
    assert train3 + val3 + test3 == s and len(CharVocab.from_text(train3)) == 65  # train alone has every char


def test_split_text():
    s = "".join(chr(97 + i % 26) for i in range(1000))
    train, val = split_text(s)
    assert (len(train), len(val)) == (900, 100) and train + val == s
    train, val = split_text(s, val_fraction=0.25)
    assert (len(train), len(val)) == (750, 250)
    with pytest.raises(ValueError, match="val_fraction"):
        split_text(s, val_fraction=1.0)
    with pytest.raises(ValueError, match="too short"):
        split_text("a", val_fraction=0.1)


@pytest.mark.parametrize("n", [20, 997, 1000, 1_115_394])
@pytest.mark.parametrize("fractions", [(0.05, 0.05), (0.1, 0.0), (0.25, 0.1), (0.3, 0.6)])
def test_three_splits_are_contiguous_disjoint_and_cover_the_text(n, fractions):
    s = "".join(chr(97 + i % 26) for i in range(n))
    val_fraction, test_fraction = fractions
    train, val, test = split_train_val_test(s, val_fraction, test_fraction)
    # in order and contiguous, so disjoint as positions and covering the text
    assert train + val + test == s and s.startswith(train) and s.endswith(test)
    assert train and val and (test == "") == (test_fraction == 0)
    assert len(test) == n - int(n * (1 - test_fraction))
    assert len(train) == int(n * (1 - (val_fraction + test_fraction)))
    if test_fraction == 0:  # no test text: exactly the two-way split of older runs
        assert (train, val) == split_text(s, val_fraction)


def test_three_way_split_errors():
    s = "x" * 100
    for kwargs, fragment in [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": True}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "below 1"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            split_train_val_test(s, **kwargs)
    with pytest.raises(ValueError, match="too short"):
        split_train_val_test("x" * 10, 0.05, 0.05)  # 5% of 10 characters is none
    with pytest.raises(TypeError, match="str"):
        split_train_val_test(b"bytes")


def test_windows_are_shifted_by_one():
    ids = torch.arange(100) * 3
    ds = TextWindows(ids, seq_len=8)
    assert len(ds) == 92
    x, y = ds[5]
    assert x.tolist() == ids[5:13].tolist() and y.tolist() == ids[6:14].tolist()
    x, y = ds[torch.tensor([0, 91, 40])]
    assert x.shape == y.shape == (3, 8) and x.dtype == torch.long
    torch.testing.assert_close(y[:, :-1], x[:, 1:], rtol=0, atol=0)
    assert int(y[1, -1]) == int(ids[-1])  # the last window ends on the last token
    with pytest.raises(IndexError, match="0 .. 91"):
        ds[92]
    with pytest.raises(ValueError, match="too few"):
        TextWindows(ids[:8], seq_len=8)
    with pytest.raises(ValueError, match="1-d int64"):
        TextWindows(ids.float(), seq_len=8)


def test_random_window_sampler_is_seeded_and_resumable():
    s = RandomWindowSampler(n_windows=1000, batch_size=16, n_batches=5, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 5 and all(b.shape == (16,) and b.dtype == torch.long for b in batches)
    assert all(0 <= int(b.min()) and int(b.max()) < 1000 for b in batches)
    assert all(torch.equal(a, b) for a, b in zip(batches, RandomWindowSampler(1000, 16, 5, seed=0)))
    assert not torch.equal(batches[0], next(iter(RandomWindowSampler(1000, 16, 5, seed=1))))
    resumed = list(RandomWindowSampler(1000, 16, 5, seed=0, start=3))
    assert len(resumed) == 2 and torch.equal(resumed[0], batches[3])
    # with a DataLoader, the dataset builds whole batches
    ds = TextWindows(torch.arange(1008), seq_len=8)
    loader = torch.utils.data.DataLoader(ds, sampler=RandomWindowSampler(len(ds), 4, 2), batch_size=None)
    x, y = next(iter(loader))
    assert x.shape == (4, 8) and torch.equal(y, x + 1)


def test_sequential_windows_cover_the_text_once():
    ds = TextWindows(torch.arange(103), seq_len=10)  # (103 - 1) // 10 = 10 windows, 2 tokens unscored
    sampler = SequentialWindowSampler(ds, batch_size=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 and [len(b) for b in batches] == [4, 4, 2]
    ys = torch.cat([ds[b][1] for b in batches]).flatten()
    assert ys.tolist() == list(range(1, 101))  # every target once, in order, no overlap


def test_bits_per_char():
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert bits_per_char(torch.tensor(math.log(65))) == pytest.approx(math.log2(65))
    with pytest.raises(ValueError, match="finite"):
        bits_per_char(float("nan"))


def test_stream_batches_continue_each_row_where_it_stopped():
    """TBPTT batching (issue 17): row r of batch k+1 starts where row r of batch k ended; every
    row is one contiguous stream; streams do not overlap; only the first batch of a pass resets."""
    from hippos.data.text import StreamWindowSampler, TextWindows

    ids = torch.arange(108)  # token value = position
    ds = TextWindows(ids, seq_len=5)
    sampler = StreamWindowSampler(ds, batch_size=4)
    assert sampler.stream_len == 25 and sampler.per_pass == 5 and len(sampler) == 5  # (107 - 5) // 4 = 25
    batches = [ds[s] for s in sampler]
    for (x0, y0), (x1, _) in zip(batches, batches[1:]):
        assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # continues the row
        assert torch.equal(y0[:, -1], x1[:, 0])  # the last target of a window is the next window's first input
    rows = torch.cat([x for x, _ in batches], dim=1)  # (B, K·T): each row one stream, in order
    for r in range(4):
        assert torch.equal(rows[r], torch.arange(r * 25, r * 25 + 25))
    assert [sampler.resets(k) for k in range(5)] == [True, False, False, False, False]
    assert torch.equal(next(iter(StreamWindowSampler(ds, 4, start=3))), sampler.batch(3))  # resuming
    with pytest.raises(ValueError, match="fewer than one window"):
        StreamWindowSampler(ds, batch_size=30)


def test_stream_batches_over_several_passes():
    """Pass after pass: each pass is contiguous streams again, shifted by a seeded offset below
    the window length; the state resets exactly at pass starts; a resumed sampler continues."""
    from hippos.data.text import StreamWindowSampler, TextWindows

    ids = torch.arange(108)
    ds = TextWindows(ids, seq_len=5)
    sampler = StreamWindowSampler(ds, batch_size=4, n_batches=17, seed=3)
    assert len(sampler) == 17 and sampler.offset(0) == 0
    offsets = {sampler.offset(p) for p in range(1, 20)}
    assert offsets <= set(range(5)) and len(offsets) > 1  # boundaries move between passes
    starts = list(sampler)
    for b in range(17):
        p, k = divmod(b, 5)
        assert sampler.resets(b) == (k == 0)
        assert torch.equal(starts[b], sampler.offset(p) + torch.arange(4) * 25 + 5 * k)
        if k:  # within a pass, each row continues
            assert torch.equal(starts[b], starts[b - 1] + 5)
    assert int(torch.stack(starts).max()) + 5 < len(ids)  # the last window's targets exist
    again = StreamWindowSampler(ds, batch_size=4, n_batches=17, seed=3, start=7)
    assert all(torch.equal(a, b) for a, b in zip(again, starts[7:]))
    assert [again.resets_at(i) for i in range(4)] == [False, False, False, True]  # batch 10 begins pass 2
    other = StreamWindowSampler(ds, batch_size=4, n_batches=17, seed=4)
    assert any(other.offset(p) != sampler.offset(p) for p in range(1, 20))
