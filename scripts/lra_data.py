"""Generate (or check) the default generated set of an LRA task into ``$HIPPOS_CACHE``:
what ``hippos train listops`` / ``pathfinder`` would make on first use, ahead of time.

    python scripts/lra_data.py listops|pathfinder [--workers N]

``--workers``: processes for Pathfinder (the same images for any N). A set already cached is
checked against its SHA256SUMS and left alone.
"""

from __future__ import annotations

import argparse


def main(argv=None) -> None:
    from hippos.train import default_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=["listops", "pathfinder"])
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    cfg = default_config(args.task).data
    if args.task == "pathfinder":
        from hippos.data.pathfinder import load_pathfinder

        cfg.workers = args.workers
        load_pathfinder(cfg, log=print, progress=False)
    else:
        from hippos.data.listops import load_listops

        load_listops(cfg, log=print)


if __name__ == "__main__":  # the guard that Pathfinder's worker processes (spawn) need
    main()
