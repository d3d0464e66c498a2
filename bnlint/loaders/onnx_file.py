"""Reading an ONNX file: memory-mapped parse and zero-copy weights.

``onnx.load`` reads the whole file into a bytes object and parses that: two fresh copies
of every weight. Here the file is memory-mapped and parsed from the mapping (one copy,
in the protobuf arena), and when weights dominate the file, the byte range of each
top-level initializer's ``raw_data`` is located by walking the protobuf wire format, so
a weight a rule reads is a read-only NumPy view of the mapping instead of another copy.
The mapping stays available (``MappedModel.buffer``) for anything else that needs the
file's bytes, such as a digest, without reading the file again.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.json_format import ParseError as JsonParseError
from google.protobuf.message import DecodeError
from google.protobuf.text_format import ParseError as TextParseError
from onnx import ModelProto

from bnlint.loaders.files import LoadError
from bnlint.params import MappedTensor

__all__ = [
    "MappedModel",
    "MappedTensor",
    "is_protobuf_path",
    "raw_data_ranges",
    "read_mapped",
    "read_model",
    "text_parse_problem",
]

# Walk the wire format only when the average top-level graph entry is this large: the
# walk costs a few microseconds per entry, a copy of raw_data about one per 4 KB.
WALK_MIN_BYTES_PER_ENTRY = 16 << 10
_PROTOBUF_SUFFIXES = frozenset({".onnx", ".pb", ""})


# "line: 3 column: 7" (onnx.parser), "3:7 :" (protobuf text format), "line 3 column 7" (JSON)
_POSITION = re.compile(r"line:? (\d+),? column:? (\d+)|^(\d+):(\d+)")


def text_parse_problem(kind: str, error: BaseException) -> str:
    """A parse error of a text serialization, reduced to its position. The parsers' own
    messages quote the file ("Error context: <the line>", 'has no field named "<word>"'),
    and a model may be a symlink to a secret: a message never carries the file's text."""
    if isinstance(error, UnicodeDecodeError):
        return f"not a valid ONNX {kind} model: not UTF-8 text (byte {error.start})"
    found = _POSITION.search(str(error))
    where = ""
    if found:
        line, column = (found.group(1), found.group(2)) if found.group(1) else found.group(3, 4)
        where = f" at line {line}, column {column}"
    return f"not a valid ONNX {kind} model: parse error{where}"


@dataclass
class MappedModel:
    model: ModelProto
    buffer: Any | None  # the file's read-only mmap (None for text formats)
    raw_ranges: dict[str, tuple[int, int]]


def is_protobuf_path(path: Path) -> bool:
    """True when ``onnx.load`` would read ``path`` as binary protobuf (by its suffix)."""
    if path.suffix.lower() in _PROTOBUF_SUFFIXES:
        return True
    from onnx import serialization

    found = serialization.registry.get_format_from_file_extension(path.suffix)
    return found in (None, "protobuf")


def read_mapped(path: Path) -> MappedModel:
    """Parse ``path`` from a read-only memory map (raises DecodeError, OSError, ValueError)."""
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    model = ModelProto()
    model.ParseFromString(view)
    ranges: dict[str, tuple[int, int]] = {}
    graph = model.graph
    entries = len(graph.node) + len(graph.initializer) + 1
    if len(graph.initializer) and len(mapped) // entries >= WALK_MIN_BYTES_PER_ENTRY:
        ranges = raw_data_ranges(view)
    return MappedModel(model, mapped, ranges)


# -- the protobuf wire format (only what locating raw_data needs) ---------------------------
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_NAME, _TENSOR_RAW = 7, 5, 8, 9


def _varint(buffer: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _length_delimited(buffer: memoryview, start: int, end: int):
    """(field number, payload start, payload end) of each length-delimited field."""
    position = start
    while position < end:
        key, position = _varint(buffer, position)
        wire = key & 7
        if wire == 2:
            length, position = _varint(buffer, position)
            if position + length > end:
                raise ValueError("field runs past its message")
            yield key >> 3, position, position + length
            position += length
        elif wire == 0:
            _, position = _varint(buffer, position)
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def raw_data_ranges(buffer: memoryview) -> dict[str, tuple[int, int]]:
    """Top-level initializer name -> (offset, length) of its raw_data in ``buffer``.

    Empty when the bytes do not walk cleanly (the caller then copies raw_data through
    protobuf as usual); the last initializer of a name wins, as when parsing.
    """
    ranges: dict[str, tuple[int, int]] = {}
    try:
        for field, start, end in _length_delimited(buffer, 0, len(buffer)):
            if field != _MODEL_GRAPH:
                continue
            for entry, first, last in _length_delimited(buffer, start, end):
                if entry != _GRAPH_INITIALIZER:
                    continue
                name, raw = None, None
                for part, begin, stop in _length_delimited(buffer, first, last):
                    if part == _TENSOR_NAME:
                        name = bytes(buffer[begin:stop]).decode("utf-8")
                    elif part == _TENSOR_RAW:
                        raw = (begin, stop - begin)
                if name is not None:
                    if raw is None:
                        ranges.pop(name, None)
                    else:
                        ranges[name] = raw
    except (ValueError, IndexError, UnicodeDecodeError):
        return {}
    return ranges


def read_model(path: Path) -> MappedModel:
    """An ONNX file parsed: binary protobuf memory-mapped, ``.onnxtxt`` ONNX text, other
    suffixes the text or JSON serialization onnx picks; any failure is a LoadError."""
    try:
        if path.suffix == ".onnxtxt":
            text = path.read_text(encoding="utf-8")
            found = MappedModel(onnx.parser.parse_model(text), None, {})
        elif is_protobuf_path(path):
            found = read_mapped(path)
        else:  # a text or JSON serialization, chosen by onnx from the suffix
            model = onnx.load_model(str(path), load_external_data=False)
            found = MappedModel(model, None, {})
    except DecodeError:
        problem = "not a valid ONNX model: protobuf parse error (truncated or corrupt)"
        raise LoadError(path, problem) from None
    except (UnicodeDecodeError, onnx.parser.ParseError, TextParseError, JsonParseError) as error:
        raise LoadError(path, text_parse_problem("text", error)) from None
    except (OSError, RuntimeError, ValueError) as error:
        raise LoadError(path, f"cannot read ONNX model: {error}") from None
    model = found.model
    if not model.HasField("graph") or (model.ir_version == 0 and not model.opset_import):
        raise LoadError(path, "not an ONNX model (no graph, no IR version)")
    return found
