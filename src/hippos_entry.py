"""The ``hippos`` console script: one process-wide setting before torch starts, then ``hippos.cli.main``.

``THP_MEM_ALLOC_ENABLE=1`` (unless already set; ``0`` turns it off) makes torch's CPU allocator
back tensors of 2 MB and more with transparent huge pages: a fresh large tensor then costs one
page fault per 2 MB instead of per 4 KB. Results are unchanged; long-sequence layers run faster
(an S4D block at L 4096 1.35x, docs/kernels.md section 8). Torch reads the variable once, at its
first allocation, so it must be set before ``import torch``, hence this module outside the
``hippos`` package (whose ``__init__`` imports torch). ``python -m hippos`` starts too late for it:
export the variable there, or in your own programs, to get the same.
"""

import os
import sys


def main() -> int:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    from hippos.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
