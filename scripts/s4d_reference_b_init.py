"""Induction Head with the S4D baseline initialized as the reference's (docs/synthetics.md, "S4D").

The H3 reference's S4D layer (HazyResearch/safari ``src/models/sequence/ssm/s4d.py``, read, not
copied) draws one complex-normal ``B`` shared by all channels, scales it so that
``2·Σ_n |B_n/λ_n|² = 1`` (unit variance of the kernel's integral under a unit-normal ``C``) and
folds it into ``C`` (so ``C·B`` is trained at the base rate with weight decay, and there is no
separate ``B``). Ours keeps ``B = 1`` as its own SSM parameter; at Inv init, N 64, our initial
kernel is ≈3× larger. This script trains ``hippos train ih --model.mixer=s4d`` with the
reference's scaling (``B`` frozen at 1, ``C ← C·B_ref``) to test whether the scale of the initial
kernel changes whether S4D learns the task.

    python scripts/s4d_reference_b_init.py SEED OUT_DIR [MAX_STEPS]
    # the documented runs: MAX_STEPS=18840 (the first 120 of 400 epochs, as the seed study)

A run always starts over (``hippos train --resume`` on its directory would rebuild the model
without this init and train ``B``).
"""

import sys

import torch

import hippos.train.loop as loop
from hippos.experiments.synthetics import synthetic_config
from hippos.layers.s4 import S4
from hippos.train import build_model
from hippos.train.tasks.lm import resolved_synthetic_config


def reference_b_init(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Rescale every S4 layer's ``C`` by the reference's normalized ``B`` and freeze ``B = 1``."""
    g = torch.Generator().manual_seed(1000 + seed)
    for m in model.modules():
        if isinstance(m, S4):
            k = m.kernel
            with torch.no_grad():
                a, B, C = k._params()  # c(H M); a is the same in every channel at init
                b = torch.randn(a.shape[-1], dtype=torch.complex64, generator=g)
                b = b / (2 * (b / a[0]).abs().pow(2).sum()).sqrt()
                k.C.copy_(torch.view_as_real((C * b).to(torch.complex64)))
                k.B.copy_(torch.view_as_real(torch.ones_like(B).to(torch.complex64)))
            k.B.requires_grad_(False)
    return model


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    seed, out = int(argv[0]), argv[1]
    cfg = synthetic_config("ih", "s4d", out, seed=seed)
    cfg.out_dir = out
    cfg.max_steps = int(argv[2]) if len(argv) == 3 else None
    torch.manual_seed(cfg.seed)  # train() seeds the same way before it builds a model
    model = reference_b_init(build_model(resolved_synthetic_config(cfg).model), seed)
    loop.train(cfg, model=model, progress=False, force=True)


if __name__ == "__main__":
    main(sys.argv[1:])
