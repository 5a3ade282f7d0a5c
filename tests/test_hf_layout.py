"""Tim's checkpoints where the Hugging Face ecosystem expects them: plain timm and 🤗 transformers' pipeline load them
and answer like Tim; checkpoints written before that layout still load in Tim."""
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from tim.checkpoint import hub_layout, load_checkpoint, rewrite_config, save_checkpoint
from tim.predictor import Predictor

ARTISTS = ["Claude_Monet", "Paul_Klee", "Rembrandt", "Frida_Kahlo"]
SIZES = [(64, 64), (96, 64), (50, 120), (150, 90), (40, 40)]  # square, landscape, portrait, down- and up-scaled


def paintings(folder, n=10):
    """Smooth colour fields of several shapes, saved as PNG (a lossless file both readers decode alike)."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    paths = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        corners = rng.integers(0, 256, (2, 2, 3)).astype(np.float32)
        img = Image.fromarray(corners.astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
        noise = rng.integers(-20, 20, (h, w, 3))
        arr = np.clip(np.asarray(img, dtype=np.int32) + noise, 0, 255).astype(np.uint8)
        paths.append(folder / f"painting_{i}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


def checkpoint(folder, resize_mode="stretch", pad_color=(0, 0, 0)):
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", num_classes=len(ARTISTS))
    with torch.no_grad():  # a head that tells the colour fields apart clearly, so top-1 is never a near-tie
        model.classifier.weight.mul_(50)
    return save_checkpoint(model, folder, ARTISTS, {"resize_mode": resize_mode, "image_size": 48,
                                                    "pad_color": list(pad_color)})


def pipeline_top1(folder, paths):
    from transformers import pipeline

    classify = pipeline("image-classification", model=str(folder), device="cpu")
    return [answers[0]["label"] for answers in classify([str(p) for p in paths], top_k=1)]


def tim_top1(folder, paths):
    return [p.artist for p in Predictor.load(str(folder)).predict(paths)]


def test_the_config_names_num_classes_once_and_states_tims_preprocessing(tmp_path):
    config = json.loads((checkpoint(tmp_path / "best") / "config.json").read_text())
    assert "num_classes" not in config.get("model_args", {})
    assert config["num_classes"] == len(ARTISTS)
    cfg = config["pretrained_cfg"]
    assert (cfg["input_size"], cfg["crop_pct"], cfg["crop_mode"], cfg["interpolation"]) == ([3, 48, 48], 1.0,
                                                                                          "squash", "bicubic")


def test_the_pipeline_names_the_same_artist_as_tim_with_stretch(tmp_path):
    folder = checkpoint(tmp_path / "best")
    paths = paintings(tmp_path / "paintings")
    answers = tim_top1(folder, paths)
    assert len(set(answers)) > 1  # the images really are told apart
    assert pipeline_top1(folder, paths) == answers


def test_the_pipeline_letterboxes_like_tim_when_the_bars_are_the_mean_colour(tmp_path):
    """`pad` becomes timm's `border` mode; timm fills the bars with the mean colour, so that colour agrees exactly."""
    mean_colour = [round(255 * m) for m in timm.create_model("test_efficientnet").pretrained_cfg["mean"]]
    folder = checkpoint(tmp_path / "best", "pad", mean_colour)
    paths = paintings(tmp_path / "paintings")
    assert pipeline_top1(folder, paths) == tim_top1(folder, paths)


def test_plain_timm_loads_it_with_the_labels_and_the_preprocessing(tmp_path):
    folder = checkpoint(tmp_path / "best")
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert model.num_classes == len(ARTISTS)
    assert model.pretrained_cfg["label_names"] == ARTISTS
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    path = paintings(tmp_path / "paintings", n=2)[1]  # 96 x 64: squashed to the square, as Tim does
    expected = Predictor.load(str(folder)).preprocess(path)[0]
    assert torch.allclose(transform(Image.open(path).convert("RGB")), expected, atol=1e-5)


def test_an_old_checkpoint_with_num_classes_in_model_args_still_loads_and_is_rewritten(tmp_path):
    folder = checkpoint(tmp_path / "best")
    path = folder / "config.json"
    old = json.loads(path.read_text())
    old["model_args"] = {"num_classes": len(ARTISTS), **old.get("model_args", {})}
    old["pretrained_cfg"].update(crop_mode="center")  # what Tim wrote before
    path.write_text(json.dumps(old))
    paths = paintings(tmp_path / "paintings", n=4)
    before = tim_top1(folder, paths)
    model, _ = load_checkpoint(folder)
    assert model.num_classes == len(ARTISTS)

    weights = (folder / "model.safetensors").read_bytes()
    rewrite_config(folder)
    assert (folder / "model.safetensors").read_bytes() == weights
    assert json.loads(path.read_text()) == hub_layout(old)
    assert tim_top1(folder, paths) == before == pipeline_top1(folder, paths)


@pytest.mark.parametrize("mode, crop_mode", [("stretch", "squash"), ("pad", "border")])
def test_each_resize_mode_has_its_timm_crop_mode(tmp_path, mode, crop_mode):
    config = json.loads((checkpoint(tmp_path / "best", mode) / "config.json").read_text())
    assert config["pretrained_cfg"]["crop_mode"] == crop_mode
