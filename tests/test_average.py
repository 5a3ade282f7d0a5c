"""`tim average`: one checkpoint whose weights are the weighted mean of others' (a fine-tune and its start).

Tiny random-init checkpoints on a small generated painting folder, offline. The average must be the weighted
mean tensor by tensor, load with plain timm, answer like its source when averaged with itself, say where it came
from (config and card), join an ensemble, and refuse what it cannot honestly average before writing anything.
"""
from __future__ import annotations

import pytest
import timm
import torch
from app_helpers import picture, save
from paintings import make_separable_folder
from safetensors.torch import load_file

from tim.checkpoint import read_config, save_checkpoint
from tim.cli import main as tim_main
from tim.data import DataConfig
from tim.predictor import Predictor

ARTISTS = ["Blue_Period", "Green_Garden", "Red_Studio"]
PREPROCESSING = {"resize_mode": "pad", "image_size": 64, "pad_color": [0, 0, 0]}


def checkpoint(folder, data, seed: int, arch: str = "test_efficientnet", labels=ARTISTS):
    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=len(labels))
    with torch.no_grad():  # BatchNorm statistics that differ between checkpoints, so the mean is visible in them too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    recipe = DataConfig(source=str(data), image_size=64, min_images=1, duplicate_distance=-1, num_proc=1).to_dict()
    extra = {"data": recipe, "train": {"model": arch, "epochs": 2 + seed, "seed": seed}, "epoch": 2 + seed,
             "validation": {"val_accuracy": 0.5}, "calibration": {"method": "temperature", "temperature": 2.0}}
    return save_checkpoint(model, folder, list(labels), PREPROCESSING, extra)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("average")
    data = make_separable_folder(root / "paintings")
    return root, data, checkpoint(root / "start", data, 0), checkpoint(root / "tuned", data, 1)


def test_the_average_is_the_weighted_mean_and_loads_with_timm(setup):
    root, _, start, tuned = setup
    out = root / "avg"
    assert tim_main(["average", str(start), str(tuned), "--weights", "1", "3", "--out", str(out)]) == 0
    a, b, mean = (load_file(str(f / "model.safetensors")) for f in (start, tuned, out))
    assert set(mean) == set(a)
    for key, tensor in mean.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, 0.25 * a[key] + 0.75 * b[key])
    assert not torch.equal(mean["bn1.running_mean"], b["bn1.running_mean"])  # statistics are averaged too
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert model.pretrained_cfg["label_names"] == ARTISTS
    tim_block = read_config(out)["tim"]
    assert tim_block["average"]["weights"] == [0.25, 0.75]
    assert [s.split("/")[-1] for s in tim_block["average"]["sources"]] == ["start", "tuned"]
    assert tim_block["train"] == read_config(tuned)["tim"]["train"]  # the fine-tune's recipe, which names its start
    for gone in ("calibration", "epoch", "validation"):  # they described one source, not the average
        assert gone not in tim_block


def test_a_checkpoint_averaged_with_itself_answers_as_it_does(setup, tmp_path):
    root, _, start, _ = setup
    out = tmp_path / "self"
    assert tim_main(["average", str(start), str(start), "--out", str(out)]) == 0
    files = [save(picture(60 + 10 * i, 50, seed=i), tmp_path / f"p{i}.jpg") for i in range(3)]
    before, after = Predictor.load(str(start)), Predictor.load(str(out))
    batch = torch.stack([before.preprocess(str(f))[0] for f in files])
    # the network's own answers (the source's temperature is dropped: calibrate the average on its own)
    torch.testing.assert_close(after.outputs(batch).logits, before.outputs(batch).logits,
                               rtol=1e-4, atol=1e-5)
    assert "calibration" not in read_config(out)["tim"]


def test_the_card_says_where_the_weights_came_from_and_the_average_joins_an_ensemble(setup, tmp_path):
    root, _, start, tuned = setup
    out = tmp_path / "avg"
    assert tim_main(["average", str(start), str(tuned), "--out", str(out)]) == 0
    assert tim_main(["card", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "weighted mean (`tim average`) of 0.50 × `" in card and "the recipe below is the last one's" in card
    pair = tmp_path / "pair"
    assert tim_main(["ensemble", str(out), str(tuned), "--out", str(pair)]) == 0
    assert "weighted mean (`tim average`)" in (pair / "README.md").read_text()  # the member's origin, in the card


@pytest.mark.parametrize("case, message", [
    ("weights", "--weights: 3 values for 2 checkpoints"),
    ("negative", "every weight must be above 0"),
    ("labels", "label_names differ"),
    ("architecture", "architectures differ"),
    ("one", "averaging takes 2 to"),
])
def test_what_cannot_be_averaged_is_refused_before_anything_is_written(setup, tmp_path, capsys, case, message):
    root, data, start, tuned = setup
    args = [str(start), str(tuned)]
    if case == "weights":
        args += ["--weights", "1", "1", "1"]
    elif case == "negative":
        args += ["--weights", "1", "-1"]
    elif case == "labels":
        args[1] = str(checkpoint(tmp_path / "other", data, 2, labels=["A", "B", "C"]))
    elif case == "architecture":
        args[1] = str(checkpoint(tmp_path / "other", data, 2, arch="test_resnet"))
    elif case == "one":
        args = args[:1]
    out = tmp_path / "avg"
    assert tim_main(["average", *args, "--out", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
