"""Why does carried-state training (``--data.carry_state=true``) do worse than random windows?
The checks behind docs/training.md ("Carried state against independent windows").

    python scripts/carry_ablation.py train --reset-every K HIPPOS_TRAIN_ARGS...
        ``hippos train`` with the state dropped after every K-th window of the streams (K = 1: the
        stream order of a carried run, but every window starts from zero: the order alone;
        K = 2: at most one window of history; ...). Pass ``--data.carry_state=true``.
    python scripts/carry_ablation.py state-norms RUN
        per layer, the norm of the state after window k of one stream read with the state carried,
        beside the state one window leaves from a zero start (does the carried state grow?)
    python scripts/carry_ablation.py grad-norms RUN
        the gradient norm by parameter kind on one batch of stream windows, with the state carried
        from the 8 windows before it (detached) and from zero (does the state's term dominate
        the gradient, so that clipping shrinks the rest?)
"""

from __future__ import annotations

import argparse
import collections
import sys

import torch
import torch.nn.functional as F


def _stream_ids(data) -> torch.Tensor:
    """The training text as token ids ``long(N)``."""
    return next(v for v in vars(data.train).values() if torch.is_tensor(v) and v.dim() == 1 and v.dtype == torch.long)


def train_with_resets(every: int, argv: list[str]) -> int:
    from hippos.cli import main
    from hippos.train import carry

    keep = carry.StateCarry.keep

    def keep_some(self, next_state) -> None:
        self.kept = getattr(self, "kept", 0) + 1
        if self.kept % every == 0:
            self.state = None
        else:
            keep(self, next_state)

    carry.StateCarry.keep = keep_some
    return main(["train", *argv])


def state_norms(run: str, windows: int = 121, T: int = 256) -> None:
    from hippos.cli.train import load_run
    from hippos.train.carry import flatten_state

    model, _, _, data = load_run(run, "last")[:4]
    x = _stream_ids(data)[: T * windows][None]  # one stream
    state, rows = None, []
    with torch.no_grad():
        for k in range(windows):
            w = x[:, T * k : T * (k + 1)]
            _, state = model(w, state, return_state=True)
            if k in (0, 1, 3, 10, 30, 60, windows - 1):
                _, fresh = model(w, None, return_state=True)
                a, b = flatten_state(state), flatten_state(fresh)
                rows.append((k, {n: (a[n].norm().item(), b[n].norm().item()) for n in a}))
    names = list(rows[0][1])
    print("window | " + " | ".join(names) + "   (carried / from zero)")
    for k, r in rows:
        print(f"{k:6d} | " + " | ".join(f"{r[n][0]:.3g} / {r[n][1]:.3g}" for n in names))


def grad_norms(run: str, B: int = 32, T: int = 256) -> None:
    from hippos.cli.train import load_run

    model, _, _, data = load_run(run, "last")[:4]
    model.train()
    ids = _stream_ids(data)
    starts = torch.arange(B) * (len(ids) // B)

    def window(k):
        w = ids[starts[:, None] + k * T + torch.arange(T + 1)]
        return w[:, :-1], w[:, 1:]

    def kind(name: str) -> str:
        return next((key for key in ("log_dt", "log_neg_re", "im", "shift", "embed", "norm") if key in name), "other")

    state = None
    with torch.no_grad():
        for k in range(8):
            _, state = model(window(k)[0], state, return_state=True)
    for label, st in (("carried", state), ("zero", None)):
        model.zero_grad()
        x, y = window(8)
        logits = model(x, st, return_state=True)[0] if st is not None else model(x)[0]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        sq = collections.Counter()
        for n, p in model.named_parameters():
            if p.grad is not None:
                sq[kind(n)] += p.grad.pow(2).sum().item()
        print(f"{label:8s} loss {loss.item():.3f}  grad norm {sum(sq.values()) ** 0.5:.3g}  "
              + "  ".join(f"{k} {v ** 0.5:.3g}" for k, v in sorted(sq.items())))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--reset-every", type=int, required=True, metavar="K")
    t.add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("state-norms").add_argument("run")
    sub.add_parser("grad-norms").add_argument("run")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == "train":
        if args.reset_every < 1:
            p.error("--reset-every must be >= 1")
        return train_with_resets(args.reset_every, args.rest)
    (state_norms if args.cmd == "state-norms" else grad_norms)(args.run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
