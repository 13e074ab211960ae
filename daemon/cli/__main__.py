"""``python -m daemon.cli ...``: the same as the ``duskwatch`` console script."""

import sys

from daemon.cli.main import main

sys.exit(main())
