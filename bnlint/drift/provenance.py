"""What a report records about the ``--sample-data`` file: enough to know it is the same.

The sha256 and size of the file, the number of samples and each array's shape and dtype
(the header only: the data is hashed in fixed-size chunks, never loaded).
"""

from __future__ import annotations

from typing import Any


def sample_record(path: str) -> dict[str, Any]:
    from bnlint.drift.samples import SampleDataError, SampleFile
    from bnlint.evidence.digests import file_digest

    record: dict[str, Any] = {"path": path}
    digest = file_digest(path)
    record["sha256"] = digest["sha256"] if digest else None
    record["size"] = digest["size"] if digest else None
    try:
        record.update(SampleFile(path).describe())
    except SampleDataError as error:
        record["error"] = error.problem
    return record
