"""LRA ListOps generator: semantics, tree distribution, format, labels by independent evaluators,
determinism, dedup, disjoint splits and the cache."""

from collections import Counter

import numpy as np
import pytest

from hippos.data import listops
from hippos.data.listops import (
    EOS,
    OPERATORS,
    STREAM_ID,
    VOCAB,
    ListOpsDataConfig,
    UniformStream,
    detokenize,
    generate_listops,
    generate_tree,
    load_listops,
    tokenize,
    tree_to_string,
    tree_value,
)

SMALL = {"min_length": 20, "max_length": 200}  # fast sets for the properties that do not need the LRA lengths


# ---- two evaluators written here, sharing nothing with the module --------------------------------

def _apply(op: str, args: list[int]) -> int:
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":
        return int(np.median(args))
    if op == "[SM":
        return sum(args) % 10
    raise AssertionError(f"unknown operator {op}")


def eval_tokens(ids) -> int:
    """Stack evaluation of S4 token ids: an operator opens a frame, X closes and applies it."""
    names = [VOCAB[i] for i in np.asarray(ids).tolist()]
    assert names[-1] == "<eos>" and "<eos>" not in names[:-1]
    stack: list[list] = []
    result = None
    for name in names[:-1]:
        if name in OPERATORS:
            stack.append([name])
        elif name == "X":
            op, *args = stack.pop()
            assert len(args) >= 2
            v = _apply(op, args)
            if stack:
                stack[-1].append(v)
            else:
                assert result is None
                result = v
        else:
            assert name.isdigit() and len(name) == 1 and stack
            stack[-1].append(int(name))
    assert not stack and result is not None
    return result


def parse_pairs(s: str):
    """Parse LRA's string form: an item is a word or ``( item item )``; returns the nested pairs."""
    words = s.split()
    pos = 0

    def item():
        nonlocal pos
        w = words[pos]
        pos += 1
        if w != "(":
            assert w not in (")",)
            return w
        a, b = item(), item()
        assert words[pos] == ")", f"expected ) at word {pos}"
        pos += 1
        return (a, b)

    out = item()
    assert pos == len(words), "trailing words"
    return out


def eval_pairs(p) -> int:
    """Value of ``((...((op, a1), a2)..., ak), ])`` or of a digit."""
    if isinstance(p, str):
        assert p.isdigit() and len(p) == 1
        return int(p)
    inner, close = p
    assert close == "]"
    args = []
    while isinstance(inner, tuple):
        inner, a = inner
        args.append(eval_pairs(a))
    assert inner in OPERATORS and len(args) >= 2
    return _apply(inner, args[::-1])


# ---- semantics -----------------------------------------------------------------------------------

def test_small_trees_by_hand():
    t = ("[MAX", (2, 9))
    assert tree_to_string(t) == "( ( ( [MAX 2 ) 9 ) ] )" and tree_value(t) == 9
    t3 = ("[MIN", (3, 8, 5))
    assert tree_to_string(t3) == "( ( ( ( [MIN 3 ) 8 ) 5 ) ] )" and tree_value(t3) == 3
    assert tree_value(("[MED", (1, 2))) == 1  # int(1.5)
    assert tree_value(("[MED", (3, 8, 1, 6))) == 4  # middle 3, 6 -> 4.5 -> 4
    assert tree_value(("[MED", (7, 0, 9))) == 7
    assert tree_value(("[SM", (9, 9, 5))) == 3  # 23 % 10
    nested = ("[SM", (("[MIN", (4, 7)), 8, ("[MED", (0, 9, 5))))  # 4 + 8 + 5 = 17
    assert tree_value(nested) == 7
    s = tree_to_string(nested)
    assert s == "( ( ( ( [SM ( ( ( [MIN 4 ) 7 ) ] ) ) 8 ) ( ( ( ( [MED 0 ) 9 ) 5 ) ] ) ) ] )"
    assert eval_pairs(parse_pairs(s)) == 7 and eval_tokens(tokenize(s)) == 7
    assert tree_value(6) == 6 and tree_to_string(6) == "6"


def test_operators_equal_their_closed_forms():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        a = rng.integers(0, 10, size=rng.integers(2, 11)).tolist()
        t = tuple(a)
        assert tree_value(("[MED", t)) == int(np.median(a))
        if len(a) % 2 == 0:  # even count: floor of the mean of the two middle values
            s = sorted(a)
            assert tree_value(("[MED", t)) == (s[len(a) // 2 - 1] + s[len(a) // 2]) // 2
        assert tree_value(("[SM", t)) == sum(a) % 10
        assert tree_value(("[MIN", t)) == min(a) and tree_value(("[MAX", t)) == max(a)


def test_tokenize_detokenize():
    ids = tokenize("( ( ( [MAX 2 ) 9 ) ] )")
    assert ids.dtype == np.uint8
    assert [VOCAB[i] for i in ids] == ["[MAX", "2", "9", "X", "<eos>"]
    assert len(VOCAB) == 18 and VOCAB[:7] == ("<pad>", "<unk>", "<eos>", "[MIN", "[MAX", "[MED", "[SM")
    assert VOCAB[7:] == tuple("0123456789") + ("X",)
    assert detokenize(ids) == "[MAX 2 9 ]"
    assert detokenize(np.concatenate([ids, [0, 0]])) == "[MAX 2 9 ]"  # padding after EOS


# ---- the tree distribution -----------------------------------------------------------------------

def _walk(tree, depth, out):
    if isinstance(tree, int):
        out["leaf_depth"].append(depth)
        return
    op, children = tree
    out["ops"].append(op)
    out["k"].append(len(children))
    out["op_depth"].append(depth)
    for c in children:
        _walk(c, depth + 1, out)


def test_tree_distribution_and_length():
    u = UniformStream(np.random.default_rng(1))
    roots, stats = [], {"ops": [], "k": [], "op_depth": [], "leaf_depth": []}
    for _ in range(20000):
        tree, length = generate_tree(u, max_depth=3)
        roots.append(isinstance(tree, int))
        _walk(tree, 1, stats)
        if len(roots) <= 500:  # the length is the number of tokens without parentheses
            assert length == len(tokenize(tree_to_string(tree))) - 1
    assert abs(np.mean(roots) - 0.75) < 0.015  # P(leaf) = 1 - VALUE_P; sd 0.003
    assert max(stats["op_depth"]) <= 2 and max(stats["leaf_depth"]) <= 3  # depth 3 = max_depth: leaves only
    ops = Counter(stats["ops"])
    n_ops = sum(ops.values())
    assert set(ops) == set(OPERATORS) and all(abs(c / n_ops - 0.25) < 0.03 for c in ops.values())
    k = np.bincount(stats["k"], minlength=11)
    assert k[:2].sum() == 0 and len(k) == 11  # k in 2..10
    assert np.all(np.abs(k[2:] / n_ops - 1 / 9) < 0.03)
    assert generate_tree(np.random.default_rng(0), max_depth=1)[1] == 1  # the root at max_depth is a leaf


# ---- generated sets ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lra_set():
    return generate_listops(400, seed=0)  # the spec's defaults: 500 < length < 2000


def test_format_and_labels_at_spec_defaults(lra_set):
    assert len(lra_set) == 400
    for s, label in lra_set:
        ids = tokenize(s)
        assert 502 <= len(ids) <= 2000  # generator length 501..1999, plus EOS
        assert ids.max() < len(VOCAB) and ids[-1] == EOS and (ids == EOS).sum() == 1
        assert not np.isin(ids, [0, 1]).any()  # no <pad>, no <unk>
        assert detokenize(ids) == " ".join(s.replace("(", " ").replace(")", " ").split())
        assert label == eval_pairs(parse_pairs(s)) == eval_tokens(ids)
        assert 0 <= label <= 9


def test_label_distribution(lra_set):
    counts = np.bincount([y for _, y in lra_set], minlength=10) / len(lra_set)
    # Measured on 20,000 (seed 0): 0 and 9 at ~17% (MIN and MAX at the root), the others 7-9.3%.
    # With n = 400 the standard deviation of a share is <= 1.9%: every label appears, none above
    # 30% (> 6 sd above 17%), and 0 and 9 stay above 11% (3 sd below 17%).
    assert (counts > 0).all()
    assert counts.max() < 0.30
    assert counts[0] > 0.11 and counts[9] > 0.11


def test_stream_is_the_documented_one():
    """generate_listops = the first n distinct kept trees of SeedSequence([seed, STREAM_ID])."""
    got = generate_listops(50, seed=3, **SMALL)
    u = UniformStream(np.random.Generator(np.random.PCG64(np.random.SeedSequence([3, STREAM_ID]))))
    want: dict[str, int] = {}
    while len(want) < 50:
        tree, length = generate_tree(u)
        if 20 < length < 200:
            want.setdefault(tree_to_string(tree), tree_value(tree))
    assert got == list(want.items())


def test_deterministic_prefix_and_seeds():
    a = generate_listops(40, seed=1, **SMALL)
    assert a == generate_listops(40, seed=1, **SMALL)
    assert a[:15] == generate_listops(15, seed=1, **SMALL)  # a shorter set is a prefix
    b = generate_listops(40, seed=2, **SMALL)
    assert not set(a) & set(b)
    for s, _ in a:
        assert 21 <= len(tokenize(s)) - 1 <= 199


def test_duplicates_are_dropped():
    # Lengths 3..5 allow only 4*10^2 + 4*10^3 trees: duplicates are drawn often (birthday bound)
    out = generate_listops(1000, seed=0, min_length=2, max_length=6, max_depth=2, max_args=3)
    strings = [s for s, _ in out]
    assert len(set(strings)) == 1000
    u = UniformStream(np.random.Generator(np.random.PCG64(np.random.SeedSequence([0, STREAM_ID]))))
    drawn, seen = 0, set()
    while len(seen) < 1000:
        tree, length = generate_tree(u, max_depth=2, max_args=3)
        if 2 < length < 6:
            drawn += 1
            seen.add(tree)
    assert drawn > 1000  # so the set above had duplicates to drop


def test_too_few_trees_is_an_error(monkeypatch):
    monkeypatch.setattr(listops, "_MAX_MISSES", 2000)
    assert len(generate_listops(10, seed=0, min_length=0, max_length=2)) == 10  # the 10 leaves
    with pytest.raises(RuntimeError, match="too few distinct trees"):
        generate_listops(11, seed=0, min_length=0, max_length=2)


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be"),
    ({"seed": -1}, "seed must be"),
    ({"min_length": 500, "max_length": 501}, "max_length must be"),
    ({"max_args": 1}, "max_args must be"),
    ({"max_depth": 2, "max_args": 3, "min_length": 5}, "longest possible tree"),
    ({"n": True}, "n must be"),
])
def test_bad_arguments(kwargs, match):
    args = {"n": 5, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        generate_listops(**args)


def test_bad_inputs():
    with pytest.raises(ValueError, match="leaf is a digit"):
        tree_value(("[MAX", (2, 10)))
    with pytest.raises(ValueError, match="a tree is"):
        tree_to_string(("[FIRST", (1, 2)))
    with pytest.raises(ValueError, match="not in the ListOps vocabulary"):
        tokenize("( ( ( [FIRST 2 ) 9 ) ] )")
    with pytest.raises(ValueError, match="token ids must be"):
        detokenize([3, 18])
    with pytest.raises(ValueError, match="n_val must be"):
        ListOpsDataConfig(n_val=-1)


# ---- load_listops and the cache ------------------------------------------------------------------

def test_load_listops_splits_and_cache(tmp_path, monkeypatch):
    assert (ListOpsDataConfig().n_train, ListOpsDataConfig().n_val, ListOpsDataConfig().n_test) == (96000, 2000, 2000)
    cfg = ListOpsDataConfig(n_train=40, n_val=12, n_test=8, seed=5, cache_dir=str(tmp_path), **SMALL)
    builds = []
    real_build = listops._build
    monkeypatch.setattr(listops, "_build", lambda *a: builds.append(a) or real_build(*a))
    lines = []
    first = load_listops(cfg, log=lines.append)
    assert len(builds) == 1 and len(lines) == 2 and str(tmp_path) in lines[0]  # where, then how long
    assert lines[1].startswith("generated listops in ")

    every = generate_listops(60, seed=5, **SMALL)  # one stream: train, then val, then test
    start, seqs = 0, {}
    for split, n in zip(("train", "val", "test"), (40, 12, 8)):
        tokens, offsets, labels = first[split]
        assert tokens.dtype == np.uint8 and offsets.dtype == np.int64 and labels.dtype == np.int64
        assert offsets.shape == (n + 1,) and labels.shape == (n,) and offsets[0] == 0 and offsets[-1] == len(tokens)
        seqs[split] = set()
        for i in range(n):
            ids = tokens[offsets[i]:offsets[i + 1]]
            s, y = every[start + i]
            np.testing.assert_array_equal(ids, tokenize(s))
            assert labels[i] == y == eval_tokens(ids)
            seqs[split].add(ids.tobytes())
        assert len(seqs[split]) == n
        start += n
    assert not (seqs["train"] & seqs["val"] or seqs["train"] & seqs["test"] or seqs["val"] & seqs["test"])

    monkeypatch.setattr(listops, "_build", lambda *a: pytest.fail("regenerated a cached set"))
    again = load_listops(cfg)
    for split in first:
        for a, b in zip(first[split], again[split]):
            np.testing.assert_array_equal(a, b)
