"""How long ``onnx.reference`` may run: a Loop's trip count, bounded before it starts.

``onnx.reference`` is pure Python: a model of a few hundred bytes holding a Loop with a
trip count of 10**12 keeps it busy for days (and a condition-driven Loop for ever). The
fallback runner therefore runs a Loop only when its trip count is an integer held in the
file (an initializer or a Constant, never external data) and the iterations of nested
Loops, multiplied, stay within :data:`MAX_REFERENCE_ITERATIONS`.
"""

from __future__ import annotations

import math

from onnx import GraphProto, TensorProto, numpy_helper

from bnlint.fold.regions import bodies

MAX_REFERENCE_ITERATIONS = 10_000


def scalar_constants(graph: GraphProto) -> dict[str, int]:
    """Integer scalars in the file (initializers and Constant nodes of every body)."""
    found: dict[str, int] = {}
    pending = [graph]
    while pending:
        current = pending.pop()
        tensors = [(tensor.name, tensor) for tensor in current.initializer]
        for node in current.node:
            pending += [body for _, _, body in bodies(node)]
            if node.op_type == "Constant" and node.output:
                tensors += [(node.output[0], a.t) for a in node.attribute if a.name == "value"]
        for name, tensor in tensors:
            if (
                tensor.data_type in (TensorProto.INT64, TensorProto.INT32)
                and tensor.data_location != TensorProto.EXTERNAL
                and math.prod(tensor.dims) == 1
            ):
                found[name] = int(numpy_helper.to_array(tensor).reshape(-1)[0])
    return found


def loop_problem(graph: GraphProto) -> str | None:
    """Why ``onnx.reference`` may not run ``graph`` (a Loop it cannot bound), or None."""
    counts = scalar_constants(graph)
    pending = [(graph, 1)]
    while pending:
        current, iterations = pending.pop()
        for node in current.node:
            inner = iterations
            if node.op_type == "Loop" and node.domain in ("", "ai.onnx"):
                count = counts.get(node.input[0]) if node.input and node.input[0] else None
                inner = iterations * count if count is not None and count >= 0 else -1
                if not 0 <= inner <= MAX_REFERENCE_ITERATIONS:
                    return (
                        "onnx.reference is not run on a Loop unless its trip count is a "
                        f"constant in the file, at most {MAX_REFERENCE_ITERATIONS} iterations "
                        "in all (nested Loops multiplied)"
                    )
            pending += [(body, inner) for _, _, body in bodies(node)]
    return None
