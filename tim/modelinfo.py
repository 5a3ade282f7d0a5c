"""`tim models`: the architecture table, computed from the models themselves.

For each timm architecture (random init, no download): parameters, fp32 size,
GFLOPs of one image, and a depth-1 structure summary (each top-level block with
its output shape and parameters). Numbers are measured, not copied from papers,
so they stay right for the classifier head Tim actually puts on (31 artists by
default) and for any timm name.

FLOPs are counted by torch's `FlopCounterMode`, which counts a multiply-add as
2 FLOPs (ResNet-50 at 224x224: about 8.2 GFLOPs = 4.1 GMACs, the "4.1 GFLOPs"
many papers quote).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

DEFAULT_MODELS = ("resnet50", "efficientnet_b0", "convnext_tiny", "tf_efficientnet_lite0")
MIB = 2**20  # "MB" as model zoos report file sizes


@dataclass
class Block:
    name: str
    kind: str  # the module's class name
    output_shape: str  # e.g. "1x64x56x56"; "-" when forward() does not call it
    parameters: int


@dataclass
class ModelInfo:
    name: str
    parameters: int
    size_mb: float  # fp32 parameters and buffers, in MiB: the weights file's size
    gflops: float  # per image at image_size, FlopCounterMode (2 per multiply-add)
    image_size: int
    blocks: list[Block] = field(default_factory=list)


def _shape(output) -> str:
    if isinstance(output, torch.Tensor):
        return "x".join(str(d) for d in output.shape)
    if isinstance(output, (tuple, list)):
        return ", ".join(_shape(o) for o in output)
    return type(output).__name__


def describe(model: torch.nn.Module, name: str = "", image_size: int = 224) -> ModelInfo:
    """Measure `model` with one forward pass of a 1x3xSxS image: FLOPs, and each top-level block's output."""
    model = model.eval()
    shapes: dict[str, str] = {}
    hooks = [
        child.register_forward_hook(lambda _m, _i, out, key=key: shapes.__setitem__(key, _shape(out)))
        for key, child in model.named_children()
    ]
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
    blocks = [
        Block(key, type(child).__name__, shapes.get(key, "-"), sum(p.numel() for p in child.parameters()))
        for key, child in model.named_children()
    ]
    tensors = list(model.parameters()) + list(model.buffers())
    return ModelInfo(
        name=name or type(model).__name__,
        parameters=sum(p.numel() for p in model.parameters()),
        size_mb=sum(t.numel() for t in tensors) * 4 / MIB,
        gflops=counter.get_total_flops() / 1e9,
        image_size=image_size,
        blocks=blocks,
    )


def model_table(names=DEFAULT_MODELS, num_classes: int = 31, image_size: int = 224) -> list[ModelInfo]:
    """ModelInfo for each timm architecture, randomly initialised with a `num_classes` head."""
    return [
        describe(timm.create_model(n, pretrained=False, num_classes=num_classes), n, image_size) for n in names
    ]


def _table(header: list[str], rows: list[list[str]], markdown: bool, numeric: tuple[int, ...]) -> str:
    """Plain or markdown table; the `numeric` columns are right-aligned."""
    if markdown:
        rule = ["---:" if i in numeric else "---" for i in range(len(header))]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(x) for x in column) for column in zip(header, *rows)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_models(infos: list[ModelInfo], markdown: bool = False) -> str:
    size = infos[0].image_size if infos else 224
    header = ["model", "parameters", "size (MB, fp32)", f"GFLOPs @{size}px"]
    rows = [[i.name, f"{i.parameters / 1e6:.2f} M", f"{i.size_mb:.1f}", f"{i.gflops:.2f}"] for i in infos]
    return _table(header, rows, markdown, numeric=(1, 2, 3))


def format_structure(info: ModelInfo, markdown: bool = False) -> str:
    header = ["block", "type", "output shape", "parameters"]
    rows = [[b.name, b.kind, b.output_shape, f"{b.parameters:,}"] for b in info.blocks]
    return _table(header, rows, markdown, numeric=(3,))


def add_cli(sub) -> None:
    p = sub.add_parser("models", help="parameters, size, GFLOPs and structure of timm architectures")
    p.add_argument("names", nargs="*", default=list(DEFAULT_MODELS), help=f"timm names (default: {DEFAULT_MODELS})")
    p.add_argument("--num-classes", type=int, default=31, help="artists in the classifier head")
    p.add_argument("--image-size", type=int, default=224, help="input side in pixels, for the GFLOPs")
    p.add_argument("--markdown", action="store_true", help="markdown tables (for the README)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    unknown = [n for n in args.names if not timm.is_model(n)]
    if unknown:
        print(f"error: not timm models: {unknown} (see timm.list_models())", file=sys.stderr)
        return 1
    infos = model_table(args.names, args.num_classes, args.image_size)
    print(format_models(infos, args.markdown))
    print(f"\nGFLOPs: torch FlopCounterMode, 2 FLOPs per multiply-add, one {args.image_size}x{args.image_size} image; "
          f"{args.num_classes}-artist head; MB = 2^20 bytes.")
    for info in infos:
        print(f"\n{'### ' if args.markdown else ''}{info.name}: depth-1 structure\n")
        print(format_structure(info, args.markdown))
    return 0
