"""`python -m shared …`: the command line (see shared/cli.py)."""

import sys

from shared.cli import main

sys.exit(main())
