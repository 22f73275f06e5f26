"""``python -m hippos`` (and ``torchrun -m hippos``): the ``hippos`` command."""

import sys

from hippos.cli import main

sys.exit(main())
