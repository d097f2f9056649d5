"""``python -m gwclient``: the ``gwclient`` command line (see :mod:`gwclient.cli`)."""

from __future__ import annotations

import sys

from gwclient.cli import main

if __name__ == "__main__":
    sys.exit(main())
