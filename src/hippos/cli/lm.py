"""``hippos synthetics`` and ``hippos generate``: the language-model commands.

    hippos synthetics [--out-dir DIR] [--tasks ar,ih] [--models s4d,h3,attention]
                      [--epochs-scale F] [--max-epochs N] [--n-train N] [--n-test N]
                      [--seeds LIST] [--device DEV] [--num-threads N] [--jobs N] [--no-progress]
    hippos generate RUN_DIR --prompt TEXT [--max-new-tokens N] [--temperature T]
                    [--top-k K] [--top-p P] [--seed S] [--prefill-chunk N]
                    [--decode fast|reference] [--dtype float32|bfloat16|float16]
                    [--weights last|best] [--device DEV] [--no-echo]

``synthetics`` reproduces H3 Table 2 (``hippos.experiments.synthetics``); ``generate`` loads a trained
LM run (``ar``, ``ih`` or ``charlm``: config, weights and vocabulary) and streams tokens to
stdout as the model writes them, then one line on stderr with the prefill's and the decoding's
tokens/s (stdout holds the text only). See docs/synthetics.md and docs/training.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hippos.cli.options import nonneg_int, positive_float, positive_int

__all__ = ["add_parser", "load_lm_run", "run_generate", "run_synthetics_command"]


def _name_list(allowed: tuple[str, ...]):
    """An argparse type: a comma-separated list of names from ``allowed``, duplicates dropped."""

    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}")
        return list(dict.fromkeys(names))

    return parse


def _seed_list(text: str) -> list[int]:
    """An argparse type: comma-separated integers >= 0, duplicates dropped (``0,1,2``)."""
    try:
        seeds = [nonneg_int(t.strip()) for t in text.split(",") if t.strip()]
    except (argparse.ArgumentTypeError, ValueError):
        seeds = []
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return list(dict.fromkeys(seeds))


# ----------------------------------------------------------------------------- synthetics


def run_synthetics_command(args: argparse.Namespace) -> int:
    from hippos.experiments.synthetics import run_synthetics

    progress = not args.no_progress and sys.stderr.isatty()

    def echo(line: str) -> None:
        if progress:
            from tqdm.auto import tqdm

            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    run_synthetics(
        args.tasks, args.models, args.out_dir, progress=progress, echo=echo, epochs_scale=args.epochs_scale,
        max_epochs=args.max_epochs, n_train=args.n_train, n_test=args.n_test, seeds=args.seeds, device=args.device,
        num_threads=args.num_threads, jobs=args.jobs,
    )
    return 0


# ----------------------------------------------------------------------------- generate


def load_lm_run(run_dir: str | Path, weights: str = "last", device: str | None = None):
    """``(model, vocab, cfg)`` of a trained LM run, the model in eval mode on its device.

    ``vocab`` is the run's ``CharVocab`` (charlm, from ``vocab.json``) or synthetic ``Vocab``.
    """
    from hippos.train.loop import resolve_device, resolve_task
    from hippos.train.registry import config_from_dict
    from hippos.train.rundir import RunDir
    from hippos.train.tasks.lm import tokens_of

    run = RunDir.open(run_dir)
    cfg = config_from_dict(run.config_dict())
    task = resolve_task(cfg)
    if task.objective.kind not in ("last_token", "per_token"):
        kind = {"classification": "a classifier", "regression": "a forecaster"}.get(task.objective.kind, "not a language model")
        raise ValueError(f"{str(run.path)!r} is a {cfg.task!r} run ({kind}); generate needs a language model run (ar, ih, charlm)")
    if cfg.model.vocab_size == 0:
        raise ValueError(f"{str(run.path)!r}: the run never started training (model.vocab_size not resolved)")
    if device is not None:
        cfg.device = device
    dev = resolve_device(cfg.device)
    from hippos.train import checkpoint as ckpt_io

    found = ckpt_io.find_checkpoint(run_dir)
    file = found / ckpt_io.MODEL if (weights == "last" and found is not None) else run.weights(weights)
    run_dir = run.path
    vocab = tokens_of(cfg, run_dir)
    if len(vocab) != cfg.model.vocab_size:
        raise ValueError(f"{str(run_dir)!r}: the vocabulary has {len(vocab)} tokens, the model {cfg.model.vocab_size}")
    model = task.build_model(cfg).to(dev)
    ckpt_io.load_weights(model, file, dev)
    return model.eval(), vocab, cfg


def _encode(vocab, prompt: str):
    import torch

    from hippos.data.text import CharVocab

    if not prompt or (not isinstance(vocab, CharVocab) and not prompt.split()):
        raise ValueError("the prompt is empty: give at least one token")
    ids = vocab.encode(prompt)
    return torch.as_tensor(ids, dtype=torch.long)


def run_generate(args: argparse.Namespace, out=None) -> int:
    import torch


    out = sys.stdout if out is None else out
    model, vocab, cfg = load_lm_run(args.run_dir, args.weights, args.device)
    dtype = getattr(args, "dtype", None)
    if dtype is not None:  # inference in another precision: the SSMs still compute in float32
        model = model.to(getattr(torch, dtype))
    before = torch.get_num_threads()
    try:
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        return _write_stream(args, out, model, vocab)
    finally:
        torch.set_num_threads(before)


def speed_line(prompt_tokens: int, prefill_s: float, new_tokens: int, decode_s: float) -> str:
    """``prefill: P tokens in S s (R tokens/s); decode: N tokens in S s (R tokens/s)``: the prefill
    runs the prompt and gives the first new token; decoding gives the others (one step each)."""
    def rate(n: int, s: float) -> str:
        return f"{n / s:,.0f} tokens/s" if s > 0 and n > 0 else "— tokens/s"

    return (f"prefill: {prompt_tokens} tokens in {prefill_s:.3f} s ({rate(prompt_tokens, prefill_s)}); "
            f"decode: {new_tokens} tokens in {decode_s:.3f} s ({rate(new_tokens, decode_s)})")


def _write_stream(args: argparse.Namespace, out, model, vocab, err=None) -> int:
    from hippos.data.text import CharVocab

    ids = _encode(vocab, args.prompt)
    chars = isinstance(vocab, CharVocab)
    n_new = args.max_new_tokens if args.max_new_tokens is not None else (200 if chars else 1)
    prompt = ids[None].to(next(model.parameters()).device)
    stream = model.generate_stream(prompt, n_new, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                   seed=args.seed, prefill_chunk=args.prefill_chunk,
                                   decode=getattr(args, "decode", "fast"))  # validates the options first
    sep = "" if chars else " "
    if not args.no_echo:
        out.write(vocab.decode(ids))
        out.flush()
    first = args.no_echo
    t0 = time.perf_counter()
    t_first = None
    for token in stream:  # the time to the first token is the prefill's (prompt + first sample)
        if t_first is None:
            t_first = time.perf_counter()
        text = vocab.decode(token.tolist())
        out.write(text if first else sep + text)
        out.flush()
        first = False
    t_end = time.perf_counter()
    out.write("\n")
    out.flush()
    if n_new > 0:  # writing the text is counted in: what a reader of the stream waits for
        err = sys.stderr if err is None else err
        print(speed_line(len(ids), t_first - t0, n_new - 1, t_end - t_first), file=err, flush=True)
    return 0


# ----------------------------------------------------------------------------- parsers


def add_parser(subparsers) -> None:
    from hippos.models.lm_config import MIXERS

    s = subparsers.add_parser(
        "synthetics",
        help="H3 Table 2: train S4D, H3 and attention on associative recall and induction head; print the table",
        description="Train the 2-layer models of H3 Table 2 (the paper's configs) on associative recall (ar) and "
        "induction head (ih), one resumable run each in OUT_DIR/<task>-<model>, and print the last-token test "
        "accuracy beside the paper's. Rerunning continues unfinished runs and skips finished ones.",
    )
    s.add_argument("--out-dir", "--out_dir", dest="out_dir", metavar="DIR", default="runs/synthetics", help="where the runs and the table go (default: runs/synthetics)")
    s.add_argument("--tasks", metavar="LIST", type=_name_list(("ar", "ih")), default=["ar", "ih"], help="comma-separated: ar, ih (default: both)")
    s.add_argument("--models", metavar="LIST", type=_name_list(MIXERS), default=["s4d", "h3", "attention"],
                   help=f"comma-separated mixers among {', '.join(MIXERS)} (default: s4d,h3,attention)")
    s.add_argument("--epochs-scale", metavar="F", type=positive_float, default=1.0, help="multiply the paper's epochs (200 ar, 400 ih) by F (at least 1 epoch)")
    s.add_argument("--max-epochs", metavar="N", type=positive_int, default=None, help="at most N epochs per run")
    s.add_argument("--n-train", metavar="N", type=positive_int, default=None, help="training examples (default: 5000)")
    s.add_argument("--n-test", metavar="N", type=positive_int, default=None, help="test examples (default: 500)")
    s.add_argument("--seeds", "--seed", dest="seeds", metavar="LIST", type=_seed_list, default=[0],
                   help="comma-separated training seeds, one run per cell each (default: 0); the table shows every "
                   "finished seed of a cell in OUT_DIR")
    s.add_argument("--device", metavar="DEV", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    s.add_argument("--num-threads", metavar="N", type=nonneg_int, default=None, help="torch CPU threads (default: the tasks' 1; 0: torch's default)")
    s.add_argument("--jobs", metavar="N", type=positive_int, default=1,
                   help="train N runs at once, one process each (default: 1; 2 on a 2-core machine halves the wall time)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars (one line per run)")
    s.set_defaults(func=run_synthetics_command)

    g = subparsers.add_parser(
        "generate",
        help="stream text (charlm) or tokens (ar, ih) from a trained language model run",
        description="Load a language-model run (config, weights, vocabulary), encode the prompt (characters for "
        "charlm; space-separated tokens such as '0 4 1 5 => 0' for ar/ih) and print the prompt and the "
        "continuation as it is generated (prompt through the convolutional view, then one recurrent step per token).",
    )
    g.add_argument("run_dir", metavar="RUN_DIR", help="run directory (or its checkpoint/ directory)")
    g.add_argument("--prompt", metavar="TEXT", required=True, help="the text (charlm) or space-separated tokens (ar, ih) to continue")
    g.add_argument("--max-new-tokens", metavar="N", type=nonneg_int, default=None, help="tokens to generate (default: 200 for charlm, 1 for ar/ih)")
    g.add_argument("--temperature", metavar="T", type=float, default=1.0, help="softmax temperature; 0 is greedy (default: 1.0)")
    g.add_argument("--top-k", metavar="K", type=positive_int, default=None, help="sample among the K most likely tokens")
    g.add_argument("--top-p", metavar="P", type=positive_float, default=None, help="nucleus sampling: the smallest set of mass P (0 < P <= 1)")
    g.add_argument("--seed", metavar="S", type=nonneg_int, default=None, help="seed of the sampler (default: unseeded)")
    g.add_argument("--prefill-chunk", metavar="N", type=positive_int, default=None, help="feed the prompt in chunks of N tokens (same result)")
    g.add_argument("--decode", choices=("fast", "reference"), default="fast",
                   help="fast: the layers' in-place steppers (default); reference: LanguageModel.step (same tokens)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="run the model in this dtype (default: as trained); the SSMs compute in float32 whatever it is")
    g.add_argument("--weights", choices=("last", "best"), default="last", help="last checkpoint or best validation weights (default: last)")
    g.add_argument("--device", metavar="DEV", default=None, help="cpu, cuda, cuda:N or auto (default: the run's)")
    g.add_argument("--no-echo", action="store_true", help="print only the continuation, not the prompt")
    g.set_defaults(func=run_generate)
