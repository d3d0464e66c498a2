"""``python -m bnlint.reproduce report.json``: the stable entry point for rerunning a report.

Reports, issue threads and users' scripts name ``python -m bnlint.reproduce``; the code lives
in :mod:`bnlint.evidence.reproduce` (options: ``--help``). This module only runs its ``main``,
so the command keeps working wherever the implementation sits.
"""

from __future__ import annotations

import sys

from bnlint.evidence.reproduce import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
