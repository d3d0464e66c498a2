"""ONNX element types as NumPy dtype names (bfloat16 and float8 kept by name)."""

from __future__ import annotations

import numpy as np

ELEM_TYPE_NAMES: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
    17: "float8e4m3fn",
    18: "float8e4m3fnuz",
    19: "float8e5m2",
    20: "float8e5m2fnuz",
}
_NUMPY_NATIVE = {
    name
    for name in ELEM_TYPE_NAMES.values()
    if name not in ("string", "bfloat16") and not name.startswith("float8")
}


def dtype_name(elem_type: int) -> str | None:
    return ELEM_TYPE_NAMES.get(elem_type)


def numpy_dtype_by_name(name: str | None) -> np.dtype | None:
    return np.dtype(name) if name in _NUMPY_NATIVE else None


def numpy_dtype(elem_type: int) -> np.dtype | None:
    """The little-endian NumPy dtype for raw tensor bytes, or None (bfloat16, float8, strings)."""
    name = ELEM_TYPE_NAMES.get(elem_type)
    if name not in _NUMPY_NATIVE:
        return None
    return np.dtype(name).newbyteorder("<")
