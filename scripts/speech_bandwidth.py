"""Why does a speech model lose accuracy at 0.5×: the rate change, or the band it removes?

At half the sampling rate a clip keeps only the frequencies below the new Nyquist frequency
(FSDD: 8 kHz -> 4 kHz keeps 0-2 kHz; the S4 paper's Speech Commands: 16 -> 8 kHz keeps 0-4 kHz,
most of what speech carries). This script separates the two effects for a trained speech run:

* ``1× band-limited``: every test clip low-passed to the 0.5× band at the *training* rate
  (``resample_poly`` down by 2, then up by 2: the same anti-aliasing filter as ``--rate 0.5
  --resample poly``, twice), evaluated at rate 1: the information of the 0.5× clip, no Δ change;
* ``0.5× poly``: the same clips at 4 kHz, Δ doubled (``hippos eval RUN --rate 0.5``).

If the two agree, the loss comes from the missing band, not from the model's handling of the
rate. Usage::

    python scripts/speech_bandwidth.py runs/speech/official-s4 [more runs ...]

Prints one line per run and writes nothing. Takes about a minute per run on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys

import torch


def bandwidth_table(run_dir: str) -> dict:
    from hippos.cli.train import load_run
    from hippos.data.audio import clips_dataset, resample_clips
    from hippos.train.loop import evaluate

    model, cfg, task, data, _run, _weights, _meta = load_run(run_dir)
    device = torch.device(cfg.device)
    test = data.extra["clips"].split("test")
    out = {}
    with torch.no_grad():
        out["1×"] = evaluate(model, clips_dataset(test, cfg.data.normalize), cfg, device, task)["acc"]
        band = resample_clips(resample_clips(test, 0.5, "poly"), 2.0, "poly")  # low-passed at the 0.5× Nyquist
        out["1× band-limited"] = evaluate(model, clips_dataset(band, cfg.data.normalize), cfg, device, task)["acc"]
        m, ds, _info = task.at_rate(model, data, cfg, "test", 0.5, "poly")
        out["0.5× poly"] = evaluate(m, ds, cfg, device, task)["acc"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="speech run directories (hippos train fsdd / audio, hippos speech arms)")
    args = p.parse_args(argv)
    for run in args.runs:
        r = bandwidth_table(run)
        print(f"{run}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in r.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
