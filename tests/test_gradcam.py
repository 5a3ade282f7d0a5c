"""Grad-CAM: the right layer per family, the geometry on the original picture, one CAM per model, same prediction."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import timm
import torch
from app_helpers import jpeg_bytes, make_checkpoint, picture

from tim.gradcam import CamExplainer, GradCamError, cam_on_picture, last_feature_map, overlay, target_layer
from tim.images import Box, ImageError
from tim.predictor import Explanation, Predictor

FAMILIES = {
    "test_resnet": lambda m: m.layer4[-1],
    "test_efficientnet": lambda m: m.bn2,
    "test_convnext": lambda m: m.stages[-1],
}


@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {arch: Predictor.load(str(make_checkpoint(root / arch, arch, image_size=128)), engine="auto")
            for arch in FAMILIES}


@pytest.mark.parametrize("arch", FAMILIES)
def test_target_layer_per_family(arch):
    model = timm.create_model(arch, num_classes=3)
    assert target_layer(model) is FAMILIES[arch](model)


def test_fallback_finds_the_last_feature_map_before_pooling():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 4),
    )
    assert last_feature_map(model, 64) is model[3]
    assert target_layer(model, 64) is model[3]  # not in the registry: traced
    explainer = CamExplainer(model, image_size=64)
    logits, features, cams = explainer(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 4) and cams.shape == (2, 64, 64)
    assert features is None  # not a timm model: no get_classifier() to read the pooled features at


def test_a_model_without_feature_maps_gets_a_clear_error():
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    with pytest.raises(GradCamError, match="no 4-D convolutional feature map"):
        target_layer(mlp, 32)


def test_cam_is_cropped_to_the_picture_so_bars_never_show():
    # a 400x100 picture padded into a 128 square sits in rows 48..79; light up only the bars
    box = Box(left=0, top=48, width=128, height=32)
    cam = np.ones((128, 128), np.float32)
    cam[48:80] = 0.0
    mapped = cam_on_picture(cam, box, (400, 100))
    assert mapped.shape == (100, 400)
    assert mapped.max() == 0.0  # the bars were lit, the picture was not: nothing shows

    cam[48:80, 100:] = 0.7  # now something on the right of the picture too
    mapped = cam_on_picture(cam, box, (400, 100))
    assert mapped[:, 350:].min() > 0.9 and mapped[:, :250].max() < 0.1


def test_explanation_has_the_originals_shape_and_hides_the_bars(predictors, monkeypatch):
    predictor = predictors["test_resnet"]
    [explanation] = predictor.explain([jpeg_bytes(picture(400, 100))])
    assert isinstance(explanation, Explanation)
    assert explanation.picture.size == (400, 100)
    assert explanation.overlay.shape == (100, 400, 3) and explanation.overlay.dtype == np.uint8
    assert explanation.cam.shape == (100, 400) and 0 <= explanation.cam.min() <= explanation.cam.max() <= 1
    box = explanation.prediction.box
    assert (box.width, box.height) == (128, 32)

    # force the model's CAM to be hot exactly in the padding bars: the explanation must stay cold
    explainer = predictor.explainer
    real_call = type(explainer).__call__

    def bars_hot(self, batch, *feature_map):
        logits, features, cams = real_call(self, batch, *feature_map)
        cams[:] = 1.0
        cams[:, box.top : box.top + box.height, box.left : box.left + box.width] = 0.0
        return logits, features, cams

    monkeypatch.setattr(type(explainer), "__call__", bars_hot)
    [explanation] = predictor.explain([jpeg_bytes(picture(400, 100))])
    assert explanation.cam.max() == 0.0
    # cold everywhere: the overlay is exactly the picture under an all-zero heat map
    assert np.array_equal(explanation.overlay, overlay(explanation.picture, np.zeros((100, 400), np.float32)))


def test_tall_pictures_keep_their_shape_and_big_ones_are_shown_smaller(tmp_path, predictors):
    big = tmp_path / "big.png"  # PNG: a JPEG would already be decoded at a reduced scale (draft mode)
    picture(3000, 1500).save(big)
    tall, big = predictors["test_efficientnet"].explain([jpeg_bytes(picture(90, 300)), str(big)])
    assert tall.overlay.shape == (300, 90, 3)
    assert big.overlay.shape[:2] == (512, 1024) and big.picture.size == (1024, 512)


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("arch", FAMILIES)
def test_cam_object_is_built_once_and_hooks_do_not_grow(predictors, arch):
    predictor = predictors[arch]
    image = jpeg_bytes(picture(150, 120))
    predictor.explain([image])
    explainer = predictor.explainer
    hooks = hook_count(predictor.model)
    for _ in range(3):
        predictor.explain([image, image])
        predictor.predict([image])
    assert predictor.explainer is explainer
    assert hook_count(predictor.model) == hooks
    # plain predictions never reach the library's hooks, so nothing piles up between CAM calls
    assert explainer._cam.activations_and_grads.activations == []
    assert explainer._cam.activations_and_grads.gradients == []


@pytest.mark.parametrize("arch", FAMILIES)
def test_explain_predicts_what_predict_predicts(predictors, arch):
    predictor = predictors[arch]
    sources = [jpeg_bytes(picture(200, 150, seed=s)) for s in range(3)] + [b"not an image"]
    explained = predictor.explain(sources, batch_size=2)
    predicted = predictor.predict(sources)
    assert isinstance(explained[-1], ImageError) and isinstance(predicted[-1], ImageError)
    for e, p in zip(explained[:-1], predicted[:-1]):
        assert e.prediction.artist == p.artist
        assert [a for a, _ in e.prediction.top] == [a for a, _ in p.top]
        assert np.allclose([c for _, c in e.prediction.top], [c for _, c in p.top], atol=1e-5)


def test_backward_stops_at_the_target_layer(predictors):
    predictor = predictors["test_convnext"]
    predictor.explain([jpeg_bytes(picture())])
    assert all(not p.requires_grad and p.grad is None for p in predictor.model.parameters())


def test_concurrent_explanations_are_serialised(predictors):
    predictor = predictors["test_efficientnet"]
    images = [jpeg_bytes(picture(160, 120, seed=s)) for s in range(4)]
    expected = [e.cam for e in predictor.explain(images)]
    got: dict[int, np.ndarray] = {}

    def work(i):
        got[i] = predictor.explain([images[i]])[0].cam

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert np.allclose(got[i], expected[i], atol=1e-4)
