"""Pickle and JSON bombs against the static PyTorch readers, through the real executable
under a 1 GiB address space (issue 12, items 7 and 8): each is refused with one error
line naming the bound, quickly, and before anything (torch included) builds what it
describes. The same cases also run in the full hostile harness (``archives.SIMPLE``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile import pickle_bombs
from tests.hostile.runner import assert_behaved, run_attack

ADDRESS_SPACE = 1024**3  # the static readers import neither torch nor anything large
WITHOUT_TORCH = [name for name in pickle_bombs.CASES if not name.startswith("script_")]


@pytest.mark.parametrize("name", WITHOUT_TORCH)
def test_a_bomb_is_refused_before_it_is_built(name: str, tmp_path: Path) -> None:
    case = pickle_bombs.CASES[name](tmp_path)
    attack = run_attack(
        [case.path, "--format", "json"],
        tmp_path,
        expected_seconds=case.expected_seconds,
        address_space=ADDRESS_SPACE,
    )
    assert_behaved(attack, exit_code=2, error=case.problem)
