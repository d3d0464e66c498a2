"""ONNX shape inference in bounded time and memory, with Ctrl-C working throughout.

onnx's shape inference is C++ that holds the interpreter: a SIGINT handler never runs
while it works, and some inputs make it loop (an Einsum equation with two ``...`` in one
term) or allocate in proportion to a number in the file (data propagation expands a 1-D
tensor of ``L`` values, ``L`` read from the file, into ``L`` protobuf messages). So:

1. Before onnx sees the model, what its grammar or sizes make pathological is refused
   (:func:`inference_problems`, :func:`data_propagation_problem`): every Einsum equation
   must follow the operator's grammar (letters, at most one ``...`` per term, ``->`` once,
   one term per input), and data propagation is switched off when a 1-D tensor whose
   length comes from a value in the file (ConstantOfShape, Expand, Range, Tile, a declared
   dimension) is longer than any tensor rank the model uses.
2. The call itself runs in a forked child (:func:`infer_bounded`) under an address-space
   limit and a deadline, both proportional to the size of what it is given, with SIGINT
   back at its default action (so Ctrl-C ends it at once). The parent waits in Python,
   where Ctrl-C raises KeyboardInterrupt; the child is killed on every way out.

Where ``fork`` is missing the call runs in process, after the same checks.
"""

from __future__ import annotations

import gc
import math
import os
import re
import select
import signal
import struct
import time
from collections.abc import Iterator, Set
from typing import Any

try:
    import resource  # imported before any fork: a child never imports
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

from onnx import (
    AttributeProto,
    GraphProto,
    ModelProto,
    NodeProto,
    TensorProto,
    numpy_helper,
    onnx_cpp2py_export,  # imported before any fork: a child never imports
)

# A data-propagated tensor is a shape: one value per dimension. NumPy (and so every runtime
# bnlint drives) allows at most 64 dimensions; a model's own ranks may say more.
MAX_RANK = 64
BASE_SECONDS = 10.0  # plus one second per MB: onnx infers well over 10 MB/s of graph
BASE_MEMORY = 256 << 20  # plus 32 bytes per byte given: measured peaks are ~12
_INTEGER_TYPES = frozenset(
    {TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT64}
)
_VALUE_SIZED = frozenset({"ConstantOfShape", "Expand", "Range", "Tile"})
_TERM = re.compile(r"[A-Za-z]*(?:\.\.\.[A-Za-z]*)?")


class InferenceStopped(Exception):
    """Shape inference was not run or did not finish; the message says why."""


# -- checks before onnx sees the model -----------------------------------------------------
def all_nodes(graph: GraphProto) -> Iterator[NodeProto]:
    stack = [graph]
    while stack:
        current = stack.pop()
        for node in current.node:
            yield node
            for attribute in node.attribute:
                if attribute.type == AttributeProto.GRAPH:
                    stack.append(attribute.g)
                elif attribute.type == AttributeProto.GRAPHS:
                    stack.extend(attribute.graphs)


def einsum_problem(node: NodeProto) -> str | None:
    """Why ``node``'s equation is not Einsum's grammar, or None."""
    equation = next((a.s for a in node.attribute if a.name == "equation"), b"")
    try:
        text = equation.decode("ascii").replace(" ", "")
    except UnicodeDecodeError:
        return "its equation is not ASCII"
    left, arrow, right = text.partition("->")
    terms = left.split(",")
    if not all(_TERM.fullmatch(term) for term in terms):
        return f"equation {text!r}: a term holds more than one '...' or a stray character"
    if arrow and not _TERM.fullmatch(right):
        return f"equation {text!r}: the output is not letters with at most one '...'"
    if len(terms) != len([name for name in node.input if name]):
        return f"equation {text!r} has {len(terms)} terms for {len(node.input)} inputs"
    return None


def inference_problems(model: ModelProto) -> list[str]:
    """What makes running onnx's shape inference on ``model`` unsafe (empty: nothing)."""
    problems = []
    for node in all_nodes(model.graph):
        if node.op_type == "Einsum" and node.domain in ("", "ai.onnx"):
            problem = einsum_problem(node)
            if problem is not None:
                problems.append(f"node {node.name or '<Einsum>'!r} (Einsum): {problem}")
    return problems


def _constants(graph: GraphProto) -> dict[str, list[int]]:
    """Small integer constants (initializers and Constant nodes) by name, as flat lists."""
    found: dict[str, list[int]] = {}
    tensors = [(t.name, t) for t in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.type == AttributeProto.TENSOR:
                    tensors.append((node.output[0], attribute.t))
    for name, tensor in tensors:
        count = math.prod(tensor.dims)
        if tensor.data_type in _INTEGER_TYPES and count <= 64 and tensor.data_location == 0:
            try:
                found[name] = [int(v) for v in numpy_helper.to_array(tensor).reshape(-1)]
            except (ValueError, TypeError):
                continue
    return found


def _value_driven_lengths(graph: GraphProto) -> Iterator[tuple[str, int]]:
    """(what, length) of each 1-D tensor whose length is a value written in the file."""
    constants = _constants(graph)

    def value(name: str) -> list[int] | None:
        return constants.get(name)

    for node in graph.node:
        inputs = list(node.input)
        where = f"{node.op_type} {node.name or inputs[:1]!r}"
        if node.op_type in ("ConstantOfShape", "Expand") and len(inputs) >= 1:
            shape = value(inputs[-1] if node.op_type == "Expand" else inputs[0])
            if shape is not None and len(shape) == 1:
                yield where, shape[0]
        elif node.op_type == "Range" and len(inputs) == 3:
            start, limit, delta = (value(name) for name in inputs)
            if start and limit and delta and delta[0] != 0:
                yield where, math.ceil((limit[0] - start[0]) / delta[0])
        elif node.op_type == "Tile" and len(inputs) == 2:
            data, repeats = value(inputs[0]), value(inputs[1])
            if data is not None and repeats is not None and len(repeats) == 1:
                yield where, len(data) * repeats[0]
    yield from _declared_lengths(graph)


def _declared_lengths(graph: GraphProto) -> Iterator[tuple[str, int]]:
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor_type = info.type.tensor_type
        dims = tensor_type.shape.dim
        if tensor_type.elem_type in _INTEGER_TYPES and len(dims) == 1:
            yield f"declared tensor {info.name!r}", dims[0].dim_value


def _largest_rank(graph: GraphProto) -> int:
    ranks = [len(t.dims) for t in graph.initializer]
    ranks += [len(v.type.tensor_type.shape.dim) for v in (*graph.input, *graph.value_info)]
    ranks += [len(v.type.tensor_type.shape.dim) for v in graph.output]
    return max([MAX_RANK, *ranks])


def _bodies(model: ModelProto) -> list[GraphProto]:
    graphs = [model.graph]
    for node in all_nodes(model.graph):
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                graphs.append(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                graphs.extend(attribute.graphs)
    return graphs


def data_propagation_problem(
    model: ModelProto, op_types: Set[tuple[str, str]], has_bodies: bool = True
) -> str | None:
    """Why data propagation must stay off for ``model``, or None.

    ``op_types`` are the model's (domain, op type) pairs: without a value-sized op only the
    declared dimensions are looked at.
    """
    graphs = _bodies(model) if has_bodies else [model.graph]
    bound = max(_largest_rank(graph) for graph in graphs)
    scan = any(op in _VALUE_SIZED and domain in ("", "ai.onnx") for domain, op in op_types)
    for graph in graphs:
        lengths = _value_driven_lengths(graph) if scan else _declared_lengths(graph)
        for what, length in lengths:
            if length > bound:
                return (
                    f"{what} makes a 1-D tensor of {length} values, more than any tensor rank "
                    f"({bound}); data propagation skipped"
                )
    return None


# -- the bounded call ------------------------------------------------------------------------
def budget(serialized_bytes: int) -> tuple[float, int]:
    """(seconds, bytes of address space beyond the current) for inferring that much graph."""
    return BASE_SECONDS + serialized_bytes / 1e6, BASE_MEMORY + 32 * serialized_bytes


def _address_space() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def _child(serialized: bytes, data_prop: bool, memory: int, write: int) -> None:
    """In the forked child: infer, send (status, length, bytes), exit without cleanup."""
    code = 1
    try:
        gc.disable()  # a collection here would touch (and copy) the parent's whole heap
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # C++ never returns to Python handlers
        current = _address_space()
        if current is not None and resource is not None:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = current + memory
            for bound in (soft, hard):  # a limit set on bnlint itself still holds
                if bound != resource.RLIM_INFINITY:
                    limit = min(limit, bound)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        try:
            result = onnx_cpp2py_export.shape_inference.infer_shapes(
                serialized, False, False, data_prop
            )
            header = struct.pack("<BQ", 0, len(result))
        except MemoryError:
            result, header = b"", struct.pack("<BQ", 2, 0)
        except Exception:
            result, header = b"", struct.pack("<BQ", 1, 0)
        view = memoryview(header + result)
        while view:
            view = view[os.write(write, view) :]
        code = 0
    finally:
        os._exit(code)


_warm: list[bool] = []


def _warm_registry() -> None:
    """Build onnx's operator-schema registry here, once (~0.1 s): built in a child, it would
    be built again in every child."""
    if _warm:
        return
    from onnx import helper

    relu = helper.make_node("Relu", ["x"], ["y"])
    values = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = helper.make_graph([relu], "warm", values[:1], values[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_cpp2py_export.shape_inference.infer_shapes(model.SerializeToString(), False, False, False)
    _warm.append(True)


def infer_bounded(serialized: bytes, data_prop: bool) -> bytes:
    """onnx's shape inference of ``serialized`` within :func:`budget`.

    Raises :class:`InferenceStopped` (time, memory, a crash) or ValueError (onnx refused
    the model, as in process).
    """
    seconds, memory = budget(len(serialized))
    if not hasattr(os, "fork"):
        return onnx_cpp2py_export.shape_inference.infer_shapes(serialized, False, False, data_prop)
    _warm_registry()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits in _child
        os.close(read)
        _child(serialized, data_prop, memory, write)
    os.close(write)
    chunks: list[bytes] = []
    try:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InferenceStopped(f"did not finish within {seconds:.0f} s")
            ready, _, _ = select.select([read], [], [], remaining)
            if ready:
                chunk = os.read(read, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read)
        _reap(pid)
    data = b"".join(chunks)
    if len(data) < 9:
        raise InferenceStopped("stopped (the inferring process died)")
    status, length = struct.unpack("<BQ", data[:9])
    if status == 2:
        raise InferenceStopped(f"needed more than {memory >> 20} MiB")
    if status == 1:
        raise ValueError("onnx shape inference failed")
    if len(data) != 9 + length:
        raise InferenceStopped("stopped (its answer was cut short)")
    return data[9:]


def _reap(pid: int) -> None:
    """Kill the child if it still runs, and collect it (never leaves a zombie)."""
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass


# -- model-local functions ---------------------------------------------------------------
def _function_key(domain: str, name: str, overload: str = "") -> tuple[str, str, str]:
    return (domain, name, overload)


def _calls(nodes: Any, functions: dict) -> Iterator[tuple[str, str, str] | None]:
    """For every node at any depth under ``nodes``: the local function it calls, or None."""
    stack = [nodes]
    while stack:
        for node in stack.pop():
            key = _function_key(node.domain, node.op_type, getattr(node, "overload", ""))
            yield key if key in functions else None
            for attribute in node.attribute:
                if attribute.type == AttributeProto.GRAPH:
                    stack.append(attribute.g.node)
                elif attribute.type == AttributeProto.GRAPHS:
                    stack.extend(body.node for body in attribute.graphs)


def expanded_node_count(model: ModelProto, limit: int) -> int:
    """How many nodes ``model`` has once every model-local function call is inlined, without
    inlining: each function's expanded size is computed once from its callees' (iterative,
    capped at ``limit + 1``). Raises ValueError for functions that call themselves."""
    functions = {
        _function_key(f.domain, f.name, getattr(f, "overload", "")): f for f in model.functions
    }
    sizes: dict[tuple[str, str, str], int] = {}
    for root in functions:
        if root in sizes:
            continue
        stack, on_path = [(root, False)], set()
        while stack:
            key, done = stack.pop()
            if done:
                on_path.discard(key)
                total = sum(
                    1 if call is None else sizes[call]
                    for call in _calls(functions[key].node, functions)
                )
                sizes[key] = min(total, limit + 1)
                continue
            if key in sizes:
                continue
            if key in on_path:
                raise ValueError(
                    f"model-local function {key[1]!r} calls itself (directly or through others)"
                )
            on_path.add(key)
            stack.append((key, True))
            stack.extend((call, False) for call in _calls(functions[key].node, functions) if call)
    total = sum(1 if call is None else sizes[call] for call in _calls(model.graph.node, functions))
    return min(total, limit + 1)
