"""`tim export`: a half-precision copy that is checked against the original before it is kept."""
import json

import pytest
import timm
import torch
from safetensors import safe_open

from paintings import make_separable_folder
from tim.checkpoint import save_checkpoint
from tim.data import DataConfig
from tim.export import ExportError, export_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    data = make_separable_folder(tmp_path / "paintings")
    cfg = DataConfig(source=str(data), image_size=32, min_images=1, duplicate_distance=-1, num_proc=1)
    model = timm.create_model("test_resnet", num_classes=3)
    folder = save_checkpoint(model, tmp_path / "best", ["Blue_Period", "Green_Garden", "Red_Studio"],
                             {"resize_mode": "pad", "image_size": 32, "pad_color": [0, 0, 0]}, {"data": cfg.to_dict()})
    return folder


def test_fp16_copy_is_half_the_size_agrees_and_loads_in_timm(checkpoint, tmp_path):
    out = tmp_path / "bundled"
    agreement = export_checkpoint(str(checkpoint), out)
    assert agreement >= 0.995
    with safe_open(out / "model.safetensors", "pt") as f:
        assert f.get_tensor("fc.weight").dtype == torch.float16
    ratio = (out / "model.safetensors").stat().st_size / (checkpoint / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.6
    config = json.loads((out / "config.json").read_text())
    assert config["tim"]["export"]["top1_agreement"] == agreement
    assert config["tim"]["preprocessing"]["image_size"] == 32
    assert (out / "README.md").exists()
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert model.pretrained_cfg["label_names"] == ["Blue_Period", "Green_Garden", "Red_Studio"]


def test_a_copy_that_disagrees_is_refused_and_not_written(checkpoint, tmp_path):
    out = tmp_path / "bundled"
    with pytest.raises(ExportError, match="agrees with"):
        export_checkpoint(str(checkpoint), out, min_agreement=1.01)
    assert not out.exists()


def test_the_copy_keeps_the_calibration_and_the_unknown_artist_statistics(checkpoint, tmp_path):
    from tim.calibrate import write_into_checkpoint
    from tim.calibration import Calibration
    from tim.openset import UnknownDetector
    from tim.predictor import Predictor

    width = timm.create_model("test_resnet").num_features
    stats = {"class_means": torch.randn(3, width), "precision": torch.eye(width)}
    write_into_checkpoint(checkpoint, Calibration("temperature-brier", 0.8),
                          UnknownDetector("mahalanobis", 3.5, stats, {"retention": 0.9}))
    out = tmp_path / "bundled"
    export_checkpoint(str(checkpoint), out)
    copy = Predictor.load(str(out))
    assert copy.calibration == Calibration("temperature-brier", 0.8)
    assert copy.unknown.score_name == "mahalanobis" and copy.unknown.threshold == 3.5
    assert torch.equal(copy.unknown.tensors["class_means"], stats["class_means"])
    assert "calibrated" in (out / "README.md").read_text()
