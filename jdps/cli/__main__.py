"""`python -m jdps.cli ARGS`: the `jdps` command."""

import sys

from jdps.cli.main import main

sys.exit(main())
