"""Entry point of ``python -m mgx_agent``; the command line itself lives in ``cli.py``."""

import sys

from mgx_agent.cli import main

sys.exit(main())
