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
