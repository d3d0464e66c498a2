"""Tensor shapes through aten operators, without torch.

Each tensor operator's output shape follows from its inputs' shapes and its arguments
(scalars from :mod:`bnlint.loaders.torch_scalars`). A shape is a tuple of ints with
``None`` for an unknown dimension, or ``None`` altogether: no guess is ever made, so a
rule that needs a shape stays silent rather than wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from bnlint.loaders.torch_scalars import UNKNOWN

Shape = tuple[int | None, ...]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float))


# -- tensor operators -------------------------------------------------------------------
Args = dict[str, Any]
ShapeOf = Callable[[Any], Shape | None]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SAME = _words(
    "batch_norm native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training "
    "_batch_norm_impl_index cudnn_batch_norm layer_norm group_norm instance_norm rms_norm "
    "relu relu_ gelu silu sigmoid tanh hardswish hardsigmoid hardtanh hardtanh_ relu6 "
    "leaky_relu leaky_relu_ elu elu_ selu celu softplus mish prelu clamp clamp_ clamp_min clip "
    "dropout dropout_ feature_dropout alpha_dropout feature_alpha_dropout softmax log_softmax "
    "_softmax _log_softmax contiguous clone detach to type_as alias lift_fresh_copy neg exp "
    "log sqrt rsqrt abs silu_ hardswish_ sigmoid_ tanh_ mish_ gelu_ masked_fill"
)
_BROADCAST = _words("add add_ sub sub_ rsub mul mul_ div div_ pow remainder where")


def infer_shapes(op: str, args: Args, shape_of: ShapeOf, outputs: int = 1) -> list[Shape | None]:
    """Output shapes of ``aten::<op>`` (``None`` where unknown), one per output."""
    try:
        found = _infer(op, args, shape_of)
    except (TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError):
        found = None
    if isinstance(found, list):
        return (found + [None] * outputs)[: max(outputs, len(found))]
    return [found] + [None] * (outputs - 1)


def _first(args: Args, shape_of: ShapeOf) -> Shape | None:
    for name in ("input", "self"):
        if name in args:
            return shape_of(args[name])
    return None


def _infer(op: str, args: Args, shape_of: ShapeOf) -> Shape | list[Shape | None] | None:
    shape = _first(args, shape_of)
    if op in _SAME:
        return shape
    if op in _BROADCAST:
        other = args.get("other")
        other_shape = shape_of(other) if other is not None else ()
        if other is not None and other_shape is None and not _number(other):
            return None
        return broadcast(shape, other_shape if other_shape is not None else ())
    if shape is None:
        return _pooled(op, args)
    if op in ("conv1d", "conv2d", "conv3d", "_convolution", "convolution") or op.startswith(
        "conv_transpose"
    ):
        return _conv(op, args, shape, shape_of(args.get("weight")))
    if op in ("linear", "matmul", "mm", "bmm"):
        return _matmul(op, args, shape, shape_of)
    return _reshaping(op, args, shape, shape_of)


def _pooled(op: str, args: Args) -> Shape | None:
    """A 2-D/3-D adaptive pooling fixes its output's spatial size whatever its input: a
    batched (N, C, *output_size) (a BatchNorm2d/3d after it requires the batch axis)."""
    if not op.startswith(("adaptive_avg_pool", "adaptive_max_pool")) or op[-2] not in "23":
        return None
    size = _ints(args.get("output_size"), int(op[-2]))
    return None if size is None else (None, None, *size)


def broadcast(left: Shape | None, right: Shape | None) -> Shape | None:
    if left is None or right is None:
        return None
    rank = max(len(left), len(right))
    a = (1,) * (rank - len(left)) + tuple(left)
    b = (1,) * (rank - len(right)) + tuple(right)
    dims: list[int | None] = []
    for x, y in zip(a, b, strict=True):
        if x == 1:
            dims.append(y)
        elif y == 1 or x == y:
            dims.append(x)
        elif x is None:
            dims.append(y)
        elif y is None:
            dims.append(x)
        else:
            return None
    return tuple(dims)


def _ints(value: Any, rank: int) -> list[int] | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return [value] * rank
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        values = [int(v) for v in value]
        return values * rank if len(values) == 1 else values
    return None


def _conv(op: str, args: Args, shape: Shape, weight: Shape | None) -> Shape | None:
    if weight is None or len(weight) != len(shape) or len(shape) < 3:
        return None
    spatial = len(shape) - 2
    transposed = op.startswith("conv_transpose") or args.get("transposed") is True
    stride = _ints(args.get("stride", 1), spatial)
    dilation = _ints(args.get("dilation", 1), spatial)
    padding = args.get("padding", 0)
    groups = args.get("groups", 1)
    if not (isinstance(groups, int) and groups > 0) or stride is None or dilation is None:
        return None
    kernel = weight[2:]
    if transposed:
        out_channels = None if weight[1] is None else weight[1] * groups
        pads = _ints(padding, spatial)
        extra = _ints(args.get("output_padding", 0), spatial)
        if pads is None or extra is None:
            return (shape[0], out_channels, *(None,) * spatial)
        dims = [
            None if d is None or k is None else (d - 1) * s - 2 * p + dl * (k - 1) + e + 1
            for d, k, s, p, dl, e in zip(
                shape[2:], kernel, stride, pads, dilation, extra, strict=True
            )
        ]
        return (shape[0], out_channels, *dims)
    if padding == "same":
        return (shape[0], weight[0], *shape[2:])
    pads = [0] * spatial if padding == "valid" else _ints(padding, spatial)
    if pads is None:
        return (shape[0], weight[0], *(None,) * spatial)
    dims = [
        None if d is None or k is None else (d + 2 * p - dl * (k - 1) - 1) // s + 1
        for d, k, s, p, dl in zip(shape[2:], kernel, stride, pads, dilation, strict=True)
    ]
    return (shape[0], weight[0], *dims)


def _matmul(op: str, args: Args, shape: Shape, shape_of: ShapeOf) -> Shape | None:
    if op == "linear":
        weight = shape_of(args.get("weight"))
        if weight is None or len(weight) != 2 or not shape:
            return None
        return (*shape[:-1], weight[0])
    other = shape_of(args.get("other", args.get("mat2")))
    if other is None or not shape or not other:
        return None
    if len(other) == 1:
        return shape[:-1]
    if len(shape) == 1:
        return (*other[:-2], other[-1])
    batch = broadcast(shape[:-2], other[:-2])
    return None if batch is None else (*batch, shape[-2], other[-1])


def _axis(dim: Any, rank: int) -> int | None:
    if isinstance(dim, bool) or not isinstance(dim, int) or not -rank <= dim < max(rank, 1):
        return None
    return dim % rank if rank else 0


def _reshaping(op: str, args: Args, shape: Shape, shape_of: ShapeOf) -> Any:
    rank = len(shape)
    handler = _RESHAPING.get(op)
    if handler is not None:
        return handler(args, shape, rank, shape_of)
    if op.startswith(("adaptive_avg_pool", "adaptive_max_pool")):
        size = _ints(args.get("output_size"), rank - 2)
        out = None if size is None else (*shape[: -len(size)], *size)
        return [out, out] if op.startswith("adaptive_max") else out
    if op.startswith(("max_pool", "avg_pool")):
        return _pool(op, args, shape)
    if op.startswith(("upsample_", "_upsample_")):
        size = _ints(args.get("output_size"), rank - 2)
        return None if size is None else (*shape[:2], *size)
    return None


def _view(args: Args, shape: Shape, rank: int, shape_of: ShapeOf) -> Shape | None:
    target = args.get("size", args.get("shape"))
    if not isinstance(target, (list, tuple)):
        return None
    dims = [None if v is UNKNOWN or not isinstance(v, int) else v for v in target]
    if dims.count(-1) == 1:
        total = math.prod(shape) if all(d is not None for d in shape) else None
        rest = [d for d in dims if d != -1]
        if total is not None and all(d is not None for d in rest) and math.prod(rest):
            dims[dims.index(-1)] = total // math.prod(rest)
        else:
            dims[dims.index(-1)] = None
    return tuple(dims)


def _permute(args: Args, shape: Shape, rank: int, shape_of: ShapeOf) -> Shape | None:
    dims = args.get("dims")
    if not isinstance(dims, (list, tuple)) or len(dims) != rank:
        return None
    axes = [_axis(d, rank) for d in dims]
    return None if None in axes else tuple(shape[a] for a in axes)


def _transpose(args: Args, shape: Shape, rank: int, shape_of: ShapeOf) -> Shape | None:
    first = _axis(args.get("dim0", args.get("axis0")), rank)
    second = _axis(args.get("dim1", args.get("axis1")), rank)
    if first is None or second is None:
        return None
    dims = list(shape)
    dims[first], dims[second] = dims[second], dims[first]
    return tuple(dims)


def _flatten(args: Args, shape: Shape, rank: int, shape_of: ShapeOf) -> Shape | None:
    start = _axis(args.get("start_dim", 0), rank)
    end = _axis(args.get("end_dim", -1), rank)
    if start is None or end is None or start > end:
        return None if rank else (1,)
    middle = shape[start : end + 1]
    merged = math.prod(middle) if all(d is not None for d in middle) else None
    return (*shape[:start], merged, *shape[end + 1 :])


def _unsqueeze(args: Args, shape: Shape, rank: int, shape_of: ShapeOf) -> Shape | None:
    axis = _axis(args.get("dim"), rank + 1)
    return None if axis is None else (*shape[:axis], 1, *shape[axis:])


def _squeeze(args: Args, shape: Shape, rank: int, shape_of: ShapeOf) -> Shape | None:
    dim = args.get("dim")
    if dim is None:
        return None if None in shape else tuple(d for d in shape if d != 1)
    dims = dim if isinstance(dim, (list, tuple)) else [dim]
    axes = {_axis(d, rank) for d in dims}
    if None in axes:
        return None
    return tuple(d for i, d in enumerate(shape) if not (i in axes and d == 1))


def _reduce(args: Args, shape: Shape, rank: int, shape_of: ShapeOf) -> Any:
    dim, keep = args.get("dim"), args.get("keepdim", False) is True
    if dim is None:
        return ()
    dims = dim if isinstance(dim, (list, tuple)) else [dim]
    axes = {_axis(d, rank) for d in dims}
    if None in axes or args.get("keepdim", False) is UNKNOWN:
        return None
    out = tuple(1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes)
    return [out, out] if not isinstance(dim, (list, tuple)) and "indices" in args else out


_RESHAPING: dict[str, Callable[[Args, Shape, int, ShapeOf], Any]] = {
    "view": _view,
    "reshape": _view,
    "_unsafe_view": _view,
    "expand": _view,
    "permute": _permute,
    "transpose": _transpose,
    "swapaxes": _transpose,
    "t": lambda a, s, r, f: tuple(reversed(s)) if r <= 2 else None,
    "flatten": _flatten,
    "unsqueeze": _unsqueeze,
    "squeeze": _squeeze,
    "mean": _reduce,
    "sum": _reduce,
    "amax": _reduce,
    "max": _reduce,
    "min": _reduce,
}


def _pool(op: str, args: Args, shape: Shape) -> Any:
    spatial = len(shape) - 2
    kernel = _ints(args.get("kernel_size"), spatial)
    stride = _ints(args.get("stride") or args.get("kernel_size"), spatial)
    pads = _ints(args.get("padding", 0), spatial)
    dilation = _ints(args.get("dilation", 1), spatial)
    ceil = args.get("ceil_mode") is True
    if None in (kernel, stride, pads, dilation) or spatial < 1:
        return None
    dims = []
    for d, k, s, p, dl in zip(shape[2:], kernel, stride, pads, dilation, strict=True):
        if d is None:
            dims.append(None)
            continue
        span = d + 2 * p - dl * (k - 1) - 1
        dims.append((-(-span // s) if ceil else span // s) + 1)
    out = (*shape[:2], *dims)
    return [out, out] if op.endswith("with_indices") else out


def concat_shape(shapes: Sequence[Shape | None], dim: Any, stack: bool = False) -> Shape | None:
    if not shapes or any(s is None for s in shapes):
        return None
    rank = len(shapes[0]) + (1 if stack else 0)
    axis = _axis(dim if dim is not None else 0, rank)
    if axis is None or any(len(s) != len(shapes[0]) for s in shapes):
        return None
    if stack:
        return (*shapes[0][:axis], len(shapes), *shapes[0][axis:])
    sizes = [s[axis] for s in shapes]
    total = sum(sizes) if all(v is not None for v in sizes) else None
    return (*shapes[0][:axis], total, *shapes[0][axis + 1 :])


def split_shapes(op: str, args: Args, shape: Shape | None, count: int) -> list[Shape | None]:
    """Shapes of ``unbind``/``split``/``chunk`` outputs (``count`` of them)."""
    if shape is None:
        return [None] * count
    rank = len(shape)
    axis = _axis(args.get("dim", 0), rank)
    if axis is None:
        return [None] * count
    if op == "unbind":
        return [(*shape[:axis], *shape[axis + 1 :])] * count
    size = shape[axis]
    if op == "split_with_sizes" or isinstance(args.get("split_size"), (list, tuple)):
        sizes = args.get("split_sizes", args.get("split_size"))
        if isinstance(sizes, (list, tuple)) and len(sizes) == count:
            return [
                (*shape[:axis], s if isinstance(s, int) else None, *shape[axis + 1 :])
                for s in sizes
            ]
        return [None] * count
    if size is None:
        return [(*shape[:axis], None, *shape[axis + 1 :])] * count
    if op == "chunk":
        step = -(-size // count) if count else size
    else:
        step = args.get("split_size")
        if not isinstance(step, int) or step <= 0:
            return [None] * count
    return [
        (*shape[:axis], max(0, min(step, size - i * step)), *shape[axis + 1 :])
        for i in range(count)
    ]
