"""Mutations for fuzzing bnlint's readers: bytes, ONNX protobuf structure, zip members, JSON.

Every mutator takes the Hypothesis ``data`` object and draws its own choices, so a failing
example shrinks to the smallest sequence of edits that breaks a reader.
"""

from __future__ import annotations

import copy
import io
import json
import math
import zipfile
from typing import Any

import onnx
from hypothesis import strategies as st
from onnx import AttributeProto, TensorProto, helper

HUGE = [0, -1, 1, 2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, -(2**63)]
ABSURD_FLOATS = [0.0, -1.0, 1e-45, 1e38, 1e308, math.inf, -math.inf, math.nan, 0.9, 1.0]
HOSTILE_TEXT = [
    "",
    "../../etc/passwd",
    "/etc/passwd",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "a|b|c",
    "x\ny",
    "\x1b[31mred\x1b[0m",
    "\u202egnp.exe",
    "::",
    "a/b::c",
    "é" * 300,
]
INTERESTING_BYTES = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x08, 0x12, 0x1A, 0x22]
# Decoys the fuzz fixture places around the mutants' folder; reading one is an escape.
DECOY_OUTSIDE = "fuzz_secret.bin"  # in the parent folder
DECOY_SYMLINK = "decoy_link.bin"  # a symlink to it
DECOY_HARDLINK = "decoy_hardlink.bin"  # a hard link to it
LOCATIONS = [
    *HOSTILE_TEXT,
    "external_data.bin",
    f"../{DECOY_OUTSIDE}",
    DECOY_SYMLINK,
    DECOY_HARDLINK,
    f"./{DECOY_SYMLINK}",
    f"sub/../../{DECOY_OUTSIDE}",
]


# -- bytes --------------------------------------------------------------------------------
def mutate_bytes(data: st.DataObject, blob: bytes) -> bytes:
    """1-4 flips, overwrites, insertions, deletions, duplications or a truncation."""
    buffer = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4), label="byte edits")):
        if not buffer:
            break
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "dup", "cut"]))
        at = data.draw(st.integers(0, len(buffer) - 1), label="offset")
        if kind == "flip":
            buffer[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set":
            buffer[at] = data.draw(st.sampled_from(INTERESTING_BYTES))
        elif kind == "insert":
            buffer[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del buffer[at : at + data.draw(st.integers(1, 64))]
        elif kind == "dup":
            buffer[at:at] = buffer[at : at + data.draw(st.integers(1, 256))]
        else:
            del buffer[at:]
    return bytes(buffer)


# -- ONNX structure -----------------------------------------------------------------------
def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            bodies = [attribute.g] if attribute.type == AttributeProto.GRAPH else []
            bodies += list(attribute.graphs)
            for body in bodies:
                found += _graphs(body)
    return found


def _pick(data: st.DataObject, items: Any, label: str) -> Any:
    items = list(items)
    return data.draw(st.sampled_from(items), label=label) if items else None


def _names(graph: onnx.GraphProto) -> list[str]:
    names = [value.name for value in graph.input] + [t.name for t in graph.initializer]
    return names + [name for node in graph.node for name in node.output]


def _tensor_edit(data: st.DataObject, tensor: TensorProto) -> None:
    kind = data.draw(st.sampled_from(["dims", "dtype", "raw", "external", "clear"]))
    if kind == "dims":
        del tensor.dims[:]
        tensor.dims.extend(data.draw(st.lists(st.sampled_from([*HUGE, 3, 4]), max_size=4)))
    elif kind == "dtype":
        tensor.data_type = data.draw(st.sampled_from([0, 1, 2, 7, 8, 10, 11, 16, 17, 23, 99]))
    elif kind == "raw":
        tensor.raw_data = tensor.raw_data[: data.draw(st.integers(0, len(tensor.raw_data)))]
    elif kind == "external":
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        location = data.draw(st.sampled_from(LOCATIONS))
        tensor.external_data.add(key="location", value=location)
        for key in data.draw(st.lists(st.sampled_from(["offset", "length"]), max_size=2)):
            value = str(data.draw(st.sampled_from([*HUGE, 4096])))
            tensor.external_data.add(key=key, value=value)
    else:
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")


def _attribute_edit(data: st.DataObject, node: onnx.NodeProto) -> None:
    name = data.draw(
        st.sampled_from(
            [
                "epsilon",
                "momentum",
                "training_mode",
                "is_test",
                "spatial",
                "group",
                "pads",
                "strides",
                "dilations",
                "kernel_shape",
                "axis",
                "perm",
                "to",
                "transB",
                "alpha",
            ]
        )
    )
    for index, attribute in enumerate(node.attribute):
        if attribute.name == name:
            del node.attribute[index]
            break
    kind = data.draw(st.sampled_from(["int", "float", "ints", "string", "floats"]))
    if kind == "int":
        value: Any = data.draw(st.sampled_from(HUGE))
    elif kind == "float":
        value = data.draw(st.sampled_from(ABSURD_FLOATS))
    elif kind == "ints":
        value = data.draw(st.lists(st.sampled_from(HUGE), min_size=1, max_size=8))
    elif kind == "floats":
        value = data.draw(st.lists(st.sampled_from(ABSURD_FLOATS), min_size=1, max_size=4))
    else:
        value = data.draw(st.sampled_from(HOSTILE_TEXT))
    node.attribute.append(helper.make_attribute(name, value))


def mutate_model(data: st.DataObject, model: onnx.ModelProto) -> None:
    """1-3 structural edits: dims, dtypes, arities, dangling names, cycles, attributes…"""
    for _ in range(data.draw(st.integers(1, 3), label="model edits")):
        graph = _pick(data, _graphs(model.graph), "graph")
        kind = data.draw(
            st.sampled_from(
                [
                    "tensor",
                    "value_dims",
                    "drop_input",
                    "add_input",
                    "dangle",
                    "cycle",
                    "attr",
                    "op_type",
                    "rename",
                    "dup_output",
                    "opset",
                    "nest",
                    "domain",
                    "drop_node",
                ]
            ),
            label="edit",
        )
        node = _pick(data, graph.node, "node")
        if kind == "tensor" and graph.initializer:
            _tensor_edit(data, _pick(data, graph.initializer, "initializer"))
        elif kind == "value_dims" and (graph.input or graph.value_info):
            value = _pick(data, [*graph.input, *graph.value_info], "value")
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for size in data.draw(st.lists(st.sampled_from(HUGE), max_size=5)):
                if size >= 0:
                    shape.dim.add().dim_value = size
                else:
                    shape.dim.add().dim_param = data.draw(st.sampled_from(HOSTILE_TEXT))
        elif node is None:
            continue
        elif kind == "drop_input" and node.input:
            del node.input[data.draw(st.integers(0, len(node.input) - 1)) :]
        elif kind == "add_input":
            node.input.extend([_pick(data, [*_names(graph), ""], "extra input")] * 3)
        elif kind == "dangle" and node.input:
            node.input[0] = data.draw(st.sampled_from([*HOSTILE_TEXT, "never_produced"]))
        elif kind == "cycle" and node.input and graph.node:
            later = _pick(data, graph.node, "later node")
            if later.output:
                node.input[0] = later.output[0]
        elif kind == "attr":
            _attribute_edit(data, node)
        elif kind == "op_type":
            node.op_type = data.draw(
                st.sampled_from(
                    [
                        "BatchNormalization",
                        "Conv",
                        "Gemm",
                        "MatMul",
                        "ConvTranspose",
                        "If",
                        "Loop",
                        "Dropout",
                        "Reshape",
                        "Expand",
                        "ConstantOfShape",
                        "Nope",
                    ]
                )
            )
        elif kind == "rename":
            node.name = data.draw(st.sampled_from(HOSTILE_TEXT))
        elif kind == "dup_output" and node.output and len(graph.node) > 1:
            other = _pick(data, graph.node, "other node")
            if other.output:
                other.output[0] = node.output[0]
        elif kind == "opset":
            del model.opset_import[:]
            version = data.draw(st.sampled_from([0, 1, 6, 7, 9, 14, 15, 25, 1000]))
            model.opset_import.add(domain="", version=version)
        elif kind == "nest":
            body = onnx.GraphProto()
            body.CopyFrom(graph)
            node.attribute.append(helper.make_attribute("then_branch", body))
        elif kind == "domain":
            node.domain = data.draw(st.sampled_from(["com.example", "ai.onnx.ml", "\x00", ""]))
        elif kind == "drop_node":
            graph.node.remove(node)


# -- zip archives and JSON ----------------------------------------------------------------
def _json_paths(value: Any, path: tuple = (), depth: int = 0) -> list[tuple]:
    found = [path]
    if depth > 12 or not isinstance(value, (dict, list)):
        return found
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in list(items)[:40]:
        found += _json_paths(item, (*path, key), depth + 1)
    return found


JSON_VALUES = [None, True, -1, 0, 2**40, 2**63, 1e308, "", "x" * 10, [], {}, [[[]]], {"a": 1}]


def mutate_json(data: st.DataObject, text: bytes) -> bytes:
    try:
        value = json.loads(text)
    except ValueError:
        return mutate_bytes(data, text)
    for _ in range(data.draw(st.integers(1, 3), label="json edits")):
        path = _pick(data, _json_paths(value), "json path")
        replacement = copy.deepcopy(  # shared containers would make the document circular
            data.draw(st.sampled_from(JSON_VALUES + HOSTILE_TEXT), label="json value")
        )
        if not path:
            value = replacement
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans(), label="delete") and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = replacement
    return json.dumps(value).encode()


def mutate_zip(data: st.DataObject, blob: bytes) -> bytes:
    """Member-level edits (corrupt, resize, drop, add, rename, JSON) or raw byte edits."""
    if data.draw(st.integers(0, 4), label="raw zip edit") == 0:
        return mutate_bytes(data, blob)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    for _ in range(data.draw(st.integers(1, 3), label="member edits")):
        name = _pick(data, members, "member")
        kind = data.draw(st.sampled_from(["bytes", "json", "resize", "drop", "add", "rename"]))
        if kind == "bytes":
            members[name] = mutate_bytes(data, members[name] or b"\0")
        elif kind == "json":
            members[name] = mutate_json(data, members[name])
        elif kind == "resize":
            members[name] = members[name] * data.draw(st.integers(0, 3))
        elif kind == "drop":
            members.pop(name)
        elif kind == "add":
            prefix = name.split("/", 1)[0]
            extra = data.draw(st.sampled_from([*HOSTILE_TEXT, "data.pkl", "data/0", "x.json"]))
            members[f"{prefix}/{extra}"] = data.draw(st.binary(max_size=64))
        else:
            members[data.draw(st.sampled_from(HOSTILE_TEXT))] = members.pop(name)
        if not members:
            break
    out = io.BytesIO()
    method = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, payload in members.items():
            archive.writestr(name or "empty", payload)
    return out.getvalue()


# -- pickles: shared and recursive structures (issue 12, item 7) ---------------------------
_GLOBALS = [
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("builtins", "set"),
    ("builtins", "exec"),
    ("__torch__", "M"),
    ("__torch__.torch.nn.modules.batchnorm", "BatchNorm2d"),
    ("copyreg", "_reconstructor"),
]


_STEPS = ["int", "str", "tuple", "list", "dict", "set", "frozenset", "call", "object"]
_STEPS += ["persid", "marks", "sets", "get"]


def _memo(index: int) -> bytes:
    return b"r" + index.to_bytes(4, "little")  # LONG_BINPUT


def _get(index: int) -> bytes:
    return b"j" + index.to_bytes(4, "little")  # LONG_BINGET


def pickle_structure(data: st.DataObject) -> bytes:
    """A protocol-2 pickle whose objects reference earlier ones (shared tuples, lists, dicts
    and sets, nested to any depth, the same object reachable by exponentially many paths),
    mixed with the records torch writes (OrderedDict, tensors, ``__torch__`` modules), calls
    of arbitrary globals, persistent ids, deep MARK nesting and runs of EMPTY_SET.

    Each step leaves one object on the stack and memoizes it, so any later step can share
    it; the last object is the root."""
    out = bytearray(b"\x80\x02")
    steps = data.draw(st.integers(1, 40), label="pickle steps")
    for count in range(steps):
        kind = data.draw(st.sampled_from(_STEPS), label="pickle step")
        picks = [data.draw(st.integers(0, max(count - 1, 0))) for _ in range(2)] if count else []
        items = b"".join(_get(i) for i in picks) if count else b"K\x00"
        if kind == "int":
            out += b"J" + data.draw(st.integers(-(2**31), 2**31 - 1)).to_bytes(
                4, "little", signed=True
            )
        elif kind == "str":
            text = data.draw(st.sampled_from(["training", "weight", "x", "", *HOSTILE_TEXT]))
            raw = text.encode()
            out += b"X" + len(raw).to_bytes(4, "little") + raw
        elif kind == "tuple":
            out += b"(" + items + b"t"
        elif kind == "list":
            out += b"]" + (b"(" + items + b"e" if count else b"")
        elif kind == "dict":  # keys may be shared tuples: hashing them must stay bounded
            out += b"}" + (
                b"(" + items + (_get(picks[0]) if picks else b"") + b"u" if count else b""
            )
        elif kind == "set":
            out += b"\x8f" + (b"(" + items + b"\x90" if count else b"")
        elif kind == "frozenset":
            out += b"(" + items + b"\x91"
        elif kind in ("call", "object"):
            module, name = data.draw(st.sampled_from(_GLOBALS), label="global")
            out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
            out += b"(" + items + b"t" + (b"R" if kind == "call" else b"\x81")
            if count and data.draw(st.booleans(), label="with state"):
                out += _get(picks[0]) + b"b"  # BUILD with a shared state
        elif kind == "persid":
            key = data.draw(st.sampled_from(["0", "1", "../x", ""]))
            out += b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX" + len(key).to_bytes(
                4, "little"
            )
            out += (
                key.encode()
                + b"X\x03\x00\x00\x00cpu"
                + b"J"
                + data.draw(st.sampled_from(HUGE[:8])).to_bytes(8, "little", signed=True)[:4]
                + b"tQ"
            )
        elif kind == "marks":
            depth = data.draw(st.integers(1, 20_000), label="mark depth")
            out += b"(" * depth + b"K\x01" + b"t" * depth
        elif kind == "sets":
            out += b"\x8f0" * data.draw(st.integers(1, 200_000), label="empty sets") + b"\x8f"
        else:  # the same object again
            out += _get(picks[0]) if count else b"N"
        out += _memo(count)
    return bytes(out + b".")


def with_data_pkl(blob: bytes, data_pkl: bytes) -> bytes:
    """``blob`` (a TorchScript or torch.save zip) with its ``data.pkl`` replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            payload = source.read(info)
            target.writestr(info, data_pkl if info.filename.endswith("/data.pkl") else payload)
    return out.getvalue()
