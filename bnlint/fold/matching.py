"""When a tool renamed tensors: recover borders by pairing weighted nodes by structure.

Regions are cut at tensors both models name alike. A tool that renamed everything leaves
one region for the whole model, where no single BN can be blamed. If the weighted nodes
(Conv, ConvTranspose, Gemm, MatMul) of both top-level graphs pair one to one in graph
order by op type, weight shape and groups, the folded model's tensors around each pair
are renamed (in a copy) to the original's names: the input of the weighted node, and its
output or, when a BN followed it in the original, the BN's output. The pairing is a
hypothesis the evaluation then tests: every verdict still rests on the numbers, and a
pairing that is not one to one is not made at all.
"""

from __future__ import annotations

from onnx import ModelProto, NodeProto

from bnlint.fold.regions import ModelView

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _signature(view: ModelView, node: NodeProto) -> tuple:
    scope = view.scopes[()]
    owner = scope.owner(node.input[1]) if len(node.input) > 1 else None
    tensor = owner.initializers.get(node.input[1]) if owner is not None else None
    dims = tuple(tensor.dims) if tensor is not None else None
    if node.op_type == "Gemm" and dims and len(dims) == 2:
        trans = any(a.name == "transB" and a.i for a in node.attribute)
        dims = tuple(reversed(dims)) if trans else dims
    groups = next((a.i for a in node.attribute if a.name == "group"), 1)
    return (node.op_type, dims, groups)


def structural_names(original: ModelProto, folded: ModelProto) -> dict[str, str]:
    """Folded tensor name -> original name, for tensors the original names differently."""
    ours_view, theirs_view = ModelView(original), ModelView(folded)
    ours = [n for n in original.graph.node if n.op_type in WEIGHTED_OPS]
    theirs = [n for n in folded.graph.node if n.op_type in WEIGHTED_OPS]
    signatures = [_signature(ours_view, n) for n in ours]
    if signatures != [_signature(theirs_view, n) for n in theirs]:
        return {}
    top = ours_view.scopes[()]
    folded_names = set(theirs_view.scopes[()].data) | set(theirs_view.scopes[()].inputs)
    after = {}
    for node in original.graph.node:
        if node.op_type == "BatchNormalization" and node.input:
            after[node.input[0]] = node.output[0]
    mapping: dict[str, str] = {}
    for mine, other in zip(ours, theirs, strict=True):
        pairs = [(other.input[0], mine.input[0])]
        output = mine.output[0]
        readers = top.consumers.get(output, [])
        if output in after and len(readers) == 1:
            output = after[output]
        pairs.append((other.output[0], output))
        for new, old in pairs:
            if new == old or old in folded_names:
                continue
            if mapping.get(new, old) != old:
                return {}  # not one to one: no pairing at all
            mapping[new] = old
    if len(set(mapping.values())) != len(mapping):
        return {}
    return mapping


def renamed(model: ModelProto, mapping: dict[str, str]) -> ModelProto:
    """A copy of ``model`` with tensors renamed by ``mapping`` (top level and bodies)."""
    copy = ModelProto()
    copy.CopyFrom(model)

    def rename(graph) -> None:
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name in mapping:
                    node.input[index] = mapping[name]
            for index, name in enumerate(node.output):
                if name in mapping:
                    node.output[index] = mapping[name]
            for attribute in node.attribute:
                for body in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                    rename(body)
        for value in [*graph.input, *graph.output, *graph.value_info]:
            if value.name in mapping:
                value.name = mapping[value.name]

    rename(copy.graph)
    return copy


def kept_producer_names(original: ModelProto, folded: ModelProto) -> dict[str, str]:
    """Folded tensor name -> original name for tools that keep the producer's output name.

    onnxoptimizer folds ``Conv -> t -> BN -> b`` into a Conv that still writes ``t``, now
    holding what ``b`` held, and rewires ``b``'s readers to ``t``. When ``b`` (and every BN
    output after it in a chain of BNs) is gone from the folded model while ``t`` is still
    there, ``t`` is renamed ``b`` in the folded copy, so regions are cut where they mean
    the same. Only top-level tensors; the evaluation still decides.
    """
    theirs = {o for n in folded.graph.node for o in n.output if o}
    readers: dict[str, list[NodeProto]] = {}
    for node in original.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    mapping: dict[str, str] = {}
    for node in original.graph.node:
        if node.op_type in ("BatchNormalization",) or not node.output:
            continue
        start = node.output[0]
        if start not in theirs:
            continue
        last, current = None, start
        while True:
            nexts = readers.get(current, [])
            if len(nexts) != 1 or nexts[0].op_type != "BatchNormalization":
                break
            after = nexts[0].output[0]
            if after in theirs:
                break
            last = current = after
        if last is not None:
            mapping[start] = last
    return mapping
