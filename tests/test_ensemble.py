"""`tim ensemble`: two checkpoints on the same artists, answering as one checkpoint (the mean of their probabilities).

Tiny random-init members on small generated paintings, offline. The ensemble must answer like the mean of its
members, go through every command whole (predict, calibrate, evaluate, export, the card, the Hub staging, the
catalog), keep each member loadable by plain timm, and refuse members or folders it cannot honestly join.
"""
from __future__ import annotations

import csv
import fnmatch
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from app_helpers import picture, save
from paintings import make_separable_folder
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors import safe_open

from tim.checkpoint import load_checkpoint, read_config, save_checkpoint
from tim.cli import main as tim_main
from tim.data import DataConfig
from tim.models import Ensemble
from tim.predictor import Predictor

ARTISTS = ["Blue_Period", "Green_Garden", "Red_Studio"]
PREPROCESSING = {"resize_mode": "pad", "image_size": 64, "pad_color": [0, 0, 0]}  # test_efficientnet: a 2x2 map


def member(folder: Path, data: Path, seed: int, labels=ARTISTS, epochs: int = 3) -> Path:
    """A random-init test_efficientnet checkpoint on `data`'s recipe, with its own (member-only) decisions."""
    torch.manual_seed(seed)
    model = timm.create_model("test_efficientnet", num_classes=len(labels))
    recipe = DataConfig(source=str(data), image_size=64, min_images=1, duplicate_distance=-1, num_proc=1).to_dict()
    extra = {"data": recipe, "train": {"model": "test_efficientnet", "epochs": epochs, "seed": seed}, "epoch": epochs,
             "calibration": {"method": "temperature", "temperature": 2.0}}
    return save_checkpoint(model, folder, list(labels), PREPROCESSING, extra)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(data folder, member a, member b, their ensemble)."""
    root = tmp_path_factory.mktemp("ensemble")
    data = make_separable_folder(root / "paintings")
    a, b = member(root / "a", data, 0), member(root / "b", data, 1, epochs=5)
    assert tim_main(["ensemble", str(a), str(b), "--out", str(root / "pair")]) == 0
    return data, a, b, root / "pair"


@pytest.fixture
def pictures(tmp_path) -> list[Path]:
    return [save(picture(60 + 10 * i, 50, seed=i), tmp_path / f"p{i}.jpg") for i in range(3)]


def batch(predictor: Predictor, files) -> torch.Tensor:
    return torch.stack([predictor.preprocess(str(f))[0] for f in files])


def test_the_ensemble_is_one_folder_with_each_member_in_timm_layout(setup):
    _, a, b, pair = setup
    config = read_config(pair)
    assert config["tim"]["ensemble"]["members"] == ["member-1", "member-2"]
    assert config["label_names"] == ARTISTS and config["tim"]["preprocessing"] == PREPROCESSING
    assert not timm.is_model(config["architecture"])  # the root is no single timm model
    for name, source in (("member-1", a), ("member-2", b)):
        assert (pair / name / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
        model = timm.create_model(f"local-dir:{pair / name}", pretrained=True)
        assert model.pretrained_cfg["label_names"] == ARTISTS
        member_config = read_config(pair / name)
        assert "calibration" not in member_config["tim"]  # a member's own decisions no longer apply
        assert member_config["tim"]["train"] == read_config(source)["tim"]["train"]  # its recipe is kept
    assert "calibration" not in config["tim"]  # the pair is calibrated as one


def test_its_probabilities_are_the_mean_of_its_members(setup, pictures):
    _, a, b, pair = setup
    model, _ = load_checkpoint(pair)
    assert isinstance(model, Ensemble)
    ensemble = Predictor.load(str(pair), engine="eager")
    members = [Predictor.load(str(m), engine="eager") for m in (a, b)]
    for m in members:
        m.calibration = None  # the members' own calibration is not part of the ensemble
    x = batch(ensemble, pictures)
    expected = (members[0].probabilities(x) + members[1].probabilities(x)) / 2
    assert torch.allclose(ensemble.probabilities(x), expected, atol=1e-6)
    assert not torch.allclose(members[0].probabilities(x), members[1].probabilities(x), atol=1e-3)
    features = torch.cat([m.outputs(x).features for m in members], dim=1)
    assert torch.allclose(ensemble.outputs(x).features, features)  # what the decisions read: both members'


def test_the_fast_cpu_engine_answers_like_eager_pytorch(setup, pictures):
    pair = setup[3]
    eager, fast = Predictor.load(str(pair), engine="eager"), Predictor.load(str(pair), engine="auto")
    x = batch(eager, pictures)
    assert fast.engine is not None  # one ONNX graph for the whole ensemble
    assert torch.allclose(fast.probabilities(x), eager.probabilities(x), atol=1e-5)


def test_tim_predict_gives_one_row_per_picture(setup, pictures, tmp_path):
    out = tmp_path / "answers.csv"
    assert tim_main(["predict", *map(str, pictures), "--model", str(setup[3]), "--out", str(out), "--whole"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["path"]).name for r in rows] == [p.name for p in pictures]
    assert all(r["artist"] in ARTISTS and r["error"] == "" for r in rows)


def test_gradcam_is_the_average_of_the_members_maps_for_the_ensembles_class(setup, pictures):
    _, a, b, pair = setup
    predictor = Predictor.load(str(pair), engine="eager")
    x = batch(predictor, pictures)
    top = predictor.probabilities(x).argmax(1)
    maps = []
    for folder in (a, b):
        model, _ = load_checkpoint(folder)
        maps.append(GradCAM(model=model, target_layers=[model.bn2])(x, [ClassifierOutputTarget(int(c)) for c in top]))
    assert not np.allclose(maps[0], maps[1], atol=0.05)
    logits, _, cams = predictor.explainer(x)
    assert np.allclose(cams, scale_cam_image(np.mean(maps, axis=0)), atol=1e-4)
    assert torch.equal(logits.argmax(1), top)
    with torch.no_grad():  # from the feature map the engine returns: the same map, only the heads run here
        feature_map = predictor.model.forward_features(x)
    assert predictor.explainer.reads_features
    assert np.allclose(predictor.explainer(x, feature_map)[2], cams, atol=1e-5)


def test_calibrate_evaluate_and_export_treat_it_whole(setup, tmp_path, pictures):
    data, _, _, built = setup
    pair = tmp_path / "pair"
    shutil.copytree(built, pair)
    assert tim_main(["calibrate", str(pair), "--data", str(data)]) == 0
    config = read_config(pair)
    assert config["tim"]["calibration"]["method"] and config["tim"]["unknown"]["score"]
    assert not any("calibration" in read_config(pair / m)["tim"] for m in ("member-1", "member-2"))
    assert tim_main(["evaluate", str(pair), "--data", str(data), "--resamples", "20"]) == 0
    assert json.loads((pair / "eval_results.json").read_text())["architecture"] == config["architecture"]

    out = tmp_path / "small"
    assert tim_main(["export", str(pair), str(out)]) == 0
    for name in ("member-1", "member-2"):
        with safe_open(str(out / name / "model.safetensors"), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
        assert timm.create_model(f"local-dir:{out / name}", pretrained=True).pretrained_cfg["label_names"] == ARTISTS
    exported = read_config(out)
    assert exported["tim"]["calibration"] == read_config(pair)["tim"]["calibration"]
    assert exported["tim"]["export"]["dtype"] == "float16"
    small, full = Predictor.load(str(out), engine="eager"), Predictor.load(str(pair), engine="eager")
    x = batch(full, pictures)
    assert torch.equal(small.probabilities(x).argmax(1), full.probabilities(x).argmax(1))
    size = sum(p.stat().st_size for p in out.rglob("*.safetensors"))
    assert size < 0.6 * sum(p.stat().st_size for p in pair.rglob("*.safetensors"))


def test_the_card_describes_one_model_of_two_members(setup):
    card = (setup[3] / "README.md").read_text()
    assert "ensemble of 2" in card.lower()
    assert "member-1" in card and "member-2" in card
    assert '"epochs": 5' in card or "| epochs | 5 |" in card  # each member's own recipe
    assert "local-dir:" in card  # a member loads with plain timm
    assert "from transformers import pipeline" not in card and "single models only" in card


def test_the_catalog_lists_it_once_and_a_push_stages_every_member(setup, tmp_path):
    from tim.catalog import checkpoint_folders
    from tim.hub import HUB_FILES, _stage

    pair = setup[3]
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(pair, models / "pair")
    assert checkpoint_folders(models) == [models / "pair"]
    staged = _stage(pair, tmp_path / "staged" / "pair")
    files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
    for name in ("member-1", "member-2"):
        for file in ("config.json", "model.safetensors"):
            assert f"{name}/{file}" in files
            assert any(fnmatch.fnmatch(f"{name}/{file}", pattern) for pattern in HUB_FILES)  # uploaded, downloaded


def test_members_on_other_labels_are_refused_with_one_line(setup, tmp_path, capsys):
    data, a, _, _ = setup
    other = member(tmp_path / "other", data, 2, labels=["Blue_Period", "Red_Studio", "Green_Garden"])
    out = tmp_path / "pair"
    assert tim_main(["ensemble", str(a), str(other), "--out", str(out)]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and str(other) in line and "label_names differ" in line
    assert "position 1" in line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_members_on_another_recipe_are_refused(setup, tmp_path, capsys):
    data, a, _, _ = setup
    other = member(tmp_path / "other", data, 2)
    config = read_config(other)
    config["tim"]["data"]["seed"] = 7
    (other / "config.json").write_text(json.dumps(config))
    assert tim_main(["ensemble", str(a), str(other), "--out", str(tmp_path / "pair")]) == 1
    assert re.search(r"tim\.data \(data recipe\) differ \(seed: 7 vs 42\)", capsys.readouterr().err)


@pytest.mark.parametrize("command", ["ensemble", "average"])  # joining checkpoints, or averaging their weights
def test_an_existing_out_is_kept_unless_overwrite(setup, tmp_path, capsys, command):
    _, a, b, _ = setup
    out = tmp_path / "pair"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert tim_main([command, str(a), str(b), "--out", str(out)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"
    assert tim_main([command, str(a), str(b), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "mine.txt").exists() and read_config(out)["tim"][command]


# ---------------------------------------------------------------- a hostile ensemble


def edit_root(change):
    def mutate(folder: Path):
        config = read_config(folder)
        change(config)
        (folder / "config.json").write_text(json.dumps(config))
    return mutate


def members_are(*names):
    return edit_root(lambda c: c["tim"]["ensemble"].update(members=list(names)))


def member_labels(folder: Path):
    path = folder / "member-2" / "config.json"
    config = json.loads(path.read_text())
    config["label_names"] = config["label_names"][::-1]
    config["pretrained_cfg"]["label_names"] = config["label_names"]
    path.write_text(json.dumps(config))


def nested(folder: Path):
    shutil.copytree(folder, folder / "inner", ignore=shutil.ignore_patterns("inner"))
    members_are("member-1", "inner")(folder)


def vit_member(folder: Path):
    """member-2 replaced by a checkpoint whose feature map is a sequence (a ViT): nothing to join."""
    torch.manual_seed(0)
    save_checkpoint(timm.create_model("test_vit", num_classes=3, img_size=64), folder / "member-2", ARTISTS,
                    PREPROCESSING)
    path = folder / "member-2" / "config.json"
    config, first = json.loads(path.read_text()), read_config(folder / "member-1")
    config["model_args"] = {"img_size": 64}  # what its weights were made for
    config["pretrained_cfg"].update(mean=first["pretrained_cfg"]["mean"], std=first["pretrained_cfg"]["std"])
    path.write_text(json.dumps(config))


def one_members_statistics(folder: Path):
    """Unknown-artist statistics of one member's 256 features, not of the ensemble's 512 joined ones."""
    from safetensors.torch import save_file

    save_file({"class_means": torch.zeros(3, 256), "precision": torch.eye(256)}, str(folder / "unknown.safetensors"))
    edit_root(lambda c: c["tim"].update(unknown={"score": "mahalanobis", "threshold": 1.0,
                                                 "file": "unknown.safetensors"}))(folder)


def linked_member(folder: Path):
    shutil.move(folder / "member-2", folder.parent / "elsewhere")
    (folder / "member-2").symlink_to(folder.parent / "elsewhere")


HOSTILE = {  # case -> (mutation, what the one error line must say)
    "member ../x": (members_are("member-1", "../x"), r"tim\.ensemble\.members = \"\.\./x\": must name a folder inside"),
    "member an absolute path": (members_are("member-1", "/etc"), r"members = \"/etc\": must name a folder inside"),
    "member a link out": (linked_member, r"members = \"member-2\": is a link to .*outside the checkpoint folder"),
    "member missing": (members_are("member-1", "member-3"), r"member-3: no config\.json"),
    "member twice": (members_are("member-1", "member-1"), r"names a member twice"),
    "members not a list": (members_are(), r"expected a list of 1 to 8 member folder names"),
    "member on other labels": (member_labels, r"member-2/config\.json label_names = .* differs from .*pair/config\.json"),
    "member a transformer": (vit_member, r"member-2/config\.json: test_vit's last feature map is \(\d+, \d+\) at 64 px"),
    "member an ensemble": (nested, r"inner/config\.json: a member of the ensemble .* is itself an ensemble"),
    "member weights a pickle": (lambda f: (f / "member-2" / "model.safetensors").write_bytes(b"\x80\x04K\x01."),
                                r"member-2/model\.safetensors: not a safetensors file \(a pickle"),
    "unknown statistics of one member": (one_members_statistics,
                                         r"unknown\.safetensors: tensor 'class_means' has shape \(3, 256\); expected "
                                         r"\(3, 512\)"),
    "combine unknown": (edit_root(lambda c: c["tim"]["ensemble"].update(combine="vote")),
                        r"tim\.ensemble\.combine = \"vote\": expected 'mean-probability'"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_ensemble_is_refused_with_one_line(case, setup, tmp_path, pictures, capsys):
    mutate, message = HOSTILE[case]
    folder = tmp_path / "pair"
    shutil.copytree(setup[3], folder)
    mutate(folder)
    out = tmp_path / "answers.csv"
    assert tim_main(["predict", str(pictures[0]), "--model", str(folder), "--out", str(out)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, lines)
    assert re.search(message, lines[0]), (case, lines[0])
    assert not out.exists()


def test_the_cards_usage_blocks_run_as_written_from_the_hub_cache(tmp_path):
    """tim predict, Tim's API and the members averaged with plain timm, from a Hub download: the same artist."""
    from test_card_usage import REPO_ID, code_blocks, put_in_hub_cache, run_block

    from tim.card import write_card

    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = timm.create_model("test_efficientnet", num_classes=3)
        with torch.no_grad():  # a clear winner, so the readers' rounding cannot swap the top two
            model.classifier.bias.copy_(torch.tensor([0.0, 6.0, 0.0]))
        folders.append(save_checkpoint(model, tmp_path / f"m{seed}", ARTISTS, PREPROCESSING))
    pair = tmp_path / "pair"
    assert tim_main(["ensemble", *map(str, folders), "--out", str(pair)]) == 0
    card = write_card(pair, repo_id=REPO_ID).read_text()
    put_in_hub_cache(tmp_path / "hub-cache", pair)
    work = tmp_path / "work"
    save(picture(90, 60), work / "painting.jpg")
    blocks = code_blocks(card)
    assert [lang for lang, _ in blocks] == ["bash", "python", "python"]
    outputs = [run_block(lang, code, work) for lang, code in blocks]
    [row] = list(csv.DictReader((work / "answers.csv").open()))
    assert row["artist"] == "Green_Garden" and row["error"] == ""
    assert "artist='Green_Garden'" in outputs[1] and outputs[2].split()[0] == "Green_Garden"


def test_the_app_offers_it_once_and_answers_with_it_as_the_bundled_default(setup, tmp_path, pictures, monkeypatch):
    import tim.catalog
    from tim.app import TimApp
    from tim.catalog import ModelCatalog, default_model

    bundled = tmp_path / "bundled"
    shutil.copytree(setup[3], bundled / "pair")
    monkeypatch.setattr(tim.catalog, "BUNDLED_DIR", bundled)
    assert default_model() == str(bundled / "pair")
    catalog = ModelCatalog.discover(None, [])
    assert list(catalog.entries) == ["bundled:pair"]
    [(label, _)] = catalog.choices()
    assert label.startswith("pair (bundled) · ensemble of 2 test_efficientnet · 3 artists")
    status, results = TimApp(catalog).analyze("bundled:pair", pictures[:2])
    assert "Analysed 2 of 2" in status, status
    assert all(r.explanation is not None and r.explanation.prediction.artist in ARTISTS for r in results)
