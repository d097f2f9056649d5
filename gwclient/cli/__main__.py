"""``python -m gwclient.cli``: the ``gwclient`` command line."""

from __future__ import annotations

import sys

from gwclient.cli import main

if __name__ == "__main__":
    sys.exit(main())
