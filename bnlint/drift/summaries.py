"""What a collector hands back for each BN input: per-sample channel summaries of a batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class RowStats:
    """One batch's per-sample channel summaries of a BN input (see ``row_summaries``)."""

    a: np.ndarray  # (rows, C) means over each sample's positions
    w: np.ndarray  # (rows, C) variances about them
    positions: int  # values per sample and channel


Summaries = dict[int, RowStats]  # BN id -> its input's summaries
Overrides = Mapping[int, tuple[np.ndarray, np.ndarray]]  # BN id -> (mean, var)
