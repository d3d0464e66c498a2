"""The restricted unpickler's bounds, checked before anything is built (issue 12, item 7)."""

from __future__ import annotations

import pickle
import struct
import time
from typing import ClassVar

import pytest

import bnlint.loaders.safe_pickle as safe_pickle
from bnlint.loaders.safe_pickle import RestrictedUnpickler, UnsafePickle, check_key, describe
from bnlint.loaders.torch_pickle import ObjectRecord, interpret
from tests.hostile.pickle_bombs import _shared_tuple


def load(data: bytes) -> object:
    return interpret(RestrictedUnpickler(data).load())


def test_empty_sets_stop_at_the_memory_budget_not_after_building_them(monkeypatch) -> None:
    monkeypatch.setattr(safe_pickle, "MAX_PICKLE_MEMORY", 8 * 1024**2)
    built = []
    real = set

    class CountingUnpickler(RestrictedUnpickler):
        def load_empty_set(self) -> None:
            built.append(1)
            self.append(real())

        dispatch: ClassVar[dict] = dict(RestrictedUnpickler.dispatch)
        dispatch[pickle.EMPTY_SET[0]] = load_empty_set

    data = b"\x80\x02" + b"\x8f" * 1_000_000 + b"."
    with pytest.raises(UnsafePickle, match="more than 8 MiB of objects"):
        CountingUnpickler(data).load()
    assert len(built) < 8 * 1024**2 // 200  # each set was charged before it was made


def test_a_key_hashed_through_exponentially_many_paths_is_refused_in_time() -> None:
    data = b"\x80\x02}" + _shared_tuple(64) + b"K\x01s."
    started = time.monotonic()
    with pytest.raises(UnsafePickle, match="more than 1000 elements"):
        load(data)
    assert time.monotonic() - started < 5  # a guard against 2**64 steps, not a benchmark
    small = b"\x80\x02}" + _shared_tuple(5) + b"K\x01s."  # 32 elements: an ordinary key
    assert len(load(small)) == 1


def test_keys_of_unhashable_kinds_are_refused_without_hashing() -> None:
    with pytest.raises(UnsafePickle, match="holds a list of 0 items"):
        check_key((1, ("a", [])))
    check_key(("weight", 3, None, b"x"))


def test_nothing_from_the_pickle_is_ever_repr_ed() -> None:
    shared: list = [0]
    for _ in range(60):
        shared = [shared, shared]
    assert describe(shared) == "a list of 2 items"
    assert describe("x" * 10**6) == "a str of length 1000000"


def test_only_classes_the_pickle_named_are_called() -> None:
    # REDUCE on a list built by the stream (not a class from find_class)
    with pytest.raises(UnsafePickle, match="REDUCE would call a list of 0 items"):
        load(b"\x80\x02](tR.")
    # BUILD on a plain dict would hash the state's keys into it
    with pytest.raises(UnsafePickle, match="BUILD sets the state of a dict"):
        load(b"\x80\x02}}b.")


def test_out_of_band_buffers_and_deep_marks_are_refused() -> None:
    with pytest.raises(UnsafePickle, match="BYTEARRAY8"):
        load(b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b".")  # would allocate 1 TiB
    with pytest.raises(UnsafePickle, match="MARKs nested deeper"):
        load(b"\x80\x02" + b"(" * 20_000 + b"N.")


def test_an_unknown_protocol_number_is_read_like_torch_does() -> None:
    assert load(b"\x80\x1aK\x07.") == 7


def test_modules_are_objects_of_named_classes_never_resolved() -> None:
    data = (
        b"\x80\x02cmy.models\nNet\n)\x81}(X\x08\x00\x00\x00trainingI00\nX\x03\x00\x00\x00epsG"
        + struct.pack(">d", 1e-3)
        + b"ub."
    )
    record = load(data)
    assert isinstance(record, ObjectRecord)
    assert record.qualname == "my.models.Net"
    assert record.state == {"training": False, "eps": 1e-3}
