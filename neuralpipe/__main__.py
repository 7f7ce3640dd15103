"""``python -m neuralpipe``: the same command line as the ``neuralpipe`` script."""

import sys

from neuralpipe.cli import main

sys.exit(main())
