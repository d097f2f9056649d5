"""Exit codes and the usage-problem exception (standard library only: imported at start-up)."""

from __future__ import annotations

__all__ = [
    "EXIT_DUPLICATES",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PAIRING",
    "EXIT_USAGE",
    "PROG",
    "UsageProblem",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DUPLICATES = 3
EXIT_PAIRING = 4
EXIT_INTERRUPTED = 130

PROG = "gwclient"


class UsageProblem(Exception):
    """Bad input found after argparse accepted the command line (exit 2)."""
