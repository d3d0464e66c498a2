"""``python -m bnlint.docgen``: see :mod:`bnlint.docgen`."""

import sys

from bnlint.docgen import main

sys.exit(main())
