"""`python -m shared …`: the command line (see shared/cli.py)."""

import os
import sys

from shared.cli import main

try:
    sys.exit(main())
except BrokenPipeError:
    # The reader went away (`| head`); say nothing more and do not print a traceback.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
