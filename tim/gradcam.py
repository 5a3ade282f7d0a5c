"""Grad-CAM for Tim's models: where in the painting the model looked, at the cost of about one forward.

Three things make it cheap and correct:

* The target layer comes from a small per-family registry (the last convolutional
  feature map), with a generic fallback for other timm CNNs.
* The weights are frozen and the target layer's output is re-entered into the graph
  as a fresh leaf, so the backward pass runs only through the head, never through
  the backbone. Used naively, pytorch-grad-cam back-propagates into every weight,
  which costs 2.7-3.4x a forward on a CPU; this way the whole explanation costs
  about one forward, and the prediction is read from that same forward.
* The CAM is computed on the square the model saw, then cropped to the picture's
  `Box` (the padding bars removed) and resized to the original's own aspect ratio.

Where the forward ran elsewhere (Tim's ONNX Runtime engine returns the last feature map
with the logits), `CamExplainer(batch, feature_map)` runs only the head in PyTorch, from
that map: the same CAM, at the cost of the engine's forward plus the head.

An ensemble (tim.models.Ensemble) is explained as the average of its members' maps for the ensemble's
answer: the target is the joined feature map, the backward runs from the sum of the members' raw logits
for the ensemble's top class (so each member's channels get exactly that member's Grad-CAM gradient),
and the map is computed per member's channels, each scaled to [0, 1], then averaged (as pytorch-grad-cam
averages several target layers).

pytorch-grad-cam registers hooks when a CAM object is built and leaks them when the
object is rebuilt per image, so `CamExplainer` builds one per model, hooks a private
tap module (so plain predictions never trigger its hooks) and serialises calls.
"""
from __future__ import annotations

import threading
from typing import Callable

import cv2
import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image, show_cam_on_image

from tim.images import Box
from tim.models import Ensemble, combine

# model class name -> the module whose output is the last convolutional feature map
TARGET_LAYERS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "ResNet": lambda m: m.layer4[-1],
    "EfficientNet": lambda m: m.bn2,  # conv_head followed by its BatchNorm + activation
    "ConvNeXt": lambda m: m.stages[-1],
    "Ensemble": lambda m: m.joined,  # the members' last feature maps, joined along channels
}


class GradCamError(RuntimeError):
    """The model has no feature map Grad-CAM can use; the message says what to do."""


def target_layer(model: torch.nn.Module, image_size: int = 224) -> torch.nn.Module:
    """The module Grad-CAM reads: from TARGET_LAYERS by class (or base class), else found by tracing."""
    for cls in type(model).__mro__:
        if cls.__name__ in TARGET_LAYERS:
            return TARGET_LAYERS[cls.__name__](model)
    return last_feature_map(model, image_size)


def last_feature_map(model: torch.nn.Module, image_size: int = 224) -> torch.nn.Module:
    """The last module (in execution order) whose output is a 4-D map with more than one position.

    That is the final convolutional feature map just before global pooling, the
    usual Grad-CAM layer. One dummy forward finds it for any timm CNN.
    """
    order: list[torch.nn.Module] = []

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1:
            order.append(module)

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        param = next(model.parameters())
        with torch.inference_mode():
            model(torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype))
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise GradCamError(
            f"{type(model).__name__} has no 4-D convolutional feature map, so Grad-CAM cannot explain it "
            "(transformers need a reshape_transform). Add an entry to tim.gradcam.TARGET_LAYERS."
        )
    return order[-1]


def _top_class(logits: torch.Tensor) -> torch.Tensor:
    """Grad-CAM target: the logit of the predicted class (per image, 1-D logits)."""
    return logits.max()


def _ensemble_top_class(member_logits: torch.Tensor) -> torch.Tensor:
    """Grad-CAM target of an ensemble (per image, members x K raw logits): the sum of the members' logits for
    the ensemble's predicted class; its gradient at each member's map is that member's own Grad-CAM gradient."""
    top = int(combine(member_logits.detach()[None]).argmax())
    return member_logits[:, top].sum()


class _PerMember(torch.nn.Module):
    """An ensemble whose output is its members' raw logits, N x members x K (what `_ensemble_top_class` reads)."""

    def __init__(self, model: Ensemble):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), per_member=True)


class _Head(torch.nn.Module):
    """A timm model entered at its last feature map: forward_head, after a tap the library hooks."""

    def __init__(self, model: torch.nn.Module, per_member: bool = False):
        super().__init__()
        self.tap = torch.nn.Identity()
        self.model = model
        self.per_member = per_member  # an ensemble: its members' raw logits (what `_ensemble_top_class` reads)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        if self.per_member:
            return self.model.forward_head(self.tap(feature_map), per_member=True)
        return self.model.forward_head(self.tap(feature_map))


class _GradCamAtSize(GradCAM):
    """GradCAM whose maps are scaled to `size` (the image's, when its input is a feature map; None: its input's),
    and, with `members` (an ensemble's channels per member), one map per member's part of the target, averaged."""

    def __init__(self, model: torch.nn.Module, target_layers: list, size: int | None = None,
                 members: list[int] | None = None):
        super().__init__(model=model, target_layers=target_layers)
        self.size = size
        self.members = members

    def get_target_width_height(self, input_tensor: torch.Tensor) -> tuple[int, int]:
        return (self.size, self.size) if self.size else super().get_target_width_height(input_tensor)

    def compute_cam_per_layer(self, input_tensor: torch.Tensor, targets: list, eigen_smooth: bool) -> list:
        """Per member: the Grad-CAM of its channels (ReLU, scaled to [0, 1]); the library averages them after."""
        if self.members is None:
            return super().compute_cam_per_layer(input_tensor, targets, eigen_smooth)
        [activations] = [a.cpu().numpy() for a in self.activations_and_grads.activations]
        [grads] = [g.cpu().numpy() for g in self.activations_and_grads.gradients]
        cut = np.cumsum(self.members)[:-1]
        size = self.get_target_width_height(input_tensor)
        return [scale_cam_image(np.maximum(self.get_cam_image(input_tensor, None, targets, a, g, eigen_smooth), 0),
                                size)[:, None, :]
                for a, g in zip(np.split(activations, cut, axis=1), np.split(grads, cut, axis=1))]


class CamExplainer:
    """One pytorch-grad-cam GradCAM per model, reused for every call; calls are serialised.

    Building it freezes the model's weights (requires_grad=False): a Predictor's model
    is for inference, and frozen weights are what keep the backward pass off the backbone.
    """

    def __init__(self, model: torch.nn.Module, layer: torch.nn.Module | None = None, image_size: int = 224):
        self.model = model
        self.image_size = image_size
        self.layer = layer if layer is not None else target_layer(model, image_size)
        for p in model.parameters():
            p.requires_grad_(False)
        self._lock = threading.Lock()
        self._owner: int | None = None  # thread running a CAM call; the gate is shut for everyone else
        self._tap = torch.nn.Identity()  # the library hooks this, so plain forwards never reach its hooks
        self._gate = self.layer.register_forward_hook(self._route)
        self._features: torch.Tensor | None = None  # the classifier's input, kept during a CAM call
        classifier = model.get_classifier() if hasattr(model, "get_classifier") else None  # timm models have one
        self._keep = classifier.register_forward_pre_hook(self._keep_features) if classifier is not None else None
        self.ensemble = isinstance(model, Ensemble) and layer is None
        self._target = _ensemble_top_class if self.ensemble else _top_class
        self._cam = _GradCamAtSize(_PerMember(model) if self.ensemble else model, [self._tap], None, self._members())
        self._head: _GradCamAtSize | None = None  # for CAMs from a given feature map, built on first use
        self._reads_features: bool | None = None

    @property
    def reads_features(self) -> bool:
        """True when the target layer's output is `model.forward_features`' (timm CNNs): the engine's feature map."""
        if self._reads_features is None:
            self._reads_features = False
            if hasattr(self.model, "forward_features") and hasattr(self.model, "forward_head"):
                seen = []
                hook = self.layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
                param = next(self.model.parameters())
                probe = torch.randn(1, 3, self.image_size, self.image_size, generator=torch.Generator().manual_seed(0))
                try:
                    with torch.inference_mode():
                        features = self.model.forward_features(probe.to(param.device, param.dtype))
                finally:
                    hook.remove()
                self._reads_features = (len(seen) == 1 and isinstance(seen[0], torch.Tensor)
                                        and seen[0].shape == features.shape and torch.equal(seen[0], features))
        return self._reads_features

    def _keep_features(self, _module, inputs):
        """During a CAM call, keep the pooled features the classifier reads (the unknown-artist score needs them)."""
        if self._owner == threading.get_ident():
            self._features = inputs[0].detach().float().cpu()

    def _members(self) -> list[int] | None:
        """An ensemble's channels per member in the joined map (one map each, averaged); None for one model."""
        return list(self.model.channels) if self.ensemble else None

    def _route(self, _module, _inputs, output):
        """During a CAM call, restart the graph at the target's output so backward stops there."""
        if self._owner != threading.get_ident() or not torch.is_grad_enabled():
            return None
        leaf = output.detach().float().requires_grad_()
        return self._tap(leaf.clone())  # clone: a later in-place op may not touch the leaf

    def __call__(self, batch: torch.Tensor, feature_map: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray]:
        """(logits NxK, pooled features NxD, both float32 on CPU, CAMs NxHxW in [0, 1] at the input's size).

        All from one forward + a backward through the head. With `feature_map` (the last feature map of this
        batch from a forward run elsewhere, e.g. Tim's engine, valid when `reads_features`) only the head runs
        here, forward and backward.
        """
        if feature_map is None:
            return self._run(self._cam, batch)
        with self._lock:
            if self._head is None:
                head = _Head(self.model, self.ensemble)
                self._head = _GradCamAtSize(head, [head.tap], self.image_size, self._members())
        param = next(self.model.parameters())
        return self._run(self._head, feature_map.detach().to(param.device, torch.float32).requires_grad_())

    def _run(self, cam: GradCAM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray]:
        """One call of `cam` (the whole model's, or the head's on a feature map): logits, pooled features, CAMs.

        While it runs, this thread owns the hooks (the gate restarts the graph at the target, the classifier's
        pre-hook keeps the pooled features); the graph and stored maps are dropped right after.
        """
        with self._lock:
            self._owner = threading.get_ident()
            try:
                with torch.inference_mode(False), torch.enable_grad():  # even when called under inference_mode
                    cams = cam(x, targets=[self._target] * len(x))
                logits = cam.outputs.detach().float().cpu()
                if self.ensemble:  # the members' logits: the ensemble's are their mean probability's log
                    logits = combine(logits)
                features = self._features
            finally:
                self._owner = None
                self._features = None
                cam.outputs = None  # drop the graph and the stored maps now, not at the next call
                cam.activations_and_grads.clear()
        return logits, features, cams

    def close(self) -> None:
        """Remove every hook this explainer added (the model is left frozen)."""
        self._gate.remove()
        if self._keep is not None:
            self._keep.remove()
        self._cam.activations_and_grads.release()
        if self._head is not None:
            self._head.activations_and_grads.release()


def cam_on_picture(cam: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """Map a square CAM onto the picture: crop to `box` (drops the bars), resize to `size` = (width, height).

    The crop is re-normalised to [0, 1], so the colour scale describes the painting
    alone; a flat crop (nothing but bars lit) maps to zeros.
    """
    crop = cam[box.top : box.top + box.height, box.left : box.left + box.width].astype(np.float32)
    resized = cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR)
    lo, hi = float(resized.min()), float(resized.max())
    if hi - lo < 1e-6:
        return np.zeros_like(resized)
    return (resized - lo) / (hi - lo)


def overlay(picture: Image.Image, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """The picture (RGB) with the CAM as a JET heat map on top, as HxWx3 uint8."""
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return show_cam_on_image(rgb, cam, use_rgb=True, image_weight=image_weight)
