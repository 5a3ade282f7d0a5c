"""One predictor for the app, `tim predict` and `tim evaluate`.

It reads everything about preprocessing from the checkpoint's config (square
mode, size, pad colour, mean/std), so inference sees what training saw.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import timm
import torch

from tim.data.transforms import eval_transform
from tim.images import Box, ImageError, ImageSource, prepare


def bf16_is_fast(device: torch.device) -> bool:
    """True where bf16 matmuls have hardware support: recent GPUs, CPUs with AVX-512 bf16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


@dataclass
class Prediction:
    artist: str
    confidence: float
    top: list[tuple[str, float]]  # top-k (artist, probability), best first
    box: Box | None = None  # where the picture sits in the square the model saw
    extras: dict = field(default_factory=dict)


class Predictor:
    """A loaded model plus the preprocessing its checkpoint config prescribes."""

    def __init__(self, model: torch.nn.Module, config: dict, device: str | torch.device = "cpu", fast: bool = True):
        self.config = config
        self.labels: list[str] = list(config["label_names"])
        pre = config["tim"]["preprocessing"]
        self.resize_mode: str = pre["resize_mode"]
        self.image_size: int = int(pre["image_size"])
        self.pad_color = tuple(pre.get("pad_color", (0, 0, 0)))
        data_cfg = timm.data.resolve_data_config(model=model)
        self.transform = eval_transform(data_cfg["mean"], data_cfg["std"])
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        # channels_last: 1.8x faster for Lite0 on a 2-core AVX2 CPU; bf16 autocast only where the
        # hardware has bf16 units (it is 7x *slower* on CPUs without them)
        self.fast = fast
        self.bf16 = fast and bf16_is_fast(self.device)
        if fast:
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls, ref: str, **kwargs) -> "Predictor":
        """From a local checkpoint folder or a Hub repo id (see tim.hub.resolve)."""
        from tim.hub import load_model  # Hub layer resolves references, checks safetensors

        model, config = load_model(ref)
        return cls(model, config, **kwargs)

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def preprocess(self, source: ImageSource):
        """(normalised tensor CxHxW, box, original RGB picture); raises ImageError for bad input."""
        squared, box, original = prepare(source, self.image_size, self.resize_mode, self.pad_color)
        return self.transform(squared), box, original

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Softmax over artists for a normalised batch NxCxHxW (float32 on CPU)."""
        batch = batch.to(self.device, memory_format=torch.channels_last if self.fast else torch.contiguous_format)
        with self.autocast():
            logits = self.model(batch)
        return logits.float().softmax(-1).cpu()

    def to_prediction(self, probs: torch.Tensor, box: Box | None = None, k: int = 5) -> Prediction:
        top = probs.topk(min(k, len(self.labels)))
        pairs = [(self.labels[i], float(p)) for p, i in zip(top.values, top.indices)]
        return Prediction(pairs[0][0], pairs[0][1], pairs, box)

    def predict(self, sources: list[ImageSource], batch_size: int = 32, k: int = 5) -> list[Prediction | ImageError]:
        """A Prediction per source, or the ImageError that says why that one could not be read."""
        results: list[Prediction | ImageError] = [None] * len(sources)  # type: ignore[list-item]
        for start in range(0, len(sources), batch_size):
            tensors, boxes, slots = [], [], []
            for i in range(start, min(start + batch_size, len(sources))):
                try:
                    x, box, _ = self.preprocess(sources[i])
                except ImageError as e:
                    results[i] = e
                    continue
                tensors.append(x)
                boxes.append(box)
                slots.append(i)
            if tensors:
                probs = self.probabilities(torch.stack(tensors))
                for i, p, box in zip(slots, probs, boxes):
                    results[i] = self.to_prediction(p, box, k)
        return results
