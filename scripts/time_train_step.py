"""Time one training step (forward, backward, AdamW) of the psMNIST-sized S4 classifier, for each
dropout variant in the same process, and optionally list the ops that cost the most.

    python scripts/time_train_step.py [--d_model 64] [--batch 50] [--length 784] [--steps 6] [--profile]

Variants: no dropout, element-wise dropout 0.1, tied dropout 0.1 (``ModelConfig.tie_dropout``).
Random inputs (the step's cost does not depend on the data). To compare commits, run it on each.
"""

import argparse
import time

import torch
import torch.nn.functional as F

from hippos.models.config import ModelConfig
from hippos.train import build_model
from hippos.train.optim import build_optimizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d_model", type=int, default=64)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--length", type=int, default=784)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="also print the 15 ops with the most self CPU time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = torch.randn(args.batch, args.length, 1), torch.randint(0, 10, (args.batch,))
    print(f"S4 (DPLR) classifier, 4 x H {args.d_model}, batch {args.batch}, L {args.length}, {args.threads} threads, torch {torch.__version__}")
    for name, dropout, tie in (("no dropout", 0.0, False), ("dropout 0.1", 0.1, False), ("tied dropout 0.1", 0.1, True)):
        torch.manual_seed(0)
        model = build_model(ModelConfig(d_model=args.d_model, mode="dplr", dropout=dropout, tie_dropout=tie, l_max=args.length)).train()
        opt = build_optimizer(model, 4e-3, 0.01)

        def step():
            loss = F.cross_entropy(model(x)[0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        step(), step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        dt = (time.perf_counter() - t0) / args.steps
        print(f"{name:>18}: {1000 * dt:6.0f} ms/step  {args.batch / dt:6.1f} samples/s")
        if args.profile:
            with torch.profiler.profile() as prof:
                step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
