"""``python -m hippos.cli``: the ``hippos`` command."""

import sys

from hippos.cli import main

sys.exit(main())
