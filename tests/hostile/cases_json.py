"""``python -m tests.hostile.cases_json FOLDER``: build every hostile case, print them as JSON.

Run as its own process so that the test process building nothing never imports torch
(``preexec_fn`` is only safe in a process without threads).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from tests.hostile import archives
from tests.hostile.bad_inputs import BUILDERS

PAYLOADS = ("pickle", "torch_zip", "torchscript", "torchscript_pickle", "pt2", "pt2_traversal")
CASE_NAMES = (*BUILDERS, *PAYLOADS, *archives.SIMPLE, "stride_bomb")


def main(folder: Path) -> None:
    from tests.hostile.generate import all_cases

    cases = all_cases(folder)
    assert set(cases) == set(CASE_NAMES), set(cases) ^ set(CASE_NAMES)
    rows = {}
    for name, case in cases.items():
        row = asdict(case)
        row["path"] = str(case.path)
        row["folder"] = str(folder / name)
        row["marker"] = str(case.marker) if case.marker else None
        row["codes"] = sorted(case.codes)
        rows[name] = row
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
