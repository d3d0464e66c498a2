"""``torch.export`` archives (``.pt2``) read statically: nothing from the file executes.

The program is JSON (``models/<name>.json``: aten nodes with named arguments, module
paths and stack traces in node metadata); weights are raw bytes described by
``data/weights/<name>_weights_config.json``. Entries stored as pickles (``use_pickle``)
are refused: only ``--trust-model-code`` (``torch.export.load``) may unpickle them. The
``sample_inputs`` pickle is never opened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bnlint.graph import BatchSize, GraphFacts, ModelGraph
from bnlint.loaders.files import LoadError
from bnlint.loaders.torch_archive import DTYPE_BY_ENUM, ZipArchive
from bnlint.loaders.torch_aten import AtenCall, AtenGraphBuilder, Ref
from bnlint.loaders.torch_modules import ModuleRecord
from bnlint.loaders.torch_ops import HOP_CONTROL_FLOW

DEFAULT_MAX_NODES = 2_000_000  # Settings.max_nodes
# What a program with the wrong JSON types in the wrong places raises while it is read.
# What parsing JSON allocates, estimated from its bytes before anything is parsed: each
# object or array (CPython: 56-64 bytes) and each element slot, plus the text itself for
# strings and numbers. torch.export programs come to 3-6 times their size; a text of
# nothing but "{}," comes to 27.
JSON_AMPLIFICATION = 12
JSON_FLOOR_BYTES = 16 * 1024**2


def json_memory(text: bytes) -> int:
    containers = text.count(b"{") + text.count(b"[")
    return 64 * containers + 16 * text.count(b",") + len(text)


def is_pt2(archive: ZipArchive) -> bool:
    if archive.has("archive_format"):
        try:
            return archive.read("archive_format", limit=64).strip() == b"pt2"
        except LoadError:
            return False
    return any(name.startswith("models/") and name.endswith(".json") for name in archive.names())


def load(path: Path, settings: Any, archive: ZipArchive | None = None) -> ModelGraph:
    max_nodes = getattr(settings, "max_nodes", DEFAULT_MAX_NODES)
    return Pt2Reader(archive or ZipArchive(path), path, max_nodes).build()


def module_path(text: str) -> str:
    """``layer1.0.bn1`` from the path part of an ``nn_module_stack`` entry (any spelling)."""
    text = text.strip()
    for prefix in ("L['self'].", "L__self__.", "self."):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if text in ("L['self']", "L__self__", "self"):
        return ""
    text = text.replace("._modules['", ".").replace("']", "")
    return text.replace("[", ".").replace("]", "")


def parse_module_stack(stack: str) -> list[tuple[str, str]]:
    """``[(path, qualified class), …]`` from root to innermost."""
    entries = []
    for entry in stack.split(";"):
        parts = entry.split(",")
        if len(parts) >= 3:
            entries.append((module_path(",".join(parts[1:-1])), parts[-1].strip()))
    return entries


def _sizes(meta: dict[str, Any]) -> tuple[int | str | None, ...]:
    dims: list[int | str | None] = []
    for size in meta.get("sizes", []):
        if "as_int" in size:
            dims.append(int(size["as_int"]))
        else:
            expr = size.get("as_expr", {})
            dims.append(str(expr.get("expr_str")) if isinstance(expr, dict) else None)
    return tuple(dims)


def _ints(values: list[dict[str, Any]]) -> list[int]:
    result = []
    for value in values:
        if "as_int" not in value:
            raise ValueError("symbolic stride or size in a stored tensor")
        result.append(int(value["as_int"]))
    return result


def decode_argument(arg: dict[str, Any]) -> Any:
    """A serialized ``Argument`` union as a Python value (tensors as :class:`Ref`)."""
    if not isinstance(arg, dict) or len(arg) != 1:
        return None
    ((kind, value),) = arg.items()
    if kind == "as_tensor":
        return Ref(value["name"])
    if kind == "as_tensors":
        return [Ref(item["name"]) for item in value]
    if kind in ("as_optional_tensors",):
        return [Ref(item["as_tensor"]["name"]) if "as_tensor" in item else None for item in value]
    if kind == "as_optional_tensor":
        return Ref(value["as_tensor"]["name"]) if "as_tensor" in value else None
    if kind in ("as_sym_int", "as_sym_float", "as_sym_bool"):
        return value.get(
            "as_int", value.get("as_float", value.get("as_bool", value.get("as_name")))
        )
    if kind in ("as_sym_ints", "as_sym_floats", "as_sym_bools"):
        return [decode_argument({kind[:-1]: item}) for item in value]
    if kind == "as_scalar_type":
        return DTYPE_BY_ENUM.get(value, f"dtype#{value}")
    if kind == "as_none":
        return None
    if kind in ("as_int", "as_float", "as_bool", "as_string", "as_ints", "as_floats", "as_bools"):
        return value
    if kind in ("as_strings", "as_int_lists", "as_float_lists", "as_operator", "as_complex"):
        return value
    return None  # graphs, custom objects, devices, layouts: not data the rules use


def _output_names(outputs: list[dict[str, Any]]) -> list[str]:
    names = []
    for output in outputs:
        value = decode_argument(output)
        if isinstance(value, Ref):
            names.append(value.name)
        elif isinstance(value, list):
            names.extend(item.name if isinstance(item, Ref) else "" for item in value)
        else:
            names.append("")
    return names


class Pt2Reader:
    def __init__(self, archive: ZipArchive, path: Path, max_nodes: int = DEFAULT_MAX_NODES) -> None:
        self.archive = archive
        self.path = path
        self.max_nodes = max_nodes
        self.big_endian = False

    def _json(self, relative: str) -> dict[str, Any]:
        text = self.archive.read(relative)
        estimate = json_memory(text)
        if estimate > JSON_AMPLIFICATION * len(text) + JSON_FLOOR_BYTES:
            raise LoadError(
                self.path,
                f"{relative}: {len(text)} bytes of JSON would build about {estimate} bytes of "
                f"objects (real programs need at most {JSON_AMPLIFICATION} times their size); "
                "refusing to parse it",
            )
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise LoadError(self.path, f"{relative}: invalid JSON ({error})") from None
        if not isinstance(data, dict):
            raise LoadError(self.path, f"{relative}: expected a JSON object")
        return data

    def build(self) -> ModelGraph:
        models = sorted(
            name[len("models/") : -len(".json")]
            for name in self.archive.names("models/")
            if name.endswith(".json") and "/" not in name[len("models/") :]
        )
        if not models:
            raise LoadError(self.path, "torch.export archive without models/*.json")
        name = "model" if "model" in models else models[0]
        program = self._json(f"models/{name}.json")
        if self.archive.has("byteorder"):
            self.big_endian = self.archive.read("byteorder", limit=16).strip() == b"big"
        try:
            return self._build(program, name, models)
        except (
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            IndexError,
            OverflowError,
        ) as error:
            raise LoadError(
                self.path, f"malformed torch.export program: {type(error).__name__}: {error}"
            ) from None

    def _build(self, program: dict[str, Any], name: str, models: list[str]) -> ModelGraph:
        facts = GraphFacts(
            format="pt2",
            producer=f"torch {program.get('torch_version', '?')}",
            default_phase="inference",
            has_modules=True,
        )
        graph = ModelGraph(self.path, facts)
        if len(models) > 1:
            facts.partial.append(f"archive holds programs {models}; only {name!r} was read")
        module = program["graph_module"]
        body, signature = module["graph"], module["signature"]
        if len(body["nodes"]) > self.max_nodes:
            raise LoadError(
                self.path,
                f"{len(body['nodes'])} nodes exceed the limit of {self.max_nodes} (max-nodes)",
            )
        rename, user_inputs = self._signature(signature)
        requires_grad: dict[str, bool] = {}
        self._payloads(
            graph, f"data/weights/{name}_weights_config.json", "data/weights", requires_grad
        )
        self._payloads(graph, f"data/constants/{name}_constants_config.json", "data/constants", {})
        for value_name, meta in body.get("tensor_values", {}).items():
            record = graph.tensor(rename.get(value_name, value_name))
            record.shape = record.shape or _sizes(meta)
            record.dtype = record.dtype or DTYPE_BY_ENUM.get(meta.get("dtype"))
        for value_name in user_inputs:
            graph.tensor(value_name).is_graph_input = True
            graph.graph_inputs.append(value_name)
        builder = AtenGraphBuilder(graph, rename=rename, requires_grad=requires_grad)
        for index, node in enumerate(body["nodes"]):
            builder.add(self._call(node, index, builder, facts))
        for spec in signature.get("output_specs", []):
            if "user_output" in spec:
                value = decode_argument(spec["user_output"]["arg"])
                if isinstance(value, Ref):
                    out = builder.name(value.name)
                    graph.tensor(out).is_graph_output = True
                    graph.graph_outputs.append(out)
        bns = graph.nodes_of("batch_norm")
        facts.mode = "training" if any(bn.attrs["training"] for bn in bns) else "inference"
        for value_name in user_inputs:
            shape = graph.tensors[value_name].shape
            if shape and isinstance(shape[0], int) and shape[0] > 0:
                facts.batch_sizes[value_name] = BatchSize(
                    shape[0], f"input shape of {value_name!r}"
                )
        return graph.finalize()

    def _signature(self, signature: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
        rename: dict[str, str] = {}
        user_inputs: list[str] = []
        for spec in signature.get("input_specs", []):
            ((kind, value),) = spec.items()
            if kind == "parameter":
                rename[value["arg"]["name"]] = value["parameter_name"]
            elif kind == "buffer":
                rename[value["arg"]["name"]] = value["buffer_name"]
            elif kind == "tensor_constant":
                rename[value["arg"]["name"]] = value["tensor_constant_name"]
            elif kind == "user_input":
                arg = decode_argument(value["arg"])
                if isinstance(arg, Ref):
                    user_inputs.append(arg.name)
        return rename, user_inputs

    def _payloads(
        self, graph: ModelGraph, config_name: str, folder: str, requires_grad: dict[str, bool]
    ) -> None:
        if not self.archive.has(config_name):
            legacy = config_name.rsplit("_", 2)[0] + ".pt"
            if self.archive.has(legacy):
                raise LoadError(
                    self.path,
                    f"{legacy} stores tensors as a pickle (a legacy .pt2 layout); re-save the "
                    "program with a current torch.export.save, or pass --trust-model-code",
                )
            return
        config = self._json(config_name).get("config", {})
        for fqn, payload in config.items():
            if payload.get("use_pickle"):
                raise LoadError(
                    self.path,
                    f"{folder}/{payload.get('path_name')} ({fqn!r}) is stored as a pickle, which "
                    "loading would execute; re-export with plain tensors or pass "
                    "--trust-model-code if you trust this file",
                )
            member = f"{folder}/{payload['path_name']}"
            if not _plain_name(str(payload["path_name"])) or not self.archive.has(member):
                raise LoadError(
                    self.path,
                    f"weight {fqn!r} points to {payload['path_name']!r}, not a file "
                    f"of this archive's {folder}/",
                )
            meta = payload["tensor_meta"]
            dtype = DTYPE_BY_ENUM.get(meta["dtype"])
            sizes = _ints(meta["sizes"])
            if dtype is None:
                graph.facts.partial.append(f"tensor {fqn!r} has unsupported dtype #{meta['dtype']}")
                continue
            loader = self.archive.tensor_loader(
                member,
                dtype,
                sizes,
                _ints(meta["strides"]),
                int(meta.get("storage_offset", {}).get("as_int", 0)),
                self.big_endian,
                tensor=fqn,
            )
            graph.params.add(fqn, loader, shape=tuple(sizes), dtype=dtype)
            record = graph.tensor(fqn)
            record.shape, record.dtype, record.is_param = tuple(sizes), dtype, True
            if payload.get("is_param"):
                requires_grad[fqn] = bool(meta.get("requires_grad"))

    def _call(
        self, node: dict[str, Any], index: int, builder: AtenGraphBuilder, facts: GraphFacts
    ) -> AtenCall:
        target = str(node["target"])
        if target.startswith("torch.ops."):
            target = target[len("torch.ops.") :]
        args = {item["name"]: decode_argument(item["arg"]) for item in node.get("inputs", [])}
        metadata = node.get("metadata") or {}
        stack = parse_module_stack(metadata.get("nn_module_stack", ""))
        scope = stack[-1][0] if stack else None
        for path, qualname in stack:
            builder.modules.setdefault(path, ModuleRecord(path=path, qualname=qualname))
        if target.startswith("higher_order."):
            hop = target.split(".")[1]
            facts.partial.append(f"higher-order op {hop!r} kept opaque (its body was not read)")
            if hop in HOP_CONTROL_FLOW:
                facts.unsupported.append(f"torch.export {hop}")
        outputs = _output_names(node.get("outputs", []))
        return AtenCall(
            name=str(
                node.get("name") or (outputs[0] if outputs and outputs[0] else f"node{index}")
            ),
            target=target,
            args=args,
            outputs=outputs,
            scope=scope or None,
            module_class=stack[-1][1] if stack else None,
            stack_trace=metadata.get("stack_trace"),
        )


def _plain_name(name: str) -> bool:
    """A bare file name: no folder, no ``..``, nothing that could leave ``data/weights``."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
