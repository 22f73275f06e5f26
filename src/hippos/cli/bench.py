"""``hippos bench layer | train | step | generate``: run, print a Markdown table, save JSON."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from hippos.bench.generate import (
    ALLOCATORS,
    DTYPES,
    PAPER_TABLE7,
    build_configs,
    generate_jobs,
)
from hippos.bench.layer import LAYER_KINDS, layer_jobs
from hippos.bench.long import LONG_KINDS
from hippos.bench.measure import run_isolated, run_rounds
from hippos.bench.train import ALLOCATORS as TRAIN_ALLOCATORS
from hippos.bench.train import TRAIN_MODELS, train_jobs
from hippos.cli.options import UsageError, nonneg_int, positive_float, positive_int

__all__ = ["add_parser"]


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _progress(items, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(items, desc=desc, unit="config")
    except ImportError:  # pragma: no cover
        return items


def _threads(results: list[dict]) -> int:
    """The thread count the measurements ran with (their jobs', else torch's)."""
    return next((r["threads"] for r in results if r.get("threads")), None) or torch.get_num_threads()


def _fmt_gb(b) -> str:
    return f"{b / 2**30:.2f} GB"


def _layer_row_key(r: dict):
    return (r["kind"], r["L"])


def _cpu(r: dict) -> str:
    return f"{r['cpu_s']:.3f}" if "cpu_s" in r else "—"


def run_layer(args) -> list[dict]:
    jobs = layer_jobs(args.layers, args.L, args.batch, args.d_model, args.d_state, args.repeats, args.attn_max_L)
    for job in jobs:
        job.update({k: v for k, v in (("threads", args.threads), ("allocator", args.allocator)) if v is not None})
    todo = [j for j in jobs if "skipped" not in j]
    done = run_rounds(todo, baseline=args.baseline, rounds=args.rounds, timeout=args.timeout, progress=lambda it: _progress(it, "bench layer"))
    results = [dict(j, tree=t) for j in jobs if "skipped" in j for t in (["baseline", "current"] if args.baseline else ["current"])] + done
    order = {(j["kind"], j["L"]): i for i, j in enumerate(jobs)}
    results.sort(key=lambda r: (order[_layer_row_key(r)], r["tree"] != "baseline"))
    base = {(r["L"], r["tree"]): r for r in results if r["kind"] == "attn_fused" and "median_s" in r}
    threads = _threads(results)
    print(
        f"\nforward+backward, batch {args.batch}, H {args.d_model}, N {args.d_state}; {threads} threads, allocator {args.allocator}, "
        f"median of {args.repeats} runs x {args.rounds} round(s); {_machine()}"
    )
    print("| layer | L | code | median s | CPU s | extra peak memory | time vs fused attention | CPU time vs fused attention | memory vs fused attention |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "median_s" not in r:
            print(f"| {r['kind']} | {r['L']} | {r['tree']} | — | — | — | {r.get('skipped') or r.get('error')} | | |")
            continue
        b = base.get((r["L"], r["tree"]))
        t_ratio = f"{r['median_s'] / b['median_s']:.2f}×" if b else "—"
        c_ratio = f"{r['cpu_s'] / b['cpu_s']:.2f}×" if b and "cpu_s" in r and "cpu_s" in b else "—"
        m_ratio = f"{r['extra_peak_bytes'] / max(b['extra_peak_bytes'], 1):.2f}×" if b else "—"
        print(f"| {r['kind']} | {r['L']} | {r['tree']} | {r['median_s']:.3f} | {_cpu(r)} | {_fmt_gb(r['extra_peak_bytes'])} | {t_ratio} | {c_ratio} | {m_ratio} |")
    if args.baseline:
        _print_vs_baseline(results, _layer_row_key, "layer, L")
    return results


def _print_vs_baseline(results: list[dict], key, what: str) -> None:
    """Current against baseline per configuration: time ratios (wall, CPU) and peak memory."""
    pairs: dict = {}
    for r in results:
        if "median_s" in r:
            pairs.setdefault(key(r), {})[r["tree"]] = r
    print(f"\n| {what} | wall time current/baseline | CPU time current/baseline | speed-up (CPU) | peak memory current/baseline |")
    print("|---|---|---|---|---|")
    for k, p in pairs.items():
        if "baseline" not in p or "current" not in p:
            continue
        b, c = p["baseline"], p["current"]
        cpu = c["cpu_s"] / b["cpu_s"] if "cpu_s" in b and "cpu_s" in c else None
        cpu_s = f"{cpu:.3f}" if cpu else "—"
        up = f"{1 / cpu:.2f}×" if cpu else "—"
        print(f"| {', '.join(map(str, k))} | {c['median_s'] / b['median_s']:.3f} | {cpu_s} | {up} | {c['extra_peak_bytes'] / max(b['extra_peak_bytes'], 1):.2f} |")


def run_train(args) -> list[dict]:
    jobs = train_jobs(args.models, args.batch, args.L, args.d_model, args.n_layers, args.d_state, args.repeats, args.threads, args.allocator,
                      norm=args.norm)
    results = run_rounds(jobs, baseline=args.baseline, rounds=args.rounds, timeout=args.timeout, progress=lambda it: _progress(it, "bench train"))
    threads = _threads(results)
    print(
        f"\ntraining step (forward, backward, AdamW), batch {args.batch}, L {args.L}, {args.n_layers} layers, H {args.d_model}, N {args.d_state}, "
        f"SSM blocks' norm {args.norm}; "
        f"{threads} threads, allocator {args.allocator}, median of {args.repeats} steps x {args.rounds} round(s); {_machine()}"
    )
    tf = {r["tree"]: r for r in results if r["model"] == "transformer" and "median_s" in r}
    print("| model | code | params | step s | CPU s/step | samples/s | samples/s (CPU time) | extra peak memory | time vs Transformer | CPU time vs Transformer |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "median_s" not in r:
            print(f"| {r['model']} | {r['tree']} | — | — | — | — | — | — | {r.get('error')} | |")
            continue
        r["samples_per_s"] = r["batch"] / r["median_s"]
        t = tf.get(r["tree"])
        t_ratio = f"{r['median_s'] / t['median_s']:.2f}×" if t else "—"
        c_ratio = f"{r['cpu_s'] / t['cpu_s']:.2f}×" if t else "—"
        print(
            f"| {r['model']} | {r['tree']} | {r['params']:,} | {r['median_s']:.3f} | {r['cpu_s']:.3f} | {r['samples_per_s']:.1f} | "
            f"{r['batch'] / r['cpu_s']:.1f} | {_fmt_gb(r['extra_peak_bytes'])} | {t_ratio} | {c_ratio} |"
        )
    if args.baseline:
        _print_vs_baseline(results, lambda r: (r["model"],), "model")
    return results


def run_step(args) -> list[dict]:
    jobs = [
        {"what": "step", "kind": k, "batch": b, "d_model": args.d_model, "d_state": args.d_state, "steps": args.steps, "repeats": args.repeats}
        for k in args.layers
        for b in args.batch
    ]
    results = [run_isolated(j, timeout=args.timeout) for j in _progress(jobs, "bench step")]
    print(f"\nrecurrent step, H {args.d_model}, N {args.d_state}, {args.steps} steps; {_machine()}")
    print("| layer | batch | tokens/s | ms per step | setup_step s (once) |")
    print("|---|---|---|---|---|")
    for r in results:
        if "median_s" not in r:
            print(f"| {r['kind']} | {r['batch']} | — | {r.get('error')} | |")
            continue
        r["tokens_per_s"] = r["tokens"] / r["median_s"]
        print(f"| {r['kind']} | {r['batch']} | {r['tokens_per_s']:,.0f} | {1000 * r['median_s'] / args.steps:.3f} | {r['setup_s']:.3f} |")
    return results


def _fmt_mb(b) -> str:
    return f"{b / 2**20:,.1f} MiB"


def _print_profiles(profiles: list[dict]) -> None:
    print(
        "\nwhere one decode step spends its time (ms per step, mixers summed over their layers; profiled columns come "
        "from a separate run under torch.profiler, whose overhead and timing differ)"
    )
    print("| model | batch | context | step ms | mixer ms (layers) | MLP ms | rest ms | aten ops/step | profiled step ms | outside aten ms | top ops (share of aten time) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in profiles:
        if "step_ms" not in r:
            print(f"| {r['model']} | {r['batch']} | {r['context']} | — | {r.get('error')} | | | | | | |")
            continue
        parts = r["parts_ms"]
        mixers = ", ".join(f"{k[6:]} {v:.1f} ({r['layers'][k]})" for k, v in parts.items() if k.startswith("mixer:"))
        ops = ", ".join(f"{o['op'][6:]} {100 * o['ms'] / r['aten_ms']:.0f}%" for o in r["top_ops"][:6])
        print(
            f"| {r['model']} | {r['batch']} | {r['context']} | {r['step_ms']:.1f} | {mixers} | {parts.get('mlp', 0):.1f} | "
            f"{parts['rest']:.1f} | {r['aten_ops_per_step']:.0f} | {r['profiled_step_ms']:.1f} | {r['python_ms']:.1f} | {ops} |"
        )


def run_generate(args) -> list[dict]:
    configs = build_configs(args.d_model, args.n_layers, args.attn_layers, args.n_heads, match=not args.same_width)
    nh, nt = configs["hybrid"]["params"], configs["transformer"]["params"]
    hc, tc = configs["hybrid"]["cfg"], configs["transformer"]["cfg"]
    print(
        f"hybrid H3: d_model {hc['d_model']}, {hc['n_layers']} layers, attention at {list(hc['attn_layers'])}, {nh:,} parameters\n"
        f"Transformer: d_model {tc['d_model']}, {tc['n_layers']} layers, {nt:,} parameters ({100 * (nt - nh) / nh:+.1f}% vs hybrid)"
    )
    jobs = generate_jobs(configs, args.batch, args.prompt_len, args.new_tokens, args.repeats, args.threads, args.allocator, args.decode, args.dtype)
    results = [run_isolated(j, timeout=args.timeout) for j in _progress(jobs, "bench generate")]
    ok = [r for r in results if "tokens_per_s" in r]
    threads = ok[0]["threads"] if ok else args.threads
    print(
        f"\ngeneration, {args.new_tokens} new tokens (greedy, {args.decode} decode, {args.dtype}), median of {args.repeats}; byte vocabulary; "
        f"measured with {threads} threads, allocator {args.allocator}; {_machine()}\n"
        "prefill = prompt + setup_step + first token; decode tokens/s = batch·(new−1)/decode time; "
        "end-to-end tokens/s = batch·new/(prefill + decode), the paper's measure"
    )
    print("| model | params | batch | prompt | prefill s | decode s | decode tokens/s | end-to-end tokens/s | KV cache at end | SSM state | extra peak memory |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "tokens_per_s" not in r:
            print(f"| {r['model']} | {r['params']:,} | {r['batch']} | {r['prompt_len']} | — | — | — | {r.get('error')} | | | |")
            continue
        dec = f"{r['decode_tokens_per_s']:,.0f}" if r["decode_tokens_per_s"] else "—"
        print(
            f"| {r['model']} | {r['params']:,} | {r['batch']} | {r['prompt_len']} | {r['prefill_s']:.3f} | {r['decode_s']:.3f} | {dec} | "
            f"{r['tokens_per_s']:,.0f} | {_fmt_mb(r['state_kv_bytes'])} | {_fmt_mb(r['state_ssm_bytes'])} | {_fmt_mb(r['extra_peak_bytes'])} |"
        )
    by = {(r["model"], r["batch"], r["prompt_len"]): r for r in ok}
    print("\n| batch | prompt | end-to-end hybrid/Transformer | decode hybrid/Transformer | prefill Transformer/hybrid | paper (H3 Table 7, batch 64) |")
    print("|---|---|---|---|---|---|")
    for b in args.batch:
        for L in args.prompt_len:
            h, t = by.get(("hybrid", b, L)), by.get(("transformer", b, L))
            if not (h and t):
                continue
            e2e = h["tokens_per_s"] / t["tokens_per_s"]
            dec = f"{h['decode_tokens_per_s'] / t['decode_tokens_per_s']:.2f}×" if h["decode_tokens_per_s"] and t["decode_tokens_per_s"] else "—"
            paper = PAPER_TABLE7.get(L)
            paper = f"{paper[1] / paper[0]:.2f}× ({paper[1]} / {paper[0]})" if paper and b == 64 else "—"
            print(f"| {b} | {L} | {e2e:.2f}× | {dec} | {t['prefill_s'] / h['prefill_s']:.2f}× | {paper} |")
    if args.profile:
        b, ctx = max(args.batch), max(args.prompt_len) + args.new_tokens // 2
        pjobs = [
            {"what": "generate", "model": m, "cfg": configs[m]["cfg"], "params": configs[m]["params"], "batch": b, "context": ctx, "threads": args.threads,
             "allocator": args.allocator, "decode": args.decode, "dtype": args.dtype}
            for m in ("transformer", "hybrid")
        ]
        profiles = [run_isolated(j, timeout=args.timeout) for j in pjobs]
        _print_profiles(profiles)
        results = results + profiles
    return results


def _kept_rows(path: Path, args) -> list[dict]:
    """The rows of ``path`` (a ``bench long --out`` JSON) for layers not in ``--layers``, refused
    when they were measured at other settings."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--keep {str(path)!r}: cannot read it ({e})") from None
    rows = saved.get("results") if isinstance(saved, dict) else None
    host = _machine().rsplit(", ", 1)[0]  # (the thread count is per row)
    if isinstance(rows, list) and not str(saved.get("machine", "")).startswith(host):
        raise UsageError(f"--keep {str(path)!r} was measured on {saved.get('machine')!r}, this is {host!r}")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "kind" in r and "L" in r for r in rows):
        raise UsageError(f"--keep {str(path)!r} is not the JSON of `hippos bench long --out`")
    want = {"batch": args.batch, "d_model": args.d_model, "d_state": args.d_state, "chunk": args.chunk, "mode": args.mode}
    for r in rows:
        other = {k: r.get(k) for k in want if r.get(k) is not None and r.get(k) != want[k]}
        if other:
            raise UsageError(f"--keep {str(path)!r} was measured with {other}, this run with "
                             f"{ {k: want[k] for k in other} }")
    return [r for r in rows if r["kind"] not in args.layers]


def run_long(args) -> list[dict]:
    from hippos.bench.long import fit_slope, long_jobs, plot_long

    if args.L_min > args.L_max:
        raise UsageError(f"--L-min 2^{args.L_min} is above --L-max 2^{args.L_max}")
    exps = range(args.L_min, args.L_max + 1)
    jobs = long_jobs(args.layers, exps, args.batch, args.d_model, args.d_state, args.chunk, args.mode, args.repeats)
    for job in jobs:
        job.update({k: v for k, v in (("threads", args.threads), ("allocator", args.allocator)) if v is not None})
    results, stopped = [], {}
    for job in _progress(jobs, "bench long"):
        kind = job["kind"]
        if kind in stopped:
            continue
        r = run_isolated(job, timeout=args.timeout)
        if "error" in r:  # out of memory, timed out: where and why this layer stops
            stopped[kind] = f"stopped at L 2^{job['L'].bit_length() - 1}: {r.pop('error')}"
            r["stopped"] = stopped[kind]
        else:
            r["working_bytes"] = max(0, r["extra_peak_bytes"] - r.get("output_bytes", 0))
            if r["median_s"] > args.time_budget:
                stopped[kind] = f"stopped after L 2^{job['L'].bit_length() - 1}: {r['median_s']:.0f} s > --time-budget {args.time_budget:g} s"
        results.append(r)
    if args.keep is not None:  # an earlier --out: its rows of the layers not measured now
        kept = _kept_rows(args.keep, args)
        results = sorted(kept + results, key=lambda r: (LONG_KINDS.index(r["kind"]), r["L"]))
        stopped.update({r["kind"]: r["stopped"] for r in kept if "stopped" in r})
        for r in kept:
            if "median_s" in r and r["median_s"] > args.time_budget:
                stopped.setdefault(r["kind"], f"stopped after L 2^{r['L'].bit_length() - 1}: {r['median_s']:.0f} s > --time-budget {args.time_budget:g} s")
    kinds = list(dict.fromkeys(r["kind"] for r in results))
    threads = _threads(results)
    what = "forward (inference mode)" if args.mode == "forward" else "forward + backward through the chunks"
    title = (f"{what}, batch {args.batch}, H {args.d_model}, N {args.d_state}, chunks of {args.chunk}; {threads} threads, "
             f"allocator {args.allocator}, median of {args.repeats}; {_machine()}")
    print("\n" + title)
    print("| layer | L | median s | extra peak memory | of which output | working memory |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "median_s" not in r:
            print(f"| {r['kind']} | 2^{r['L'].bit_length() - 1} | — | — | — | {r['stopped']} |")
            continue
        print(f"| {r['kind']} | 2^{r['L'].bit_length() - 1} | {r['median_s']:.3f} | {_fmt_gb(r['extra_peak_bytes'])} | "
              f"{_fmt_gb(r.get('output_bytes', 0))} | {_fmt_gb(r['working_bytes'])} |")
    print("\n| layer | time slope (log-log, L >= 2^16) | working memory at its largest L / at 2^16 | stopped |")
    print("|---|---|---|---|")
    for kind in kinds:
        ok = [r for r in results if r["kind"] == kind and "median_s" in r]
        big = [r for r in ok if r["L"] >= 1 << 16]
        slope = fit_slope([(r["L"], r["median_s"]) for r in big])
        at16 = next((r for r in ok if r["L"] == 1 << 16), None)
        growth = f"{big[-1]['working_bytes'] / max(at16['working_bytes'], 1):.2f}× (2^{big[-1]['L'].bit_length() - 1})" if at16 and big else "—"
        print(f"| {kind} | {f'{slope:.3f}' if slope is not None else '—'} | {growth} | {stopped.get(kind, 'no')} |")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_long(results, args.plot, title)
        print(f"wrote {args.plot}")
    return results


def _main(args) -> int:
    run = {"layer": run_layer, "step": run_step, "generate": run_generate, "train": run_train, "long": run_long}[args.bench]
    results = run(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": _machine(), "results": results}, indent=1))
        print(f"wrote {args.out}")
    return 0 if all("error" not in r for r in results) else 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmarks: layer time/memory, recurrent step speed, generation")
    sub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    lay = sub.add_parser("layer", help="forward+backward time and extra peak memory: S4, S4D, Transformer")
    lay.add_argument("--L", type=positive_int, nargs="+", default=[1024, 4096, 16384])
    lay.add_argument("--batch", type=positive_int, default=8)
    lay.add_argument("--layers", nargs="+", choices=LAYER_KINDS, default=list(LAYER_KINDS))
    lay.add_argument("--attn-max-L", dest="attn_max_L", type=positive_int, default=8192, help="skip attention above this L (default 8192)")
    trn = sub.add_parser("train", help="training-step samples/s and peak memory: sMNIST-size S4, S4D and Transformer classifiers")
    trn.add_argument("--models", nargs="+", choices=TRAIN_MODELS, default=list(TRAIN_MODELS))
    trn.add_argument("--batch", type=positive_int, default=50)
    trn.add_argument("--L", type=positive_int, default=784, help="sequence length (default 784, sequential MNIST)")
    trn.add_argument("--d-model", dest="d_model", type=positive_int, default=64)
    trn.add_argument("--n-layers", dest="n_layers", type=positive_int, default=4)
    trn.add_argument("--d-state", dest="d_state", type=positive_int, default=64)
    trn.add_argument("--repeats", type=positive_int, default=5, help="timed steps per process, after 2 warm-up steps (default 5)")
    trn.add_argument("--norm", choices=("layer", "batch"), default="layer",
                     help="the S4 / S4D blocks' norm (default layer; batch: the LRA and speech models'); the Transformer keeps LayerNorm")
    for q in (lay, trn):
        q.add_argument("--rounds", type=positive_int, default=1, help="processes per configuration (and tree), alternating; medians over rounds")
        q.add_argument("--baseline", default=None, metavar="SRC",
                       help="also time another hippos source tree (e.g. the src/ of `git worktree add /tmp/hippos-head HEAD`), alternating with this one")
        q.add_argument("--threads", type=positive_int, default=None, help="torch threads in each measurement (default: torch's)")
        q.add_argument("--allocator", choices=TRAIN_ALLOCATORS, default="thp",
                       help="thp: THP_MEM_ALLOC_ENABLE=1, torch backs large tensors with transparent huge pages (what the `hippos` "
                       "command sets for itself; default); system: glibc and torch defaults (a Python program's); cached: keep "
                       "freed memory in the heap (mallopt)")
    stp = sub.add_parser("step", help="recurrent tokens/s of S4 (DPLR) and S4D layers")
    stp.add_argument("--batch", type=positive_int, nargs="+", default=[1, 64])
    stp.add_argument("--layers", nargs="+", choices=("s4", "s4d"), default=["s4", "s4d"])
    stp.add_argument("--steps", type=positive_int, default=256)
    gen = sub.add_parser("generate", help="generation tokens/s: hybrid H3 vs a Transformer of equal size (H3 Table 7)")
    gen.add_argument("--d-model", dest="d_model", type=positive_int, default=256, help="the hybrid's width (default 256)")
    gen.add_argument("--n-layers", dest="n_layers", type=positive_int, default=8)
    gen.add_argument("--attn-layers", dest="attn_layers", type=nonneg_int, nargs="+", default=None, help="the hybrid's attention layers (default n//3 and 2n//3)")
    gen.add_argument("--n-heads", dest="n_heads", type=positive_int, default=4, help="attention heads (both models)")
    gen.add_argument("--batch", type=positive_int, nargs="+", default=[1, 64])
    gen.add_argument("--prompt-len", dest="prompt_len", type=positive_int, nargs="+", default=[512, 1024, 1536])
    gen.add_argument("--new-tokens", dest="new_tokens", type=positive_int, default=128)
    gen.add_argument("--repeats", type=positive_int, default=1)
    gen.add_argument("--threads", type=positive_int, default=None, help="torch threads in each measurement (default: torch's)")
    gen.add_argument("--allocator", choices=ALLOCATORS, default="cached", help="cached: keep freed memory in the heap (default); system: glibc defaults")
    gen.add_argument("--same-width", dest="same_width", action="store_true", help="give the Transformer the hybrid's width instead of matching parameter counts")
    gen.add_argument("--profile", action="store_true", help="also profile one decode step of each model (largest batch, longest prompt)")
    gen.add_argument("--decode", choices=("fast", "reference"), default="fast",
                     help="fast: LanguageModel.decoder, the layers' in-place steppers (default); reference: LanguageModel.step")
    gen.add_argument("--dtype", choices=tuple(DTYPES), default="float32",
                     help="both models' parameters (default float32; the SSMs compute in float32 whatever it is)")
    for q in (lay, stp):
        q.add_argument("--d-model", dest="d_model", type=positive_int, default=256)
        q.add_argument("--d-state", dest="d_state", type=positive_int, default=64)
        q.add_argument("--repeats", type=positive_int, default=3)
    lng = sub.add_parser("long", help="time and memory of a forward pass from L 2^12 to 2^22: state passing vs one pass vs attention")
    lng.add_argument("--layers", nargs="+", choices=LONG_KINDS, default=list(LONG_KINDS))
    lng.add_argument("--L-min", dest="L_min", type=positive_int, default=12, help="smallest L as a power of two (default 12: 4,096)")
    lng.add_argument("--L-max", dest="L_max", type=positive_int, default=22, help="largest L as a power of two (default 22: 4,194,304)")
    lng.add_argument("--batch", type=positive_int, default=1)
    lng.add_argument("--d-model", dest="d_model", type=positive_int, default=256)
    lng.add_argument("--d-state", dest="d_state", type=positive_int, default=64)
    lng.add_argument("--chunk", type=positive_int, default=1 << 16, help="state-passing chunk length (default 65,536)")
    lng.add_argument("--mode", choices=("forward", "train"), default="forward",
                     help="forward: inference mode (default); train: forward + backward through the chunks")
    lng.add_argument("--repeats", type=positive_int, default=1)
    lng.add_argument("--time-budget", dest="time_budget", type=positive_float, default=120.0,
                     help="a layer stops after the first L slower than this many seconds (default 120)")
    lng.add_argument("--threads", type=positive_int, default=None, help="torch threads in each measurement (default: torch's)")
    lng.add_argument("--allocator", choices=TRAIN_ALLOCATORS, default="thp", help="as in bench layer (default thp)")
    lng.add_argument("--plot", type=Path, default=None, help="save time and memory vs L (log-log) as this PNG")
    lng.add_argument("--keep", type=Path, default=None, metavar="OUT.json",
                     help="take the layers not in --layers from this earlier --out (re-measure one layer after a change)")
    for q in (lay, stp, gen, trn, lng):
        q.add_argument("--timeout", type=positive_float, default=900.0, help="seconds per configuration")
        q.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
        q.set_defaults(func=_main)
